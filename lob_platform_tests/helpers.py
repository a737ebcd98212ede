"""Helpers shared by the test modules: hand-built tables, edited copies of real days, the venue
fixtures of a custom feed, and small synthetic markets run through the real Dagster definitions."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl

from lob_platform.core.columns import book_columns
from lob_platform.core.tables import MESSAGES, SNAPSHOTS

#        ask1   askq  bid1   bidq   ask2   askq  bid2   bidq
OPENING = [10.02, 10.0, 10.00, 100.0, None, 0.0, 9.99, 10.0]
BOOK = [10.01, 50.0, 10.00, 100.0, 10.02, 10.0, 9.99, 10.0]
AFTER_DELETE = [10.01, 50.0, 9.99, 10.0, 10.02, 10.0, None, 0.0]


def messages() -> pl.DataFrame:
    """A consistent two-level day (each book row is the previous one with its message applied):
    submits, two identical anonymous hidden fills, a delete."""
    rows = [
        (1000, "submit", 1, 100.0, 10.00, "bid", *OPENING),
        (2000, "submit", 2, 50.0, 10.01, "ask", *BOOK),
        (2000, "execute_hidden", 0, 5.0, 10.005, "ask", *BOOK),
        (2000, "execute_hidden", 0, 5.0, 10.005, "ask", *BOOK),
        (3000, "delete", 1, 100.0, 10.00, "bid", *AFTER_DELETE),
    ]
    names = ["ts_ns", "event_type", "order_id", "size", "price", "side", *book_columns(2)]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    return frame.with_columns(source_row=pl.int_range(1, pl.len() + 1, dtype=pl.UInt32)).cast(MESSAGES.dtypes(2))


def snapshots() -> pl.DataFrame:
    rows = [
        (1_000, 1_500, 100.01, 1.5, 100.00, 2.0, 100.02, 0.5, 99.98, 1.0),
        (2_000, 2_400, 100.02, 1.0, 100.01, 2.0, 100.03, 0.5, 99.99, 1.0),
        (3_000, 3_100, 100.02, 1.0, 100.00, 2.5, 100.03, 0.5, 99.99, 1.0),
    ]
    frame = pl.DataFrame(rows, schema=["ts_ns", "local_ts_ns", *book_columns(2)], orient="row")
    return frame.with_columns(source_row=pl.int_range(2, pl.len() + 2, dtype=pl.UInt32)).cast(SNAPSHOTS.dtypes(2))


def corrupt(pair: tuple[Path, Path], data_dir: Path, message_edit=None, book_edit=None) -> None:
    """Put an edited copy of a LOBSTER CSV pair into data_dir/lobster."""
    target = data_dir / "lobster"
    target.mkdir(exist_ok=True)
    for path, edit in zip(pair, (message_edit, book_edit)):
        lines = path.read_text().splitlines(keepends=True)
        (target / path.name).write_text("".join(edit(lines) if edit else lines))


def replace_line(number: int, make):
    def edit(lines):
        lines[number - 1] = make(lines[number - 1])
        return lines

    return edit


def negate_size(line: str) -> str:
    fields = line.split(",")
    fields[3] = "-" + fields[3]
    return ",".join(fields)


def cross_book(line: str) -> str:
    """An orderbook row whose best bid moves one cent above its best ask."""
    fields = line.strip().split(",")
    fields[2] = str(int(fields[0]) + 100)
    return ",".join(fields) + "\n"


CRYPTO_FEED = """ts,kind,qty,px,book_side,oid
1591003800000,created,0.5,9500.5,bid,1
1591003800250,created,0.25,9501.0,ask,2
1591003801000,changed,0.2,9501.0,ask,2
1591003802000,deleted,0.5,9500.5,bid,1
"""


VENUES_TOML = """
[mycoin]
filename_template = "{product}_{date}.csv"
date_format = "%Y%m%d"
time_unit = "ms"
trading_days = "all"
tick_size = 0.5

[mycoin.column_mapping]
timestamp = "ts"
event_type = "kind"
volume = "qty"
price = "px"
side = "book_side"
order_id = "oid"

[mycoin.event_code_map]
created = "submit"
changed = "modify"
deleted = "delete"
"""


def warehouse_table(name: str, date: str, venue: str = "lobster", instrument: str | None = "ACME") -> pl.DataFrame:
    """One partition of a warehouse table (under $LOB_WAREHOUSE_DIR)."""
    return pl.read_parquet(warehouse_path(name, date, venue, instrument))


def warehouse_path(name: str, date: str, venue: str = "lobster", instrument: str | None = "ACME") -> Path:
    parts = [os.environ["LOB_WAREHOUSE_DIR"], name, f"venue={venue}"] + ([f"instrument={instrument}"] if instrument else [])
    return Path(*parts, f"date={date}", "part-0.parquet")


def warehouse_files() -> dict[str, bytes]:
    """Every parquet file of the warehouse, by path relative to it: what "byte-identical" compares."""
    root = Path(os.environ["LOB_WAREHOUSE_DIR"])
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def day(date: str, instrument: str = "ACME") -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": date, "instrument": instrument})
