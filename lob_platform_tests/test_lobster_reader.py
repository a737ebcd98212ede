"""LOBSTER readers on the real sample days and on corrupted copies of them."""

from __future__ import annotations

import shutil
import zipfile

import polars as pl
import pytest

from lob_platform import load_messages, validate_messages
from lob_platform.errors import ConfigError, DataFileNotFound, MalformedFileError, ValidationError
from lob_platform.sources.catalog import discover
from lob_platform.sources.lobster import pairs_in_archive, pairs_in_folder, read_lobster_pair
from lob_platform_tests.conftest import AAPL_1, AMZN_1, AMZN_5, require
from lob_platform_tests.helpers import corrupt, negate_size, replace_line

FULL_DAY = ["120621.093000", "120621.160000"]


@pytest.mark.parametrize(("archive", "rows", "levels"), [(AMZN_5, 155_935, 5), (AMZN_1, 57_515, 1), (AAPL_1, 118_497, 1)])
def test_real_sample_day_keeps_every_row_and_passes_validation(archive, rows, levels):
    frame = read_lobster_pair(pairs_in_archive(require(archive))[0])
    assert frame.height == rows
    assert [c for c in frame.columns if c.startswith("ask_price_")] == [f"ask_price_{i}" for i in range(1, levels + 1)]
    validate_messages(frame, "lobster")


def test_time_price_and_side_are_converted_exactly():
    frame = read_lobster_pair(pairs_in_archive(require(AMZN_5))[0])
    first = frame.row(0, named=True)
    # 34200.017459617 s after midnight New York (EDT, UTC-4) on 2012-06-21
    assert first["ts_ns"] == 1_340_285_400_017_459_617
    assert (first["event_type"], first["order_id"], first["size"], first["side"]) == ("execute_hidden", 0, 1.0, "ask")
    assert first["price"] == pytest.approx(223.82)
    assert first["ask_price_1"] == pytest.approx(223.95) and first["bid_size_5"] == 100.0
    assert frame["source_row"].to_list()[:3] == [1, 2, 3]


def test_load_messages_full_day_from_zip_restricts_to_the_range(amzn_day_dir):
    full = load_messages("AMZN", "lobster", FULL_DAY)
    assert full.height == 57_515
    hour = load_messages("AMZN", "lobster", ["120621.100000", "120621.110000"])
    assert 0 < hour.height < full.height
    assert hour["ts_ns"].min() >= 1_340_287_200 * 10**9 and hour["ts_ns"].max() <= 1_340_290_800 * 10**9


def test_csv_pair_and_zip_read_identically(amzn_csv_pair):
    message, _ = amzn_csv_pair
    from_folder = read_lobster_pair(pairs_in_folder(message.parent)[0])
    from_zip = read_lobster_pair(pairs_in_archive(require(AMZN_1))[0])
    assert from_folder.equals(from_zip)


def test_deepest_book_wins_when_a_day_exists_twice(data_dir):
    (data_dir / "lobster").mkdir()
    for archive in (AMZN_1, AMZN_5):
        shutil.copy(require(archive), data_dir / "lobster")
    (day,) = discover()
    assert day.levels == 5 and day.source.endswith("AMZN_2012-06-21_5.zip!AMZN_2012-06-21_34200000_57600000_message_5.csv")


def test_halt_rows_become_status_events(tmp_path):
    message = tmp_path / "HALT_2012-06-21_34200000_57600000_message_1.csv"
    message.write_text("34200.1,1,11,100,1000000,1\n36023.0,7,0,0,-1,-1\n36323.0,7,0,0,0,-1\n36723.0,7,0,0,1,-1\n")
    book = "1000100,50,1000000,100\n" * 4
    (tmp_path / "HALT_2012-06-21_34200000_57600000_orderbook_1.csv").write_text(book)
    frame = read_lobster_pair(pairs_in_folder(tmp_path)[0])
    assert frame["event_type"].to_list() == ["submit", "halt", "quoting_resumed", "trading_resumed"]
    assert frame["size"].to_list()[1:] == [0.0, 0.0, 0.0]
    validate_messages(frame, "lobster")


def test_empty_levels_become_null_price_with_zero_size(tmp_path):
    (tmp_path / "THIN_2012-06-21_34200000_57600000_message_2.csv").write_text("34200.1,1,11,100,1000000,1\n")
    (tmp_path / "THIN_2012-06-21_34200000_57600000_orderbook_2.csv").write_text(
        "1000100,50,1000000,100,9999999999,0,-9999999999,0\n"
    )
    row = read_lobster_pair(pairs_in_folder(tmp_path)[0]).row(0, named=True)
    assert row["ask_price_2"] is None and row["ask_size_2"] == 0.0 and row["bid_price_2"] is None
    assert row["ask_price_1"] == pytest.approx(100.01)


