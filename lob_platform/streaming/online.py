"""Online features: the batch features of ``lob_platform.features`` computed event by event.

``OnlineFeatures`` keeps one instrument-day's state and turns each batch of new events (one
event, or whatever a stream read returned) into the rows the batch feature table has for those
events, under the same rules (``features.events``, ``features.book``). Its state:

- the previous event (time, last order price, book) for the event features, OFI and ``level``;
- the last two-sided row's mid, spread, microprice and VWAP, carried forward;
- running totals of each level's OFI increments and of squared mid-price log returns, continued
  from the previous batch with the same sequential additions the batch path makes over the day,
  so every window sum is the difference of the same two numbers;
- a tail of the latest rows (the longest event window back, and every row of the longest clock
  window back, plus one) for windowed sums and the returns' origins.

Every value is computed in the same floating-point operations as the batch table, so the online
rows equal the batch rows exactly, every column (tested over a whole synthetic day and the real
AMZN day, at several read sizes). Two details keep it so: sums across levels are taken left to
right as the batch code does, and the logarithms use the C library's ``log``/``log1p`` on the
value polars computes (polars divides by a constant as a multiplication by its reciprocal).

Labels are not online features: they look ahead. A new date starts a new day: the state is
reset (features never look into yesterday).
"""

from __future__ import annotations

import math

import numpy as np

from lob_platform.core.columns import ORDER_EVENT_TYPES
from lob_platform.features.book import BookFeatureConfig, level_ofi, window_name

_NS_PER_S = 1_000_000_000
_ORDER_TYPES = frozenset(ORDER_EVENT_TYPES)
_PER_NS = 1 / _NS_PER_S
EVENT_FIELDS = ("ts_ns", "event_type", "side", "price", "size")
"""Columns of an event besides its book (``book``: rows x book columns in ``core.columns.book_columns`` order)."""


def _carry(values: np.ndarray, valid: np.ndarray, last: float) -> tuple[np.ndarray, float]:
    """Each row's value of the last valid row at or before it (``last`` before the batch), and the new last."""
    index = np.maximum.accumulate(np.where(valid, np.arange(len(values)), -1))
    out = np.where(index >= 0, values[np.maximum(index, 0)], last)
    return out, out[-1]


def _left_to_right(columns: np.ndarray) -> np.ndarray:
    """Row sums taken column by column, left to right, as Python's ``sum`` over a list of columns."""
    return np.cumsum(columns, axis=1)[:, -1]


def _elementwise(function, values: np.ndarray) -> np.ndarray:
    return np.fromiter(map(function, values.tolist()), dtype=np.float64, count=len(values))


