"""The direction backtest of one model's predictions for one label on its day (pure).

The model's decisions (``signals``) trade through ``execution``; in the same run, on the same
decisions' fill events, prices and costs:

- ``perfect_foresight``: the best final PnL any strategy can reach there (an upper bound);
- ``buy_and_hold``: long the position limit from the first decision to the close;
- ``random``: long or short at random (seeded), the model's size;
- ``ofi_sign``: long when the best-level order-flow imbalance of the last 50 events is positive,
  short when negative, flat at zero (the same rule as the OFI baseline of ``model_metrics``).

The model's calibration (accuracy and mean confidence per confidence bucket, ECE, Brier score)
is measured on the labelled predictions of the day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.backtest.execution import Book, ExecutionConfig, StrategyRun, fill_plan, perfect_foresight, run_positions
from lob_platform.backtest.performance import NS, bar_ends, performance
from lob_platform.backtest.signals import SignalConfig, decision_rows, directions, label_horizon, target_positions
from lob_platform.training.metrics import expected_calibration_error, reliability

STRATEGIES = ("model", "perfect_foresight", "buy_and_hold", "random", "ofi_sign")


@dataclass(frozen=True)
class DirectionBacktest:
    label: str
    runs: dict[str, StrategyRun]
    metrics: list[dict]  # one row per strategy
    curves: pl.DataFrame  # per strategy and bar: time, equity, drawdown, position
    calibration: list[dict]  # per confidence bucket
    calibration_summary: dict[str, float]  # ece, brier, labelled rows


def backtest_label(book: Book, predictions: pl.DataFrame, ofi: np.ndarray, signal: SignalConfig,
                   execution: ExecutionConfig, bar_seconds: float, days_per_year: int,
                   seed: int = 0) -> DirectionBacktest | str:
    """The backtest of one label's predictions (``event_row``, ``p_down``, ``p_up``, ``true_class``;
    one label), or why there is none."""
    label = predictions["label"][0]
    predictions = predictions.sort("event_row")
    rows = predictions["event_row"].to_numpy().astype(np.int64)
    p_up, p_down = predictions["p_up"].to_numpy(), predictions["p_down"].to_numpy()
    decided = decision_rows(rows, signal.hold_events or label_horizon(label))
    fills = fill_plan(book, rows[decided], execution)
    if len(fills.event) == 0:
        return f"none of its {len(decided)} decisions can fill (after the day's last event or before a two-sided book)"
    decided = decided[fills.decision]
    rng = np.random.default_rng(seed)
    fixed = SignalConfig(sizing="fixed", size=signal.size, position_limit=signal.position_limit)
    ofi_direction = np.sign(np.nan_to_num(ofi[rows[decided]]))
    targets = {
        "model": target_positions(directions(p_up[decided], p_down[decided], signal), p_up[decided], p_down[decided], signal),
        "perfect_foresight": perfect_foresight(book, fills, signal.position_limit, execution),
        "buy_and_hold": np.full(len(decided), signal.position_limit),
        "random": target_positions(rng.choice([-1.0, 1.0], len(decided)), p_up[decided], p_down[decided], fixed),
        "ofi_sign": target_positions(ofi_direction, p_up[decided], p_down[decided], fixed),
    }
    runs = {name: run_positions(book, fills, t, execution) for name, t in targets.items()}
    start = int(rows[decided[0]])
    capital = signal.position_limit * float(book.mid[fills.event[0]])
    per_day = max((book.ts_ns[-1] - book.ts_ns[0]) / NS / bar_seconds, 1.0)
    foresight = runs["perfect_foresight"].pnl
    metrics = [{"strategy": name, "decisions": len(decided),
                **performance(run, book, start, capital, bar_seconds, per_day, days_per_year, foresight)}
               for name, run in runs.items()]
    return DirectionBacktest(label, runs, metrics, equity_curves(runs, book, start, capital, bar_seconds),
                             *calibration(predictions))


def equity_curves(runs: dict[str, StrategyRun], book: Book, start: int, capital: float, bar_seconds: float) -> pl.DataFrame:
    """Each strategy's equity (a share of capital), drawdown and position at every bar's end."""
    ends = bar_ends(book, start, bar_seconds)
    frames = []
    for name, run in runs.items():
        equity = run.equity[ends] / capital
        peak = np.maximum.accumulate(np.maximum(equity, 0.0))
        frames.append(pl.DataFrame({"strategy": name, "ts": book.ts_ns[ends], "equity": equity,
                                    "drawdown": peak - equity, "position": run.position[ends]},
                                   schema_overrides={"strategy": pl.String}))
    return pl.concat(frames).with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))


def calibration(predictions: pl.DataFrame) -> tuple[list[dict], dict[str, float]]:
    labelled = predictions.filter(pl.col("true_class").is_not_null())
    three = labelled["p_flat"].null_count() < labelled.height
    classes = ["down", "flat", "up"] if three else ["down", "up"]
    proba = labelled.select(f"p_{c}" for c in classes).to_numpy()
    y = labelled["true_class"].replace_strict(classes, list(range(len(classes))), return_dtype=pl.Int64).to_numpy()
    if len(y) == 0:
        return [], {"labelled": 0, "ece": float("nan"), "brier": float("nan")}
    brier = float(np.mean(np.sum((proba - np.eye(len(classes))[y]) ** 2, axis=1)))
    return reliability(y, proba), {"labelled": len(y), "ece": expected_calibration_error(y, proba), "brier": brier}

