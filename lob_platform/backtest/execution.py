"""Execution of target positions against the day's book, and perfect foresight (pure, vectorised).

- **Latency.** A decision taken on event i (it saw the book after event i) fills on the first
  event f with f ≥ i + ``latency_events`` and time ≥ time(i) + ``latency_us``, at the book after
  event f: never a book the decision could not have waited for. A decision whose fill would come
  after the day's last event, or before the day's first two-sided book, is not executed.
- **Prices.** ``fill="touch"``: buy at the best ask, sell at the best bid (a side that is empty
  on the fill event keeps its last price). ``fill="mid"``: the mid ± ``half_spread_bps``. Then
  ``slippage_bps`` against the trader, and ``fee_bps`` of the traded notional.
- **PnL** is marked to the mid after every event: equity = cash + position × mid. With
  ``flatten_at_close`` the position left after the last decision is closed on the day's last event
  at the same prices and costs, so the final equity is realised.

**Perfect foresight** (``perfect_foresight``) is the best any strategy can do with the same
decisions' fill events, prices, costs and position limit: a dynamic programme over the positions
{-limit, 0, +limit} (with costs linear in the traded size, an optimum over [-limit, limit] always
lies on those three), so it is a true upper bound of the final PnL, not "trade the realised label".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.errors import ConfigError

FILLS = ("touch", "mid")
BPS = 1e-4


@dataclass(frozen=True)
class ExecutionConfig:
    fill: str = "touch"
    half_spread_bps: float = 0.0  # fill="mid": paid on each side
    fee_bps: float = 0.2  # of the traded notional, each fill
    slippage_bps: float = 0.0
    latency_events: int = 1  # the fill's book is at least this many events after the decision's
    latency_us: float = 0.0  # ... and at least this much later
    flatten_at_close: bool = True

    def __post_init__(self) -> None:
        if self.fill not in FILLS:
            raise ConfigError(f"ExecutionConfig.fill must be one of {FILLS}, got {self.fill!r}")
        if min(self.half_spread_bps, self.slippage_bps, self.latency_events, self.latency_us) < 0:
            raise ConfigError(f"ExecutionConfig: spreads, slippage and latencies cannot be negative; got {self}")


@dataclass(frozen=True)
class Book:
    """The best prices after every event of a day, in event order."""

    ts_ns: np.ndarray
    bid: np.ndarray  # NaN before the side's first quote; carried over an empty side
    ask: np.ndarray
    mid: np.ndarray

    @classmethod
    def from_messages(cls, messages: pl.DataFrame, mid: pl.Series | np.ndarray) -> "Book":
        """From validated messages (``ts_ns``, ``bid_price_1``, ``ask_price_1``) and the features'
        ``mid`` of the same rows (carried over one-sided and crossed books)."""
        best = messages.select("ts_ns", pl.col("bid_price_1").forward_fill(), pl.col("ask_price_1").forward_fill())
        return cls(best["ts_ns"].to_numpy(), best["bid_price_1"].to_numpy().astype(np.float64),
                   best["ask_price_1"].to_numpy().astype(np.float64), np.asarray(mid, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass(frozen=True)
class Fills:
    """Where and at what unit prices (costs included) each executable decision trades."""

    decision: np.ndarray  # index into the decisions given
    event: np.ndarray  # fill event
    buy: np.ndarray  # cash paid per unit bought
    sell: np.ndarray  # cash received per unit sold


def fill_plan(book: Book, decision_events: np.ndarray, config: ExecutionConfig) -> Fills:
    """The fill event and unit prices of every decision that can execute (module docstring)."""
    decision_events = np.asarray(decision_events, dtype=np.int64)
    by_time = np.searchsorted(book.ts_ns, book.ts_ns[decision_events] + round(config.latency_us * 1000), side="left")
    event = np.maximum(decision_events + config.latency_events, by_time)
    inside = event < len(book)
    event = np.where(inside, event, 0)
    buy, sell = unit_prices(book, event, config)
    ok = inside & np.isfinite(buy) & np.isfinite(sell) & np.isfinite(book.mid[event])
    keep = np.flatnonzero(ok)
    return Fills(keep, event[keep], buy[keep], sell[keep])


def unit_prices(book: Book, event: np.ndarray, config: ExecutionConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.fill == "touch":
        ask, bid = book.ask[event], book.bid[event]
    else:
        ask = book.mid[event] * (1 + config.half_spread_bps * BPS)
        bid = book.mid[event] * (1 - config.half_spread_bps * BPS)
    buy = ask * (1 + config.slippage_bps * BPS) * (1 + config.fee_bps * BPS)
    sell = bid * (1 - config.slippage_bps * BPS) * (1 - config.fee_bps * BPS)
    return buy, sell


@dataclass(frozen=True)
class StrategyRun:
    """A strategy's day: per event its position, cash and equity; per fill what it traded."""

    position: np.ndarray
    cash: np.ndarray
    equity: np.ndarray
    fill_events: np.ndarray
    traded: np.ndarray  # signed units per fill
    cost: np.ndarray  # per fill: cash lost against trading at the mid (spread, slippage, fees)

    @property
    def pnl(self) -> float:
        return float(self.equity[-1]) if len(self.equity) else 0.0


