"""Custom venues through ExchangeConfig, and MIC futures, read into the unified schema."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lob_platform import ExchangeConfig, load_messages, validate_messages
from lob_platform.errors import ConfigError, MalformedFileError
from lob_platform_tests.helpers import CRYPTO_FEED, VENUES_TOML



def order_feed_config(folder: Path, **overrides) -> ExchangeConfig:
    settings = dict(
        data_path=str(folder),
        filename_template="{product}_{date}.csv",
        date_format="%Y%m%d",
        column_mapping={"timestamp": "ts", "event_type": "kind", "volume": "qty", "price": "px", "side": "book_side", "order_id": "oid"},
        time_unit="ms",
        event_code_map={"created": "submit", "changed": "modify", "deleted": "delete"},
        trading_days="all",
        tick_size=0.5,
    )
    settings.update(overrides)
    return ExchangeConfig(**settings)


def test_order_by_order_crypto_feed_is_configuration(tmp_path):
    (tmp_path / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED)
    frame = load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))
    assert frame["event_type"].to_list() == ["submit", "submit", "modify", "delete"]
    assert frame["side"].to_list() == ["bid", "ask", "ask", "bid"]
    assert frame["ts_ns"][0] == 1_591_003_800_000 * 10**6
    assert frame["source_row"].to_list() == [2, 3, 4, 5]  # CSV lines, header is line 1
    validate_messages(frame, "mycoin", tick_size=0.5)
    off_grid = frame.with_columns(price=pl.lit(9500.25))
    with pytest.raises(Exception, match="price_on_tick_grid"):
        validate_messages(off_grid, "mycoin", config=order_feed_config(tmp_path))  # the venue's own tick


def test_unknown_venue_code_is_kept_and_named_by_validation(tmp_path):
    (tmp_path / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED.replace("changed", "amended"))
    frame = load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))
    assert frame.height == 4 and frame["event_type"][2] is None
    with pytest.raises(Exception, match=r"'known_codes'.*first at source rows \[4\]"):
        validate_messages(frame, "mycoin")


def test_seed_example_parquet_venue_with_default_codes(tmp_path):
    pl.DataFrame({"time": [1_590_969_600_000, 1_590_969_601_000], "type": [1, 3], "size": [10, 10],
                  "price": [101.25, 101.25], "direction": [1, 1]}).write_parquet(tmp_path / "CUSTOM_2020-06-01.parquet")
    config = ExchangeConfig(
        data_path=str(tmp_path), filename_template="{product}_{date}.parquet", date_format="%Y-%m-%d",
        column_mapping={"timestamp": "time", "event_type": "type", "volume": "size", "price": "price", "side": "direction"},
        time_unit="ms", price_scale=1.0,
    )
    frame = load_messages("CUSTOM", "custom", ["200601.000000", "200603.235959"], config=config, on_missing="skip")
    assert frame["event_type"].to_list() == ["submit", "delete"] and frame["order_id"].to_list() == [0, 0]


def test_mapping_that_names_a_missing_column_says_which(tmp_path):
    (tmp_path / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED)
    mapping = {"timestamp": "ts", "event_type": "kind", "volume": "quantity", "price": "px", "side": "book_side"}
    with pytest.raises(ConfigError, match=r"BTCUSD_20200601.csv: .*\{'volume': 'quantity'\}.*fix the mapping"):
        load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path, column_mapping=mapping))


def test_bad_configs_are_refused_up_front(tmp_path):
    with pytest.raises(ConfigError, match="missing keys \\['side'\\]"):
        order_feed_config(tmp_path, column_mapping={"timestamp": "ts", "event_type": "kind", "volume": "qty", "price": "px"})
    with pytest.raises(ConfigError, match="time_unit"):
        order_feed_config(tmp_path, time_unit="minutes")
    with pytest.raises(ConfigError, match="unknown event types"):
        order_feed_config(tmp_path, event_code_map={"created": "new"})


def test_non_numeric_csv_field_names_line(tmp_path):
    (tmp_path / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED.replace("0.25", "n/a"))
    with pytest.raises(MalformedFileError, match=r"line 3: column 'qty' = 'n/a' is not a number"):
        load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))


def test_mic_order_log(data_dir):
    (data_dir / "mic").mkdir()
    open_utc = 1_709_535_600 * 10**9  # 2024-03-04 07:00 UTC = 10:00 Moscow
    pl.DataFrame(
        {"tst": [open_utc, open_utc + 1_000, open_utc + 2_000], "event_code": [1, 2, 0], "vol": [3, 1, 2],
         "prc": [110_000.0, 110_000.0, 110_000.0], "is_buy": [True, True, True], "order_id": [9, 9, 9]},
        schema_overrides={"event_code": pl.Int8},
    ).write_parquet(data_dir / "mic" / "2024-03-04__RTSX_FUT__RIH4.parquet")
    frame = load_messages("RIH4", "mic", ["240304.100000", "240304.184500"])
    assert frame["event_type"].to_list() == ["submit", "execute_visible", "cancel"]  # MOEX 0 cancels vol: part or all
    assert frame["side"].to_list() == ["bid"] * 3
    validate_messages(frame, "mic")
    off_tick = frame.with_columns(price=pl.lit(110_005.0))
    with pytest.raises(Exception, match="price_on_tick_grid"):
        validate_messages(off_tick, "mic")




def test_venue_declared_in_venues_toml_is_loaded_by_name(data_dir):
    (data_dir / "venues.toml").write_text(VENUES_TOML)
    (data_dir / "mycoin").mkdir()
    (data_dir / "mycoin" / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED)
    frame = load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"])
    assert frame["event_type"].to_list() == ["submit", "submit", "modify", "delete"]


def test_bad_venues_toml_says_where(data_dir):
    (data_dir / "venues.toml").write_text('[mic]\nfilename_template = "{date}.csv"\n')
    with pytest.raises(ConfigError, match=r"venues.toml, line 1: venue name \[mic\]"):
        load_messages("X", "whatever", ["200601.000000", "200601.235959"])
    (data_dir / "venues.toml").write_text('[mycoin]\nfilename_template = "{date}.csv"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=r"venues.toml, line 3: \[mycoin\] field 'colour' is not an ExchangeConfig field"):
        load_messages("X", "mycoin", ["200601.000000", "200601.235959"])


def test_nanosecond_csv_timestamps_keep_every_digit(tmp_path):
    rows = "\n".join(f"{1_717_200_000_123_456_789 + i},created,1,100.0,bid,{i + 1}" for i in range(5))
    (tmp_path / "X_20240601.csv").write_text("ts,kind,qty,px,book_side,oid\n" + rows + "\n")
    frame = load_messages("X", "ns_feed", ["240601.000000", "240601.235959"],
                          config=order_feed_config(tmp_path, time_unit="ns"))
    assert frame["ts_ns"].to_list() == [1_717_200_000_123_456_789 + i for i in range(5)]


def test_datetime_timestamp_column_becomes_epoch_nanoseconds(tmp_path):
    from datetime import datetime

    pl.DataFrame({"time": [datetime(2024, 3, 4, 10, 0, 0, 250)], "type": [1], "size": [3], "price": [10.0], "direction": [1]}) \
        .write_parquet(tmp_path / "DT_2024-03-04.parquet")
    config = ExchangeConfig(data_path=str(tmp_path), filename_template="{product}_{date}.parquet",
                            column_mapping={"timestamp": "time", "event_type": "type", "volume": "size", "price": "price", "side": "direction"})
    frame = load_messages("DT", "dt", ["240304.000000", "240304.235959"], config=config)
    assert frame["ts_ns"].to_list() == [1_709_546_400_000_250_000]


def test_header_with_byte_order_mark_and_quotes(tmp_path):
    text = CRYPTO_FEED.replace("ts,kind,qty,px,book_side,oid", '\ufeff"ts","kind",qty,px,book_side,oid')
    (tmp_path / "BTCUSD_20200601.csv").write_text(text, encoding="utf-8")
    frame = load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))
    assert frame.height == 4


def test_empty_file_and_trailing_blank_lines(tmp_path):
    (tmp_path / "BTCUSD_20200601.csv").write_text("")
    with pytest.raises(MalformedFileError, match="BTCUSD_20200601.csv is empty"):
        load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))
    (tmp_path / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED + "\n\n")
    frame = load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))
    assert frame.height == 4
    (tmp_path / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED.replace("\n1591003801000", "\n\n1591003801000"))
    with pytest.raises(MalformedFileError, match="line 4: the line is empty"):
        load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=order_feed_config(tmp_path))


def test_broken_gzip_names_the_file(tmp_path):
    import gzip

    (tmp_path / "BTCUSD_20200601.csv.gz").write_bytes(gzip.compress(CRYPTO_FEED.encode())[:-12])
    config = order_feed_config(tmp_path, filename_template="{product}_{date}.csv.gz")
    with pytest.raises(MalformedFileError, match="BTCUSD_20200601.csv.gz: not a complete gzip file"):
        load_messages("BTCUSD", "mycoin", ["200601.000000", "200601.235959"], config=config)


def test_templates_with_folders_and_bad_templates(tmp_path):
    from lob_platform.sources.tabular import ExchangeFormat

    nested = order_feed_config(tmp_path, filename_template="{product}/{date}.csv", date_format="%Y/%m/%d")
    (tmp_path / "BTCUSD" / "2020" / "06").mkdir(parents=True)
    (tmp_path / "BTCUSD" / "2020" / "06" / "01.csv").write_text(CRYPTO_FEED)
    (day,) = ExchangeFormat(nested).discover("mycoin", tmp_path)
    assert (day.instrument, str(day.date), day.read().height) == ("BTCUSD", "2020-06-01", 4)
    with pytest.raises(ConfigError, match="one \\{product\\} and one \\{date\\}"):
        order_feed_config(tmp_path, filename_template="{date}.csv")
    with pytest.raises(ConfigError, match="uses \\['%b'\\]"):
        order_feed_config(tmp_path, date_format="%d%b%Y")


def test_validate_messages_uses_the_tick_the_asset_path_uses(data_dir):
    from lob_platform.sources.registry import venue_named

    (data_dir / "venues.toml").write_text(VENUES_TOML.replace("tick_size = 0.5", "tick_size = { BTCUSD = 0.5, ETHUSD = 0.25 }"))
    venue = venue_named("mycoin")
    assert (venue.tick_for("BTCUSD"), venue.tick_for("ETHUSD"), venue.tick_for("XRPUSD")) == (0.5, 0.25, None)
    (data_dir / "mycoin").mkdir()
    (data_dir / "mycoin" / "ETHUSD_20200601.csv").write_text(CRYPTO_FEED.replace("9500.5", "9500.25").replace("9501.0", "9501.25"))
    frame = load_messages("ETHUSD", "mycoin", ["200601.000000", "200601.235959"])
    validate_messages(frame, "mycoin", product="ETHUSD")  # on ETHUSD's 0.25 grid
    with pytest.raises(Exception, match="price_on_tick_grid"):
        validate_messages(frame, "mycoin", product="BTCUSD")  # not on BTCUSD's 0.5 grid


def test_discovery_opens_each_zip_once_per_delivery(data_dir, monkeypatch):
    import zipfile

    from lob_platform.sources.catalog import discover
    from lob_platform_tests.conftest import AMZN_1, require
    import shutil

    (data_dir / "lobster").mkdir()
    archive = data_dir / "lobster" / AMZN_1.name
    shutil.copy(require(AMZN_1), archive)
    opened = []
    real = zipfile.ZipFile

    def counting(path, *args, **kwargs):
        opened.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", counting)
    for _ in range(3):
        assert [d.instrument for d in discover(data_dir)] == ["AMZN"]
    assert len(opened) == 1
    archive.touch()  # a new delivery is looked into again
    discover(data_dir)
    assert len(opened) == 2
