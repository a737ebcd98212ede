"""Per-event features of seed 000 (the marks a temporal point process predicts).

Rules, one per column, so every value is defined on every row:

- ``price_change_ticks``: this event's price minus the previous priced event's price, in ticks
  (hidden executions at the mid give half ticks). Status rows (halt, resumption) carry no
  price: they and the first event of the partition get 0.
- ``log_size``: ln(1 + size), so status rows (size 0) give 0.
- ``inter_arrival_ns``: nanoseconds since the previous event of the partition; 0 for the first.
  Events sharing a timestamp (one incoming order filling several resting orders) get 0 and
  ``same_timestamp`` is true for all but the first of them.
- ``log_inter_arrival_s``: ln(max(inter_arrival_ns, 1) / 1e9): gaps are floored at one
  nanosecond, the feed's precision, so simultaneous events form the lowest value (-20.7)
  instead of minus infinity.
- ``event_type`` and ``side``: as in the unified schema.
- ``level``: distance in ticks from the same side's best price in the book *before* the event
  (the previous row's book; the first row uses its own): 0 at the best, positive deeper in the
  book, negative inside the spread (an improving order). Null where the venue has no book, the
  side was empty, or the row is a status event.
"""

from __future__ import annotations

import polars as pl

from lob_platform.features.inputs import check_feature_input
from lob_platform.core.columns import ORDER_EVENT_TYPES, SOURCE_ROW

KEY_COLUMNS = ["event_row", "ts_ns", SOURCE_ROW]
EVENT_INPUT = ["ts_ns", "event_type", "size", "price", "side"]
_NS_PER_S = 1e9


def log_inter_arrival_s(gap_ns: pl.Expr) -> pl.Expr:
    """ln of the gap in seconds, floored at one nanosecond (module docstring)."""
    return (gap_ns.clip(lower_bound=1).cast(pl.Float64) / _NS_PER_S).log()


def key_columns(frame: pl.DataFrame) -> list[pl.Expr]:
    """Columns that map a feature row back to its event: position in the partition, time, source line."""
    source_row = pl.col(SOURCE_ROW) if SOURCE_ROW in frame.columns else pl.lit(None, pl.UInt32).alias(SOURCE_ROW)
    return [pl.int_range(pl.len(), dtype=pl.UInt32).alias("event_row"), pl.col("ts_ns"), source_row]


def compute_derived_features(df: pl.DataFrame, tick_size: float, *, check_input: bool = True) -> pl.DataFrame:
    """Event features of validated messages (see the module docstring for each column's rule)."""
    if check_input:
        check_feature_input(df, EVENT_INPUT)
    if tick_size <= 0:
        raise ValueError(f"tick_size must be positive, got {tick_size}")
    is_order = pl.col("event_type").is_in(list(ORDER_EVENT_TYPES))
    price = pl.when(is_order).then(pl.col("price"))
    previous_price = price.forward_fill().shift(1)
    price_change = ((price - previous_price) / tick_size).round(6).fill_null(0.0)
    gap = pl.col("ts_ns").diff().fill_null(0)
    return df.select(
        *key_columns(df),
        price_change.alias("price_change_ticks"),
        pl.col("size").log1p().alias("log_size"),
        gap.alias("inter_arrival_ns"),
        log_inter_arrival_s(gap).alias("log_inter_arrival_s"),
        (pl.col("ts_ns").diff() == 0).fill_null(False).alias("same_timestamp"),
        pl.col("event_type"),
        pl.col("side"),
        _level(df, tick_size, is_order).alias("level"),
    )


def _level(df: pl.DataFrame, tick_size: float, is_order: pl.Expr) -> pl.Expr:
    if "bid_price_1" not in df.columns:
        return pl.lit(None, pl.Float64)
    first_row = pl.int_range(pl.len()) == 0
    best_bid, best_ask = (pl.when(first_row).then(pl.col(c)).otherwise(pl.col(c).shift(1)) for c in ("bid_price_1", "ask_price_1"))
    distance = pl.when(pl.col("side") == "bid").then(best_bid - pl.col("price")).otherwise(pl.col("price") - best_ask)
    return pl.when(is_order).then((distance / tick_size).round(6))
