"""Book features of seeds 001 and 004, one row per event, from the book after the event.

Every feature at row n uses rows 0..n only. Windows are trailing and include the current
event; a clock window of h seconds covers events with ts_ns in (t - h, t], counted only up to the
current row, so later events sharing the timestamp are never seen. At the start of the day a
window is truncated to the events there are (no nulls, no peeking into yesterday).

Book rules:

- A row is *two-sided* when both best prices are present and bid < ask. On other rows (one side
  empty, or crossed) the price features (mid, spread, microprice, VWAP, returns) carry the last
  two-sided row's values forward; before the first two-sided row of the day they are null. The
  queue, depth and OFI features use the book as given.
- Order-flow imbalance follows Cont, Kukanov and Stoikov per level i:
  e_i,n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1 - 1{Pa_n <= Pa_n-1} qa_n + 1{Pa_n >= Pa_n-1} qa_n-1
  with level i's prices and sizes; an empty bid level has price -inf and an empty ask level +inf
  (size 0), so a level appearing adds its queue and one vanishing removes it. The first event of
  the partition has e = 0. ``ofi_l{i}_{window}`` is the sum of e_i over the window.
- Returns are log mid returns against the mid at the start of the window (the event k back, or
  the last event at or before t - h); realised volatility is the square root of the sum of
  squared event-to-event log mid returns in the window.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.features.inputs import check_feature_input
from lob_platform.core.columns import book_levels

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class BookFeatureConfig:
    """Windows of the summed OFI, and horizons of the rolling returns and realised volatility."""

    ofi_event_windows: tuple[int, ...] = (10, 50, 100)
    ofi_time_windows_s: tuple[float, ...] = (1.0, 10.0)
    return_event_horizons: tuple[int, ...] = (10, 50, 100)
    return_time_horizons_s: tuple[float, ...] = (1.0, 10.0, 60.0)

    def __post_init__(self) -> None:
        if min(self.ofi_event_windows + self.return_event_horizons, default=1) < 1:
            raise ValueError("event windows must be at least 1 event")
        if min(self.ofi_time_windows_s + self.return_time_horizons_s, default=1) <= 0:
            raise ValueError("time windows must be positive")


def window_name(window: int | float, clock: bool) -> str:
    return f"{window:g}s" if clock else f"{window}ev"


def running_total(values: np.ndarray) -> np.ndarray:
    """0 followed by the cumulative sums: total[j] - total[i] sums rows i..j-1."""
    total = np.empty(len(values) + 1)
    total[0] = 0.0
    np.cumsum(values, out=total[1:])
    return total


def event_window_sum(total: np.ndarray, events: int) -> np.ndarray:
    """Sum over the last ``events`` rows including the current one (truncated at row 0), from
    ``running_total``; slices rather than gathers, as it runs for every level and window."""
    out = total[1:].copy()
    if events < len(total):
        out[events:] -= total[1:-events]
    return out


def clock_window_starts(ts_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """First row of each row's clock window (t - window, t]; one search per window length."""
    return np.searchsorted(ts_ns, ts_ns - window_ns, side="right")


