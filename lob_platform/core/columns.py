"""The unified message and depth-snapshot schemas every venue is read into.

Messages (one row per order-book event):

================  =========  ==============================================================
column            dtype      meaning
================  =========  ==============================================================
ts_ns             Int64      event time, nanoseconds since the Unix epoch, UTC
event_type        Enum       one of ``EVENT_TYPES`` (null when the venue's code is unknown)
order_id          Int64      venue order reference; 0 for anonymous events (hidden fills,
                             status rows) or feeds without order ids
size              Float64    shares / contracts / coins; 0 on status rows
price             Float64    in currency units (LOBSTER's 1e-4 dollars are divided out);
                             0 on status rows
side              Enum       ``bid`` (buy-side resting order) or ``ask`` (sell side)
ask_price_{i}...  Float64    book after the event, level i = 1..L, where the venue has one:
                             ask_price_i, ask_size_i, bid_price_i, bid_size_i; an empty level
                             has a null price and size 0
book_crossed      Boolean    validated tables of venues whose book is rebuilt from their
                             messages only: the rebuilt book is crossed on this row
source_row        UInt32     line (CSV, 1-based) or row (parquet, 1-based) in the source file
================  =========  ==============================================================

Depth snapshots (crypto L2): ``ts_ns`` (exchange time), ``local_ts_ns`` (receive time), then
the same book columns as above, ``source_row`` last.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

ORDER_EVENT_TYPES = (
    "submit",  # new limit order
    "cancel",  # partial cancellation
    "delete",  # full deletion
    "modify",  # in-place change of an order (feeds that have one)
    "execute_visible",  # execution against a visible resting order
    "execute_hidden",  # execution against a hidden order (anonymous, may trade at the mid)
    "cross",  # auction cross trade
)
STATUS_EVENT_TYPES = ("halt", "quoting_resumed", "trading_resumed")
EVENT_TYPES = ORDER_EVENT_TYPES + STATUS_EVENT_TYPES

EventType = pl.Enum(list(EVENT_TYPES))
Side = pl.Enum(["bid", "ask"])

MESSAGE_COLUMNS: dict[str, pl.DataType] = {
    "ts_ns": pl.Int64(),
    "event_type": EventType,
    "order_id": pl.Int64(),
    "size": pl.Float64(),
    "price": pl.Float64(),
    "side": Side,
}
SNAPSHOT_COLUMNS: dict[str, pl.DataType] = {"ts_ns": pl.Int64(), "local_ts_ns": pl.Int64()}
SOURCE_ROW = "source_row"

SHIPPED_BOOK = "shipped"
"""A venue whose files carry the book after each event (LOBSTER, crypto depth snapshots)."""
REBUILT_BOOK = "rebuilt"
"""A venue whose book is rebuilt from its order-by-order messages (MIC, declared order-id feeds)."""
BOOK_CROSSED = "book_crossed"
"""Boolean column of a rebuilt book, before ``source_row``: best bid at or above best ask on this
row (feed latency), flagged and kept as it is."""

_BOOK_COLUMN = re.compile(r"^(ask|bid)_(price|size)_(\d+)$")


def per_event_type(event_type: pl.Series, values: dict[str, int], default: int) -> np.ndarray:
    """``values[event type]`` per row as int8 (``default`` for other types and nulls), looked up
    by the Enum's codes rather than by text: the replays' per-row actions."""
    table = np.array([values.get(name, default) for name in EVENT_TYPES] + [default], dtype=np.int8)
    return table[event_type.to_physical().fill_null(len(EVENT_TYPES)).to_numpy()]


def book_columns(levels: int) -> list[str]:
    """Book column names in LOBSTER's order: per level ask price, ask size, bid price, bid size."""
    return [
        f"{side}_{field}_{level}"
        for level in range(1, levels + 1)
        for side, field in (("ask", "price"), ("ask", "size"), ("bid", "price"), ("bid", "size"))
    ]


def book_levels(columns: list[str]) -> int:
    """How many complete book levels a table carries (0 for a message-only venue)."""
    levels = {int(m.group(3)) for c in columns if (m := _BOOK_COLUMN.match(c))}
    level = 0
    while level + 1 in levels and all(c in columns for c in book_columns(level + 1)[-4:]):
        level += 1
    return level