# --- corrupted copies of the real AMZN day ------------------------------------------------


def test_truncated_message_file_names_file_and_line(amzn_csv_pair, data_dir):
    def truncate(lines):
        return lines[:-1] + [lines[-1][:12]]

    corrupt(amzn_csv_pair, data_dir, message_edit=truncate)
    with pytest.raises(MalformedFileError) as error:
        load_messages("AMZN", "lobster", FULL_DAY)
    text = str(error.value)
    assert "AMZN_2012-06-21_34200000_57600000_message_1.csv" in text
    assert "line 57515" in text and "truncated" in text


def test_non_numeric_field_names_line_and_column(amzn_csv_pair, data_dir):
    corrupt(amzn_csv_pair, data_dir, message_edit=replace_line(1234, lambda line: line.replace(",", ",abc", 1)))
    with pytest.raises(MalformedFileError, match=r"line 1234: column 'event_code' = 'abc1' is not a whole number"):
        load_messages("AMZN", "lobster", FULL_DAY)


def test_unsorted_timestamps_fail_their_rule(amzn_csv_pair, data_dir):
    def swap(lines):
        lines[99], lines[5000] = lines[5000], lines[99]
        return lines

    corrupt(amzn_csv_pair, data_dir, message_edit=swap, book_edit=swap)
    frame = load_messages("AMZN", "lobster", FULL_DAY)
    with pytest.raises(ValidationError, match="timestamps_sorted") as error:
        validate_messages(frame, "lobster")
    # the swapped orderbook rows no longer follow their messages either
    assert [r.rule for r in error.value.report.failures()] == ["timestamps_sorted", "book_follows_messages"]
    assert error.value.report.failures()[0].first_rows == [100, 5001]  # exactly the two moved rows


def test_negative_size_fails_positive_size(amzn_csv_pair, data_dir):
    corrupt(amzn_csv_pair, data_dir, message_edit=replace_line(777, negate_size))
    with pytest.raises(ValidationError, match=r"'positive_size'.*1 of 57515 rows, first at source rows \[777\]"):
        validate_messages(load_messages("AMZN", "lobster", FULL_DAY), "lobster")


def test_crossed_book_fails_book_not_crossed(amzn_csv_pair, data_dir):
    def cross(line):
        ask, ask_size, _, bid_size = line.strip().split(",")
        return f"{ask},{ask_size},{int(ask) + 100},{bid_size}\n"

    corrupt(amzn_csv_pair, data_dir, book_edit=replace_line(4321, cross))
    with pytest.raises(ValidationError, match="book_not_crossed") as error:
        validate_messages(load_messages("AMZN", "lobster", FULL_DAY), "lobster")
    assert error.value.report.failures()[0].first_rows == [4321]


def test_orderbook_with_fewer_rows_names_both_files(amzn_csv_pair, data_dir):
    corrupt(amzn_csv_pair, data_dir, book_edit=lambda lines: lines[:-10])
    with pytest.raises(MalformedFileError, match=r"orderbook_1.csv has 57505 rows but .*message_1.csv has 57515"):
        load_messages("AMZN", "lobster", FULL_DAY)


def test_shifted_orderbook_fails_alignment_rule(amzn_csv_pair, data_dir):
    corrupt(amzn_csv_pair, data_dir, book_edit=lambda lines: lines[1:] + lines[-1:])
    with pytest.raises(ValidationError, match="book_matches_message"):
        validate_messages(load_messages("AMZN", "lobster", FULL_DAY), "lobster")


def test_missing_orderbook_file_fails_only_its_own_day(amzn_csv_pair, data_dir):
    (data_dir / "lobster").mkdir()
    shutil.copy(amzn_csv_pair[0], data_dir / "lobster")
    shutil.copy(require(AAPL_1), data_dir / "lobster")
    with pytest.raises(MalformedFileError, match="orderbook file for AMZN 2012-06-21 .* is missing"):
        load_messages("AMZN", "lobster", FULL_DAY)
    assert load_messages("AAPL", "lobster", FULL_DAY).height == 118_497