def clock_window_sum(total: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum over rows from ``starts`` up to the current one, from ``running_total``."""
    return total[1:] - total[starts]


def level_ofi(bid: np.ndarray, bid_size: np.ndarray, ask: np.ndarray, ask_size: np.ndarray) -> np.ndarray:
    """Per-event OFI increment of one level (module docstring); NaN prices are empty levels. Rows
    are events; 2-D arrays give every level at once (a column per level)."""
    bid = np.where(np.isnan(bid), -np.inf, bid)
    ask = np.where(np.isnan(ask), np.inf, ask)
    e = np.zeros(np.shape(bid))
    e[1:] = (
        (bid[1:] >= bid[:-1]) * bid_size[1:] - (bid[1:] <= bid[:-1]) * bid_size[:-1]
        - (ask[1:] <= ask[:-1]) * ask_size[1:] + (ask[1:] >= ask[:-1]) * ask_size[:-1]
    )
    return e


def _carry_forward(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Values of the last valid row at or before each row; NaN before the first valid row."""
    last = np.maximum.accumulate(np.where(valid, np.arange(len(values)), -1))
    out = values[np.maximum(last, 0)]
    return np.where(last >= 0, out, np.nan)


def compute_book_features(df: pl.DataFrame, tick_size: float, config: BookFeatureConfig = BookFeatureConfig(), *,
                          check_input: bool = True) -> pl.DataFrame:
    """Book features of validated messages (or depth snapshots) that carry book columns."""
    levels = book_levels(df.columns)
    if levels == 0:
        raise ValueError("the frame has no book columns (ask_price_1, ...): book features need a venue with a book")
    if check_input:
        check_feature_input(df, ["ts_ns"])
    col = {c: df[c].to_numpy() for c in df.columns if c.startswith(("ask_", "bid_"))}
    ts = df["ts_ns"].to_numpy()
    clock_windows = {s: round(s * _NS_PER_S) for s in set(config.ofi_time_windows_s + config.return_time_horizons_s)}
    starts = {s: clock_window_starts(ts, ns) for s, ns in clock_windows.items()}
    ask, bid, ask_size, bid_size = col["ask_price_1"], col["bid_price_1"], col["ask_size_1"], col["bid_size_1"]
    two_sided = ~np.isnan(ask) & ~np.isnan(bid) & (bid < ask)
    out: dict[str, np.ndarray] = {"book_two_sided": two_sided}

    with np.errstate(invalid="ignore", divide="ignore"):
        mid = _carry_forward((ask + bid) / 2, two_sided)
        spread = _carry_forward(ask - bid, two_sided)
        microprice = _carry_forward((bid * ask_size + ask * bid_size) / (ask_size + bid_size), two_sided)
        prices = [np.nan_to_num(col[f"{s}_price_{i}"]) for s in ("ask", "bid") for i in range(1, levels + 1)]
        sizes = [col[f"{s}_size_{i}"] for s in ("ask", "bid") for i in range(1, levels + 1)]
        depth_value = sum(p * q for p, q in zip(prices, sizes))
        ask_depth = sum(sizes[:levels])
        bid_depth = sum(sizes[levels:])
        vwap = _carry_forward(depth_value / (ask_depth + bid_depth), two_sided)
        out.update({
            "mid": mid,
            "spread_ticks": np.round(spread / tick_size, 6),
            "microprice": microprice,
            "microprice_offset_ticks": (microprice - mid) / tick_size,
            "book_vwap": vwap,
            "vwap_offset_ticks": (vwap - mid) / tick_size,
            "bid_depth": bid_depth,
            "ask_depth": ask_depth,
            "depth_imbalance": np.nan_to_num((bid_depth - ask_depth) / (bid_depth + ask_depth)),
            "queue_imbalance": np.nan_to_num((bid_size - ask_size) / (bid_size + ask_size)),
        })

    def windowed_ofi(level: int) -> dict[str, np.ndarray]:
        e = running_total(level_ofi(col[f"bid_price_{level}"], col[f"bid_size_{level}"], col[f"ask_price_{level}"], col[f"ask_size_{level}"]))
        sums = {f"ofi_l{level}_{window_name(k, False)}": event_window_sum(e, k) for k in config.ofi_event_windows}
        sums.update({f"ofi_l{level}_{window_name(s, True)}": clock_window_sum(e, starts[s]) for s in config.ofi_time_windows_s})
        return sums

    # numpy releases the GIL on whole-array operations, so levels run side by side on every core
    with ThreadPoolExecutor(max_workers=min(levels, os.cpu_count() or 1)) as pool:
        returns = pool.submit(_returns_and_volatility, np.log(mid), starts, config)
        for sums in pool.map(windowed_ofi, range(1, levels + 1)):
            out.update(sums)
        out.update(returns.result())
    return pl.DataFrame([pl.Series(name, values, nan_to_null=True) for name, values in out.items()])


def _returns_and_volatility(log_mid: np.ndarray, starts: dict[float, np.ndarray], config: BookFeatureConfig) -> dict[str, np.ndarray]:
    n = len(log_mid)
    ready = np.flatnonzero(~np.isnan(log_mid))
    first = ready[0] if len(ready) else n  # windows are truncated to the first row with a mid
    step = np.zeros(n)
    if n > 1:
        step[1:] = np.nan_to_num(np.diff(log_mid))
    squared = running_total(step * step)
    rows = np.arange(n)
    origins = {window_name(k, False): rows - k for k in config.return_event_horizons}
    origins.update({window_name(s, True): starts[s] - 1 for s in config.return_time_horizons_s})  # last row at or before t - h
    out = {}
    for name, origin in origins.items():
        origin = np.clip(origin, min(first, n - 1), None) if n else origin
        out[f"return_{name}"] = log_mid - log_mid[origin] if n else log_mid
    for k in config.return_event_horizons:
        out[f"realized_vol_{window_name(k, False)}"] = np.sqrt(np.maximum(event_window_sum(squared, k), 0.0))
    for s in config.return_time_horizons_s:
        out[f"realized_vol_{window_name(s, True)}"] = np.sqrt(np.maximum(clock_window_sum(squared, starts[s]), 0.0))
    for name, values in out.items():
        if name.startswith("realized_vol_"):
            values[rows < first] = np.nan  # no mid yet: no volatility either
    return out