class OnlineFeatures:
    """Feature state of one instrument-day (see the module docstring)."""

    def __init__(self, tick_size: float, levels: int, config: BookFeatureConfig = BookFeatureConfig()):
        if tick_size <= 0:
            raise ValueError(f"tick_size must be positive, got {tick_size}")
        self.tick, self.levels, self.config = tick_size, levels, config
        self.clock_ns = {s: round(s * _NS_PER_S) for s in set(config.ofi_time_windows_s + config.return_time_horizons_s)}
        self.keep_events = max(config.ofi_event_windows + config.return_event_horizons, default=1) + 1
        self.keep_ns = max(self.clock_ns.values(), default=0)
        self.ofi_names = [([f"ofi_l{level}_{window_name(k, False)}" for k in config.ofi_event_windows],
                           [f"ofi_l{level}_{window_name(s, True)}" for s in config.ofi_time_windows_s])
                          for level in range(1, levels + 1)]
        self.reset(None)

    def reset(self, date: str | None) -> None:
        self.date = date
        self.rows = 0  # events seen today: the next event's event_row
        self.first_mid: int | None = None  # event_row of the day's first row with a mid
        self.last_ts: int | None = None
        self.last_price = np.nan  # the last order event's price
        self.last_book: np.ndarray | None = None  # the previous event's book row
        self.carried = {"mid": np.nan, "spread": np.nan, "microprice": np.nan, "vwap": np.nan}
        # the tail: rows [start, rows) with their time and log mid; running totals after rows
        # start - 1 .. rows - 1 (a row of OFI totals per level, then the squared-return total)
        self.start = 0
        self.tail_ts = np.zeros(0, dtype=np.int64)
        self.tail_log_mid = np.zeros(0)
        self.totals = np.zeros((1, self.levels + 1))

    def update(self, events: dict[str, np.ndarray], date: str) -> dict[str, np.ndarray]:
        """Feature columns of ``events``: the next events of ``date``, in order, as arrays of
        ``EVENT_FIELDS`` (NaN for a status row's price) and ``book`` (NaN for an empty level's price)."""
        if date != self.date:
            self.reset(date)
        n = len(events["ts_ns"])
        if n == 0:
            return {}
        rows = np.arange(self.rows, self.rows + n)
        book = events.get("book")
        with_previous = self._with_previous(book) if self.levels else None
        out = {"event_row": rows, **self._event_features(events, with_previous)}
        if self.levels:
            out.update(self._book_features(events, book, with_previous, rows))
            self.last_book = book[-1].copy()
        self.rows += n
        self.last_ts = int(events["ts_ns"][-1])
        return out

    def _with_previous(self, book: np.ndarray) -> np.ndarray:
        """The book rows with the previous event's row in front (the day's first event: its own)."""
        previous = self.last_book if self.last_book is not None else book[0]
        return np.vstack((previous, book))

    # ---- event features (features.events)

    def _event_features(self, events: dict[str, np.ndarray], with_previous: np.ndarray | None) -> dict[str, np.ndarray]:
        ts, kind, side = events["ts_ns"].astype(np.int64), events["event_type"], events["side"]
        is_order = np.fromiter((k in _ORDER_TYPES for k in kind), dtype=bool, count=len(kind))
        price = np.where(is_order, events["price"], np.nan)
        gap = ts - np.concatenate(([ts[0] if self.last_ts is None else self.last_ts], ts[:-1]))
        before = self.last_price
        known, self.last_price = _carry(price, is_order, before)
        previous_price = np.concatenate(([before], known[:-1]))
        with np.errstate(invalid="ignore"):
            change = np.round((price - previous_price) / self.tick, 6)
        out = {
            "ts_ns": ts,
            "price_change_ticks": np.where(np.isnan(change), 0.0, change),
            "log_size": _elementwise(math.log1p, events["size"]),
            "inter_arrival_ns": gap,
            "log_inter_arrival_s": _elementwise(math.log, np.maximum(gap, 1) * _PER_NS),
            "same_timestamp": np.concatenate(([self.last_ts is not None and ts[0] == self.last_ts], gap[1:] == 0)),
            "event_type": kind,
            "side": side,
            "level": np.full(len(ts), np.nan),
        }
        if self.levels:
            previous = with_previous[:-1]  # the book before each event
            distance = np.where(side == "bid", previous[:, 2] - events["price"], events["price"] - previous[:, 0])
            out["level"] = np.where(is_order, np.round(distance / self.tick, 6), np.nan)
        return out

    # ---- book features (features.book)

    def _book_features(self, events: dict[str, np.ndarray], book: np.ndarray, with_previous: np.ndarray,
                       rows: np.ndarray) -> dict[str, np.ndarray]:
        config, carried = self.config, self.carried
        ask_p, ask_q, bid_p, bid_q = book[:, 0::4], book[:, 1::4], book[:, 2::4], book[:, 3::4]
        ask, bid, ask_size, bid_size = ask_p[:, 0], bid_p[:, 0], ask_q[:, 0], bid_q[:, 0]
        two_sided = ~np.isnan(ask) & ~np.isnan(bid) & (bid < ask)
        out: dict[str, np.ndarray] = {"book_two_sided": two_sided}
        with np.errstate(invalid="ignore", divide="ignore"):
            mid, carried["mid"] = _carry((ask + bid) / 2, two_sided, carried["mid"])
            spread, carried["spread"] = _carry(ask - bid, two_sided, carried["spread"])
            microprice, carried["microprice"] = _carry((bid * ask_size + ask * bid_size) / (ask_size + bid_size),
                                                       two_sided, carried["microprice"])
            prices = np.hstack((ask_p, bid_p))
            prices = np.where(np.isnan(prices), 0.0, prices)
            depth_value = _left_to_right(prices * np.hstack((ask_q, bid_q)))
            ask_depth, bid_depth = _left_to_right(ask_q), _left_to_right(bid_q)
            vwap, carried["vwap"] = _carry(depth_value / (ask_depth + bid_depth), two_sided, carried["vwap"])
            depth_imbalance = (bid_depth - ask_depth) / (bid_depth + ask_depth)
            queue_imbalance = (bid_size - ask_size) / (bid_size + ask_size)
            out.update({
                "mid": mid,
                "spread_ticks": np.round(spread / self.tick, 6),
                "microprice": microprice,
                "microprice_offset_ticks": (microprice - mid) / self.tick,
                "book_vwap": vwap,
                "vwap_offset_ticks": (vwap - mid) / self.tick,
                "bid_depth": bid_depth,
                "ask_depth": ask_depth,
                "depth_imbalance": np.where(np.isnan(depth_imbalance), 0.0, depth_imbalance),
                "queue_imbalance": np.where(np.isnan(queue_imbalance), 0.0, queue_imbalance),
            })
            log_mid = np.log(mid)
        has_mid = ~np.isnan(log_mid)
        if self.first_mid is None and has_mid.any():
            self.first_mid = int(rows[np.argmax(has_mid)])

        # increments of the running totals: OFI per level, then the squared log-mid step
        ofi = level_ofi(with_previous[:, 2::4], with_previous[:, 3::4], with_previous[:, 0::4], with_previous[:, 1::4])[1:]
        step = np.diff(np.concatenate((self.tail_log_mid[-1:] if self.rows else log_mid[:1], log_mid)))
        step = np.where(np.isnan(step), 0.0, step)
        if self.rows == 0:
            ofi[0] = 0.0  # the day's first event
        increments = np.column_stack((ofi, step * step))
        totals = np.vstack((self.totals, np.cumsum(np.vstack((self.totals[-1:], increments)), axis=0)[1:]))
        ts = np.concatenate((self.tail_ts, events["ts_ns"].astype(np.int64)))
        all_log_mid = np.concatenate((self.tail_log_mid, log_mid))

        local = rows - self.start  # each row's position in tail + batch
        after = totals[local + 1]

        def event_sum(k: int) -> np.ndarray:
            before = rows + 1 - k  # the window starts after row `before - 1`; inside the day's first k rows it is the day
            return np.where((before > 0)[:, None], after - totals[np.maximum(before - self.start, 0)], after)

        starts = {s: self.start + np.searchsorted(ts, events["ts_ns"] - ns, side="right") for s, ns in self.clock_ns.items()}
        clock_sum = {s: after - totals[starts[s] - self.start] for s in self.clock_ns}
        event_sums = {k: event_sum(k) for k in set(config.ofi_event_windows + config.return_event_horizons)}
        for level, (event_names, clock_names) in enumerate(self.ofi_names):
            for name, k in zip(event_names, config.ofi_event_windows):
                out[name] = event_sums[k][:, level]
            for name, s in zip(clock_names, config.ofi_time_windows_s):
                out[name] = clock_sum[s][:, level]

        first = self.first_mid if self.first_mid is not None else self.rows + len(rows)
        origins = {window_name(k, False): rows - k for k in config.return_event_horizons}
        origins.update({window_name(s, True): starts[s] - 1 for s in config.return_time_horizons_s})
        for name, origin in origins.items():
            origin = np.maximum(np.maximum(origin, min(first, rows[-1])), self.start)  # no mid yet: NaN anyway
            out[f"return_{name}"] = log_mid - all_log_mid[origin - self.start]
        before_first = rows < first
        volatility = {window_name(k, False): event_sums[k][:, -1] for k in config.return_event_horizons}
        volatility.update({window_name(s, True): clock_sum[s][:, -1] for s in config.return_time_horizons_s})
        for name, squares in volatility.items():
            out[f"realized_vol_{name}"] = np.where(before_first, np.nan, np.sqrt(np.maximum(squares, 0.0)))

        self._trim(ts, all_log_mid, totals)
        return out

    def _trim(self, ts: np.ndarray, log_mid: np.ndarray, totals: np.ndarray) -> None:
        """Keep the rows later windows reach: the longest event window back, every row of the
        longest clock window back, and one row before those (a return's origin)."""
        end = self.start + len(ts)
        by_events = end - self.keep_events
        by_clock = self.start + int(np.searchsorted(ts, ts[-1] - self.keep_ns, side="right"))
        start = max(min(by_events, by_clock) - 1, self.start)
        cut = start - self.start
        self.tail_ts, self.tail_log_mid, self.totals = ts[cut:], log_mid[cut:], totals[cut:]
        self.start = start