def close_out(book: Book, config: ExecutionConfig) -> tuple[int, float, float] | None:
    """The day's last event and its unit prices, where the position is flattened."""
    if not config.flatten_at_close or len(book) == 0:
        return None
    last = np.array([len(book) - 1])
    buy, sell = unit_prices(book, last, config)
    return (len(book) - 1, float(buy[0]), float(sell[0])) if np.isfinite(buy[0]) and np.isfinite(sell[0]) else None


def run_positions(book: Book, fills: Fills, targets: np.ndarray, config: ExecutionConfig) -> StrategyRun:
    """Trade to ``targets`` (one per fill, in order) and mark to mid on every event."""
    targets = np.asarray(targets, dtype=np.float64)
    events, buy, sell = fills.event, fills.buy, fills.sell
    traded = np.diff(targets, prepend=0.0)
    end = close_out(book, config)
    if end is not None and len(targets):
        events, buy, sell = np.r_[events, end[0]], np.r_[buy, end[1]], np.r_[sell, end[2]]
        traded = np.r_[traded, -targets[-1]]
    cash_flow = -np.where(traded > 0, traded * buy, traded * sell)
    n = len(book)
    position = np.cumsum(np.bincount(events, traded, minlength=n))
    cash = np.cumsum(np.bincount(events, cash_flow, minlength=n))
    mid = np.nan_to_num(book.mid)
    equity = cash + position * mid
    cost = -cash_flow - traded * mid[events]
    moved = traded != 0
    return StrategyRun(position, cash, equity, events[moved], traded[moved], cost[moved])


def perfect_foresight(book: Book, fills: Fills, limit: float, config: ExecutionConfig) -> np.ndarray:
    """The targets (one per fill) with the largest final PnL over positions in [-limit, limit]."""
    states = (-limit, 0.0, limit)
    value = [-np.inf, 0.0, -np.inf]  # cash after the decision, by position held; start flat
    choices = np.empty((len(fills.event), 3), dtype=np.int8)
    for k, (buy, sell) in enumerate(zip(fills.buy.tolist(), fills.sell.tolist())):
        new = []
        for j, to in enumerate(states):
            best, arg = -np.inf, 0
            for i, held in enumerate(states):
                traded = to - held
                candidate = value[i] - (traded * buy if traded > 0 else traded * sell)
                if candidate > best:
                    best, arg = candidate, i
            new.append(best)
            choices[k, j] = arg
        value = new
    end = close_out(book, config)
    if end is not None:
        value = [v + (s * end[2] if s > 0 else s * end[1]) for v, s in zip(value, states)]
    else:
        mid = np.nan_to_num(book.mid[-1]) if len(book) else 0.0
        value = [v + s * mid for v, s in zip(value, states)]
    state = int(np.argmax(value))
    path = np.empty(len(fills.event))
    for k in range(len(fills.event) - 1, -1, -1):
        path[k] = states[state]
        state = choices[k, state]
    return path
