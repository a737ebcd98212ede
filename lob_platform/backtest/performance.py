"""Performance of a strategy's day (pure, vectorised).

Returns are PnL over ``capital`` (the notional of a full position at the first decision's mid),
on a clock of ``bar_seconds`` bars: the equity at each bar's end (the last event's) minus the one
before. They are annualised with bars per trading day (the day's span of events over ``bar_seconds``) ×
trading days per year (252 for exchanges, 365 for crypto venues, which trade every day). Annualised figures are simple
(mean bar return × bars per year), not compounded. The risk-free rate is 0.

- Sharpe: mean / standard deviation of bar returns × √(bars per year); Sortino: over the
  downside deviation √mean(min(r, 0)²); Calmar: annualised return / maximum drawdown.
- Maximum drawdown (a share of capital) and its duration (seconds from the peak to the recovery,
  or to the day's end) on the equity after every event.
- VaR and expected shortfall at 95 %: the 5 % quantile of bar returns and the mean beyond it, as
  losses (positive numbers).
- Trades: each fill. A *holding* is the time from one fill to the next (or to the close) with a
  position; hit rate is the share of holdings whose equity change (costs of the opening fill
  included) is positive; profit factor their gains over their losses.
- Turnover: traded notional over capital. Costs: cash lost against trading at the mid, over
  capital. ``pf_capture``: PnL over perfect foresight's PnL (NaN when that is not positive).
"""

from __future__ import annotations

import numpy as np

from lob_platform.backtest.execution import Book, StrategyRun

NS = 1_000_000_000
METRICS = ("pnl", "total_return", "annualised_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
           "max_drawdown_duration_s", "var_95", "es_95", "hit_rate", "profit_factor", "turnover", "trades", "costs",
           "pf_capture")


def bar_ends(book: Book, start_event: int, bar_seconds: float) -> np.ndarray:
    """The last event of each bar from ``start_event``'s time to the day's last event."""
    if len(book) == 0:
        return np.zeros(0, dtype=np.int64)
    step = round(bar_seconds * NS)
    edges = np.arange(book.ts_ns[start_event] + step, book.ts_ns[-1] + step, step)
    return np.searchsorted(book.ts_ns, edges, side="right") - 1


def bar_returns(run: StrategyRun, ends: np.ndarray, capital: float) -> np.ndarray:
    return np.diff(np.r_[0.0, run.equity[ends]]) / capital


def drawdown(equity: np.ndarray, ts_ns: np.ndarray, capital: float) -> tuple[float, float]:
    """(maximum drawdown over capital, longest time under a previous peak in seconds)."""
    if len(equity) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(np.maximum(equity, 0.0))
    index = np.arange(len(equity))
    peak_at = np.maximum.accumulate(np.where(equity >= peak, index, 0))
    under = equity < peak
    duration = np.where(under, ts_ns - ts_ns[peak_at], 0)
    return float(np.max(peak - equity) / capital), float(duration.max() / NS)


def holding_pnls(run: StrategyRun, book: Book) -> np.ndarray:
    """Equity change over each holding (from a fill to the next fill or the day's end) with a position."""
    if len(run.fill_events) == 0:
        return np.zeros(0)
    starts = run.fill_events
    ends = np.r_[starts[1:], len(book) - 1]
    before = np.where(starts > 0, run.equity[np.maximum(starts - 1, 0)], 0.0)
    changes = run.equity[ends] - before  # from just before the opening fill: its costs count
    return changes[run.position[starts] != 0]


def performance(run: StrategyRun, book: Book, start_event: int, capital: float, bar_seconds: float,
                periods_per_day: float, days_per_year: int, foresight_pnl: float | None) -> dict[str, float]:
    ends = bar_ends(book, start_event, bar_seconds)
    returns = bar_returns(run, ends, capital)
    per_year = periods_per_day * days_per_year
    mean, std = (returns.mean(), returns.std(ddof=1)) if len(returns) > 1 else (0.0, 0.0)
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)) if len(returns) else 0.0
    max_dd, dd_seconds = drawdown(run.equity[start_event:], book.ts_ns[start_event:], capital)
    annual = mean * per_year
    tail = returns[returns <= np.quantile(returns, 0.05)] if len(returns) else returns
    holdings = holding_pnls(run, book)
    gains, losses = holdings[holdings > 0].sum(), -holdings[holdings < 0].sum()
    mid = np.nan_to_num(book.mid)
    ratio = lambda a, b: float(a / b) if b > 0 else float("nan")  # noqa: E731
    return {
        "pnl": run.pnl,
        "total_return": run.pnl / capital,
        "annualised_return": annual,
        "volatility": std * np.sqrt(per_year),
        "sharpe": ratio(mean * np.sqrt(per_year), std),
        "sortino": ratio(mean * np.sqrt(per_year), downside),
        "calmar": ratio(annual, max_dd),
        "max_drawdown": max_dd,
        "max_drawdown_duration_s": dd_seconds,
        "var_95": float(-np.quantile(returns, 0.05)) if len(returns) else float("nan"),
        "es_95": float(-tail.mean()) if len(tail) else float("nan"),
        "hit_rate": float(np.mean(holdings > 0)) if len(holdings) else float("nan"),
        "profit_factor": ratio(gains, losses),
        "turnover": float(np.sum(np.abs(run.traded) * mid[run.fill_events]) / capital),
        "trades": float(len(run.traded)),
        "costs": float(run.cost.sum() / capital),
        "pf_capture": ratio(run.pnl, foresight_pnl) if foresight_pnl is not None else float("nan"),
    }
