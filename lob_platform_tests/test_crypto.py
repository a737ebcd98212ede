"""Crypto depth snapshots in the book_snapshot_N layout (real format samples and edge cases)."""

from __future__ import annotations

import gzip
import shutil

import pytest

from lob_platform import load_snapshots, validate_snapshots
from lob_platform.errors import DataFileNotFound, MalformedFileError, ValidationError
from lob_platform.sources.crypto import read_book_snapshots
from lob_platform_tests.conftest import CRYPTO_SAMPLES, require

SNAPSHOT_5 = CRYPTO_SAMPLES / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv"
SNAPSHOT_25 = CRYPTO_SAMPLES / "tardis_binance-futures_book_snapshot_25_BTCUSDT.csv"


@pytest.mark.parametrize(("sample", "levels"), [(SNAPSHOT_5, 5), (SNAPSHOT_25, 25)])
def test_real_format_samples_read_and_validate(sample, levels):
    frame = read_book_snapshots(require(sample))
    assert frame.height == 10
    assert frame.columns[:6] == ["ts_ns", "local_ts_ns", "ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]
    assert f"bid_size_{levels}" in frame.columns
    first = frame.row(0, named=True)
    assert first["ts_ns"] == 1_598_918_403_696_000_000 and first["local_ts_ns"] == 1_598_918_403_810_979_000
    assert (first["ask_price_1"], first["ask_size_1"], first["bid_price_1"]) == (11657.08, 1.714, 11657.07)
    validate_snapshots(frame, "BTCUSDT")


def test_gzipped_file_in_data_folder_and_missing_day(data_dir):
    (data_dir / "crypto").mkdir()
    target = data_dir / "crypto" / "binance_perp_book_snapshot_5_2020-09-01_BTCUSDT.csv.gz"
    with open(require(SNAPSHOT_5), "rb") as source, gzip.open(target, "wb") as sink:
        shutil.copyfileobj(source, sink)
    frame = load_snapshots("binance_perp", "BTC-USDT", ["200901.000000", "200901.235959"])
    assert frame.height == 10
    with pytest.raises(DataFileNotFound, match="binance_perp.BTCUSDT on 2020-09-02"):
        load_snapshots("binance_perp", "BTC-USDT", ["200901.000000", "200902.235959"])


def test_unfilled_levels_are_null_price_zero_size(tmp_path):
    header = "exchange,symbol,timestamp,local_timestamp," + ",".join(
        f"asks[{i}].price,asks[{i}].amount,bids[{i}].price,bids[{i}].amount" for i in range(2))
    path = tmp_path / "x_book_snapshot_2_2020-09-01_BTCUSDT.csv"
    path.write_text(header + "\nx,BTCUSDT,1000,1100,10.5,1.0,10.4,2.0,,,10.3,1.0\n")
    row = read_book_snapshots(path).row(0, named=True)
    assert row["ask_price_2"] is None and row["ask_size_2"] == 0.0 and row["bid_price_2"] == 10.3
    validate_snapshots(read_book_snapshots(path), tick_size=0.1)


def test_crossed_snapshot_fails_and_bad_field_names_line(tmp_path):
    lines = require(SNAPSHOT_5).read_text().splitlines()
    fields = lines[3].split(",")
    fields[6] = "11660.00"  # best bid above best ask
    crossed = tmp_path / "crossed.csv"
    crossed.write_text("\n".join(lines[:3] + [",".join(fields)] + lines[4:]) + "\n")
    with pytest.raises(ValidationError, match=r"'book_not_crossed'.*first at source rows \[4\]"):
        validate_snapshots(read_book_snapshots(crossed), "BTCUSDT")
    fields[6] = "eleven"
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines[:3] + [",".join(fields)] + lines[4:]) + "\n")
    with pytest.raises(MalformedFileError, match=r"broken.csv: .*line 4: column 'bids\[0\].price' = 'eleven'"):
        read_book_snapshots(broken)


def test_non_snapshot_csv_is_refused(tmp_path):
    path = tmp_path / "depth.csv"
    path.write_text(require(CRYPTO_SAMPLES / "binance_btcusdt-depth-snap.csv").read_text())
    with pytest.raises(MalformedFileError, match="not a book_snapshot_N file"):
        read_book_snapshots(path)
