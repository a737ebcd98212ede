"""Events per second through the direction backtest and the market maker on one LOBSTER sample day,
beside straightforward per-event loop implementations in the same run.

The day's validated messages and features are made once, untimed. The signal is a stand-in model
that follows the order-flow imbalance (p(up) = 0.8 when the 50-event OFI is positive, else 0.2),
predicted on every event, with a decision on every event (``next_mid_up``'s holding period of one
event): the most decisions a day can have.

- **direction, model strategy**: fills (latency, prices, costs) and per-event position, cash and
  equity of the model's signal (``fill_plan`` + ``run_positions``) and its performance metrics,
  against a per-event Python loop that keeps pending orders and marks to mid (the baseline; its
  equity must match to 1e-9).
- **direction, whole backtest**: ``backtest_label``: the model and its four comparisons (perfect
  foresight's dynamic programme included), metrics, curves and calibration.
- **market maker**: Avellaneda–Stoikov on the second half of the day with σ, A, k estimated on the
  first half: ``simulate_on_messages`` (the platform's, a loop over the events) beside
  ``simulate_by_intervals`` (numpy per requote interval); their fills must be identical.

Median of ``--repeats`` runs, interleaved in a shuffled order, each after a garbage collection.

    python benchmarks/backtest.py [ZIP] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from lob_platform.backtest import market_making as mm
from lob_platform.backtest.direction import backtest_label
from lob_platform.backtest.execution import Book, ExecutionConfig, fill_plan, run_positions
from lob_platform.backtest.performance import performance
from lob_platform.backtest.signals import SignalConfig, directions, target_positions
from lob_platform.core.tables import MESSAGES
from lob_platform.features.table import build_features
from lob_platform.sources.lobster import pairs_in_archive, read_lobster_pair
from lob_platform.validation.report import split_valid_rejected

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared/data/lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
TICK = 0.01
EXECUTION = ExecutionConfig(fee_bps=0.2, latency_events=1, latency_us=50)
SIGNAL = SignalConfig()


def loop_backtest(book: Book, decision_events: np.ndarray, targets: np.ndarray, config: ExecutionConfig) -> np.ndarray:
    """The model strategy's equity after every event, one event at a time."""
    fee, slip, latency_ns = config.fee_bps * 1e-4, config.slippage_bps * 1e-4, round(config.latency_us * 1000)
    n = len(book)
    equity = np.empty(n)
    position = cash = 0.0
    pending = []  # (earliest event, earliest time, target)
    next_decision = 0
    for i in range(n):
        while next_decision < len(decision_events) and decision_events[next_decision] < i:
            d = decision_events[next_decision]
            pending.append((d + config.latency_events, book.ts_ns[d] + latency_ns, targets[next_decision]))
            next_decision += 1
        while pending and pending[0][0] <= i and pending[0][1] <= book.ts_ns[i]:
            _, _, target = pending.pop(0)
            traded = target - position
            if traded > 0:
                cash -= traded * book.ask[i] * (1 + slip) * (1 + fee)
            elif traded < 0:
                cash -= traded * book.bid[i] * (1 - slip) * (1 - fee)
            position = target
        if i == n - 1 and position:
            price = book.ask[i] * (1 + slip) * (1 + fee) if position < 0 else book.bid[i] * (1 - slip) * (1 - fee)
            cash += position * price
            position = 0.0
        equity[i] = cash + position * book.mid[i]
    return equity


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    frame = read_lobster_pair(pairs_in_archive(args.archive)[0])
    valid, _, _ = split_valid_rejected(frame, MESSAGES, TICK, str(args.archive))
    features = build_features(valid, TICK)
    book = Book.from_messages(valid, features["mid"])
    ofi = features["ofi_l1_50ev"].to_numpy()
    p_up = np.where(np.nan_to_num(ofi) > 0, 0.8, 0.2)
    predictions = pl.DataFrame({"event_row": features["event_row"], "label": "next_mid_up", "p_up": p_up, "p_down": 1 - p_up,
                                "p_flat": None, "true_class": None}, schema_overrides={"p_flat": pl.Float64, "true_class": pl.String})
    rows = np.arange(len(book))
    half = len(book) // 2
    training, trading = mm.message_arrays(valid[:half]), mm.message_arrays(valid[half:])
    params = mm.estimate_parameters([training])
    quoting = mm.MarketMakerConfig(tick_size=TICK)

    def model_strategy():
        plan = fill_plan(book, rows, EXECUTION)
        targets = target_positions(directions(p_up, 1 - p_up, SIGNAL), p_up, 1 - p_up, SIGNAL)[plan.decision]
        run = run_positions(book, plan, targets, EXECUTION)
        performance(run, book, 0, float(book.mid[plan.event[0]]), 60, 390, 252, None)
        return run.equity

    def model_loop():
        return loop_backtest(book, rows, target_positions(directions(p_up, 1 - p_up, SIGNAL), p_up, 1 - p_up, SIGNAL), EXECUTION)

    cases = {
        "direction, model strategy (vectorised)": model_strategy,
        "direction, model strategy (per-event loop, baseline)": model_loop,
        "direction, whole backtest with the 4 comparisons": lambda: backtest_label(book, predictions, ofi, SIGNAL, EXECUTION, 60, 252),
        "market maker (per event, the platform's)": lambda: mm.simulate_on_messages(trading, params, quoting, "inventory"),
        "market maker (numpy per requote interval)": lambda: mm.simulate_by_intervals(trading, params, quoting, "inventory"),
    }
    events = {name: (len(trading) if name.startswith("market") else len(book)) for name in cases}
    times = {name: [] for name in cases}
    outputs = {}
    rng = random.Random(0)
    for _ in range(args.repeats):
        order = list(cases.items())
        rng.shuffle(order)  # no case always runs after another's garbage
        for name, case in order:
            gc.collect()
            started = time.perf_counter()
            outputs[name] = case()
            times[name].append(time.perf_counter() - started)
    print(f"{args.archive.name}: {len(book):,} events; machine: {machine()}; median of {args.repeats}")
    rates = {name: events[name] / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"  {name:<55} {statistics.median(times[name]) * 1000:9.1f} ms  {rate:>13,.0f} events/s")
    names = list(cases)
    print(f"  direction: vectorised / loop = {rates[names[0]] / rates[names[1]]:.1f}x; "
          f"market maker: per interval / per event = {rates[names[4]] / rates[names[3]]:.1f}x")
    equity_ok = np.allclose(outputs[names[0]], outputs[names[1]], rtol=0, atol=1e-9)
    fills_ok = outputs[names[3]].fills.equals(outputs[names[4]].fills)
    print(f"  same equity as the loop: {equity_ok}; same market-maker fills both ways: {fills_ok}")
    return 0 if equity_ok and fills_ok else 1


if __name__ == "__main__":
    sys.exit(main())