def test_a_day_split_into_time_windows_is_refused_not_halved(amzn_csv_pair, data_dir):
    (data_dir / "lobster").mkdir()
    message, book = (path.read_text().splitlines(keepends=True) for path in amzn_csv_pair)
    for start, end, rows in (("34200000", "45000000", slice(0, 30000)), ("45000000", "57600000", slice(30000, None))):
        (data_dir / "lobster" / f"AMZN_2012-06-21_{start}_{end}_message_1.csv").write_text("".join(message[rows]))
        (data_dir / "lobster" / f"AMZN_2012-06-21_{start}_{end}_orderbook_1.csv").write_text("".join(book[rows]))
    with pytest.raises(MalformedFileError, match="comes in 2 time windows"):
        load_messages("AMZN", "lobster", FULL_DAY)


def test_missing_day_raises_with_expected_file_or_skips(amzn_day_dir):
    with pytest.raises(DataFileNotFound, match=r"AMZN on 2012-06-22: expected .*/lobster/AMZN_2012-06-22"):
        load_messages("AMZN", "lobster", ["120621.093000", "120622.160000"])
    skipped = load_messages("AMZN", "lobster", ["120621.093000", "120622.160000"], on_missing="skip")
    assert skipped.height == 57_515
    weekend = load_messages("AMZN", "lobster", ["120623.093000", "120624.160000"])  # Sat + Sun: no trading day
    assert weekend.height == 0 and "ts_ns" in weekend.columns


def test_unknown_source_and_bad_times_are_config_errors(amzn_day_dir):
    with pytest.raises(ConfigError, match="unknown source 'nasdaq'"):
        load_messages("AMZN", "nasdaq", FULL_DAY)
    with pytest.raises(ConfigError, match="use load_snapshots"):
        load_messages("BTCUSDT", "binance_perp", FULL_DAY)
    with pytest.raises(ConfigError, match="is not YYMMDD.HHMMSS"):
        load_messages("AMZN", "lobster", ["2012-06-21", "120621.160000"])
    with pytest.raises(ConfigError, match="after end"):
        load_messages("AMZN", "lobster", ["120621.160000", "120621.093000"])


def test_zip_with_message_only_is_reported(tmp_path):
    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("AMZN_2012-06-21_34200000_57600000_message_1.csv", "34200.1,1,11,100,1000000,1\n")
    (pair,) = pairs_in_archive(archive)
    with pytest.raises(MalformedFileError, match="broken.zip: LOBSTER orderbook file"):
        read_lobster_pair(pair)


def test_converted_parquet_layout(data_dir):
    (data_dir / "lobster").mkdir()
    pl.DataFrame(
        {"tst": [1_592_832_600_000_000_000, 1_592_832_600_500_000_000], "event_code": [1, 4],
         "vol": [100, 40], "prc": [3_512_300, 3_512_300], "direction": [1, 1], "order_id": [5, 5]}
    ).write_parquet(data_dir / "lobster" / "AAPL_2020-06-22_messages.parquet")
    frame = load_messages("AAPL", "lobster", ["200622.093000", "200622.160000"])
    assert frame["event_type"].to_list() == ["submit", "execute_visible"]
    assert frame["price"].to_list() == pytest.approx([351.23, 351.23])
    validate_messages(frame, "lobster")


def test_unreadable_zip_and_impossible_dates_do_not_stop_discovery(data_dir, caplog):
    (data_dir / "lobster").mkdir()
    shutil.copy(require(AMZN_1), data_dir / "lobster")
    (data_dir / "lobster" / "broken.zip").write_bytes(b"not a zip at all")
    (data_dir / "lobster" / "AAPL_2024-02-30_messages.parquet").write_bytes(b"")
    days = discover()
    assert [(d.instrument, str(d.date)) for d in days] == [("AMZN", "2012-06-21")]
    assert "broken.zip is not a readable zip archive" in caplog.text
    assert "'2024-02-30' in its name is not a date" in caplog.text


def test_multi_day_load_with_different_book_depths_validates(data_dir):
    (data_dir / "lobster").mkdir()
    shutil.copy(require(AMZN_5), data_dir / "lobster")
    with zipfile.ZipFile(require(AMZN_1)) as archive:
        for name in archive.namelist():
            if name.endswith(".csv"):
                (data_dir / "lobster" / name.replace("2012-06-21", "2012-06-22")).write_bytes(archive.read(name))
    frame = load_messages("AMZN", "lobster", ["120621.093000", "120622.160000"])
    assert frame.height == 155_935 + 57_515
    assert frame.filter(pl.col("ts_ns") > 1_340_323_200 * 10**9)["ask_size_5"].unique().to_list() == [0.0]
    validate_messages(frame, "lobster")
