"""Crypto L2 depth snapshots in the widespread ``book_snapshot_N`` CSV layout (optionally gzipped).

Columns: exchange, symbol, timestamp and local_timestamp (microseconds since the epoch, UTC),
then per level i = 0..N-1: asks[i].price, asks[i].amount, bids[i].price, bids[i].amount.
A level the venue did not fill is an empty field; it becomes a null price with size 0.
Files are found as ``{exchange}_book_snapshot_{N}_{YYYY-MM-DD}_{SYMBOL}.csv[.gz]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from lob_platform.errors import MalformedFileError
from lob_platform.sources.catalog import DayFile
from lob_platform.sources.timezones import iso_date
from lob_platform.sources.venues import CRYPTO_EXCHANGES
from lob_platform.sources.csv_input import header_columns, read_bytes, read_typed_csv
from lob_platform.core.columns import SHIPPED_BOOK, SOURCE_ROW, book_columns

SNAPSHOT_FILE = re.compile(
    r"^(?P<exchange>.+?)_book_snapshot_(?P<levels>\d+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<symbol>[A-Za-z0-9]+)\.csv(\.gz)?$"
)
# Tick sizes for the tick-grid rule, per symbol (the finest tick the venues have used); the synthetic
# market quotes on these ticks too.
CRYPTO_TICKS = {"BTCUSDT": 0.01, "ETHUSDT": 0.01, "SOLUSDT": 0.001, "WLDUSDT": 0.0001}
_SIDES = {"asks": "ask", "bids": "bid"}
_FIELDS = {"price": "price", "amount": "size"}
_LEVEL_COLUMN = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")


def read_book_snapshots(path: Path) -> pl.DataFrame:
    """One snapshot file in the unified snapshot schema (ts_ns, local_ts_ns, book, source_row)."""
    data = read_bytes(path)
    renames = _level_renames(path, header_columns(data, str(path)))
    schema = {"timestamp": pl.Int64(), "local_timestamp": pl.Int64()}
    schema.update({column: pl.Float64() for column in renames})
    frame = read_typed_csv(
        data, str(path), schema, has_header=True, columns=list(schema), nullable=frozenset(renames)
    ).rename(renames)
    book = [
        pl.col(name).fill_null(0.0) if "_size_" in name else pl.col(name)
        for name in book_columns(len(renames) // 4)
    ]
    return frame.select(
        (pl.col("timestamp") * 1000).alias("ts_ns"),
        (pl.col("local_timestamp") * 1000).alias("local_ts_ns"),
        *book,
        pl.int_range(2, pl.len() + 2, dtype=pl.UInt32).alias(SOURCE_ROW),
    )


def _level_renames(path: Path, header: list[str]) -> dict[str, str]:
    renames = {}
    for column in header:
        match = _LEVEL_COLUMN.match(column)
        if match:
            side, level, field = match.groups()
            renames[column] = f"{_SIDES[side]}_{_FIELDS[field]}_{int(level) + 1}"
    missing = {"timestamp", "local_timestamp"} - set(header)
    if missing or not renames or len(renames) % 4:
        raise MalformedFileError(
            f"{path}: not a book_snapshot_N file (header {header[:8]}...): it needs timestamp, "
            "local_timestamp and asks[i]/bids[i] price and amount columns for every level."
        )
    return renames


def instrument_name(exchange: str, symbol: str) -> str:
    """``{exchange}.{SYMBOL}``: ``binance_perp`` and ``BTC-USDT`` give ``binance_perp.BTCUSDT``."""
    return f"{exchange}.{symbol.replace('-', '').upper()}"


class SnapshotFormat:
    """Depth snapshots in a folder, ``{exchange}_book_snapshot_{N}_{date}_{SYMBOL}.csv[.gz]``; the
    instrument is ``{exchange}.{SYMBOL}`` and the trading date is the UTC date."""

    timezone = "UTC"
    weekdays_only = False
    book = SHIPPED_BOOK
    event_types: frozenset[str] = frozenset()  # snapshots, no messages
    clock_ns = 1_000  # microsecond timestamps
    exchanges = CRYPTO_EXCHANGES

    def tick_for(self, instrument: str) -> float | None:
        return CRYPTO_TICKS.get(instrument.split(".", 1)[-1])

    def discover(self, venue: str, folder: Path) -> list[DayFile]:
        days = []
        for path in sorted(folder.glob("*book_snapshot_*.csv*")) if folder.is_dir() else []:
            match = SNAPSHOT_FILE.match(path.name)
            if match and (day := iso_date(match["date"], str(path))):
                days.append(DayFile(venue, instrument_name(match["exchange"], match["symbol"]), day, str(path), "csv",
                                    (path,), self.read, int(match["levels"]), path))
        return days

    def read(self, day: DayFile) -> pl.DataFrame:
        return read_book_snapshots(day.handle)

    def expected_file(self, folder: Path, instrument: str, day) -> str:
        exchange, symbol = instrument.split(".", 1)
        return f"{folder}/{exchange}_book_snapshot_N_{day}_{symbol}.csv[.gz]"
