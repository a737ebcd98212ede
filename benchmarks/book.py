"""Order-by-order replay throughput: ``rebuild_book`` (compiled, numba) against a plain Python book.

Input: the synthetic market's MIC order log for one day (``--events``, default 1,000,000 events
asked of the generator), generated into a temporary folder and read through the venue registry
(the unified message frame: ts_ns, event_type, order_id, size, price, side, source_row); the
generation and the read are untimed. ``rebuild_book`` is timed end to end (message frame in,
book frame out) on the whole day, after one untimed warm-up call whose time is printed apart as
"first call (compile or cache load)": numba compiles the replay there, or loads it from its cache.

The baseline is the obvious pure-Python book, written here: a dict order_id -> [side, price,
size], per side a dict price -> total size, the same event rules as ``rebuild_book`` (see its
module docstring), and after every event the top N levels per side taken by sorting the level
prices. It runs on the first ``--python-events`` events (default 100,000) so that the run stays
short; its time includes turning the frame into Python lists and its rows into a numpy array.
``rebuild_book`` is also timed on that same prefix so both are compared on the same input.

For each of 10 (the default), 5 and 1 levels, both run ``--repeats`` times and the median wall
time is printed as events/s; before any figure, the Python book is compared with
``rebuild_book``'s on every row of the prefix (every price and size, rtol = atol = 1e-9, empty
levels NaN / 0, and the crossed flag). A mismatch is printed and the script exits with status 1.

Last, for each real LOBSTER sample day in ../shared/data, the share of its orderbook rows that
the rebuild reproduces when seeded with the day's first orderbook row (``reproduction_share``).

    python benchmarks/book.py [--events 1000000] [--python-events 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from lob_platform.core.columns import BOOK_CROSSED, book_columns
from lob_platform.features.order_book import rebuild_book, reproduction_share
from lob_platform.sources.lobster import pairs_in_archive, read_lobster_pair
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import MarketConfig, generate_market

LEVELS = (10, 5, 1)
TARGET = 1_000_000  # events per second for the compiled path
LOBSTER_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster"
EMPTY_SIZE = 1e-9  # as in lob_platform.features.order_book: volume at or below this is an empty level
REDUCE_EVENTS = frozenset({"cancel", "execute_visible"})


def mic_day(events: int) -> pl.DataFrame:
    """One synthetic MIC day of about ``events`` messages, in the unified message columns."""
    with tempfile.TemporaryDirectory() as folder:
        config = MarketConfig(n_days=1, lobster_tickers=(), crypto_pairs=(), order_feed_products=(), mic_events_per_day=events)
        generate_market(folder, config)
        venue = next(v for v in load_venues(Path(folder)) if v.name == "mic")
        return venue.discover()[0].read()


def python_book(messages: pl.DataFrame, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The book after every message, to ``levels`` levels, and the crossed flags: plain Python."""
    columns = [messages[c].to_list() for c in ("event_type", "order_id", "side", "price", "size")]
    orders: dict[int, list] = {}  # order_id -> [is_ask, price, size]
    books: tuple[dict[float, float], dict[float, float]] = ({}, {})  # bid, ask: price -> total size
    anonymous: tuple[dict[float, float], dict[float, float]] = ({}, {})  # volume no message can name (order id 0)
    empty = [float("nan"), 0.0]
    rows, crossed = [], []

    def add(is_ask: bool, price: float, size: float) -> None:
        book = books[is_ask]
        book[price] = book.get(price, 0.0) + size

    def take(is_ask: bool, price: float, size: float) -> None:
        book = books[is_ask]
        left = book[price] - size
        if left <= EMPTY_SIZE:
            del book[price]
        else:
            book[price] = left

    for event, order_id, side, price, size in zip(*columns):
        if event is not None and side is not None and price is not None and size is not None:
            is_ask = side == "ask"
            order = orders.get(order_id) if order_id else None
            if event == "submit":
                if not order_id:
                    add(is_ask, price, size)
                    anonymous[is_ask][price] = anonymous[is_ask].get(price, 0.0) + size
                else:
                    if order is not None:
                        take(order[0], order[1], order[2])
                    orders[order_id] = [is_ask, price, size]
                    add(is_ask, price, size)
            elif event in REDUCE_EVENTS or event == "delete" or event == "modify":
                if order is None:  # unknown order: off anonymous volume at its price, if any
                    there = anonymous[is_ask].get(price, 0.0)
                    if event != "modify" and size > 0 and there > 0:
                        amount = min(size, there)
                        anonymous[is_ask][price] = there - amount
                        take(is_ask, price, amount)
                elif event == "delete" or (event in REDUCE_EVENTS and size >= order[2] - EMPTY_SIZE):
                    del orders[order_id]
                    take(order[0], order[1], order[2])
                elif event in REDUCE_EVENTS:
                    order[2] -= size
                    take(order[0], order[1], size)
                else:  # modify: new price and size, same side; size 0 removes the order
                    take(order[0], order[1], order[2])
                    if size > EMPTY_SIZE:
                        order[1], order[2] = price, size
                        add(order[0], price, size)
                    else:
                        del orders[order_id]
        bids, asks = books
        bid_prices = sorted(bids, reverse=True)[:levels]
        ask_prices = sorted(asks)[:levels]
        row = []
        for level in range(levels):
            row += [ask_prices[level], asks[ask_prices[level]]] if level < len(ask_prices) else empty
            row += [bid_prices[level], bids[bid_prices[level]]] if level < len(bid_prices) else empty
        rows.append(row)
        crossed.append(bool(bid_prices) and bool(ask_prices) and bid_prices[0] >= ask_prices[0])
    return np.array(rows, dtype=np.float64).reshape(len(rows), 4 * levels), np.array(crossed, dtype=bool)


def mismatches(platform_book: pl.DataFrame, book: np.ndarray, crossed: np.ndarray, levels: int) -> list[str]:
    """Where the Python book differs from ``rebuild_book``'s (NaN == NaN for empty prices)."""
    bad = []
    ours = platform_book.select(book_columns(levels)).to_numpy().astype(np.float64)  # null price -> NaN
    if ours.shape != book.shape:
        return [f"levels={levels}: shapes differ, rebuild_book {ours.shape} vs python {book.shape}"]
    close = np.isclose(ours, book, rtol=1e-9, atol=1e-9, equal_nan=True)
    for i, name in enumerate(book_columns(levels)):
        wrong = np.flatnonzero(~close[:, i])
        if wrong.size:
            row = wrong[0]
            bad.append(f"levels={levels} {name}: {wrong.size} rows, first row {row}: {ours[row, i]} vs {book[row, i]}")
    flags = platform_book[BOOK_CROSSED].to_numpy()
    if (flags != crossed).any():
        bad.append(f"levels={levels} {BOOK_CROSSED}: {(flags != crossed).sum()} rows differ")
    return bad


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, polars {pl.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="MIC events per day asked of the generator")
    parser.add_argument("--python-events", type=int, default=100_000, help="prefix the Python baseline replays")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    day = mic_day(args.events)
    made = time.perf_counter() - started
    prefix = day.head(args.python_events)
    n, m = day.height, prefix.height
    print(f"synthetic MIC day: {n:,} events (generated and read in {made:.1f} s, untimed); "
          f"Python baseline on the first {m:,}")
    print(f"machine: {machine()}")

    first = timed(rebuild_book, day)
    print(f"first call (compile or cache load): {first:.3f} s on {n:,} events")

    bad = []
    for levels in LEVELS:
        book, crossed = python_book(prefix, levels)
        bad += mismatches(rebuild_book(prefix, levels).book, book, crossed, levels)
    print(f"verification: python book vs rebuild_book on {m:,} rows x levels {LEVELS}: {len(bad)} mismatching")
    if bad:
        for line in bad:
            print(f"  MISMATCH {line}")
        sys.exit(1)

    runs: dict[int, dict[str, list[float]]] = {levels: {"day": [], "prefix": [], "python": []} for levels in LEVELS}
    for _ in range(args.repeats):
        for levels in LEVELS:
            runs[levels]["day"].append(timed(rebuild_book, day, levels))
            runs[levels]["prefix"].append(timed(rebuild_book, prefix, levels))
            runs[levels]["python"].append(timed(python_book, prefix, levels))

    print(f"median of {args.repeats} interleaved runs; events/s = events / median wall time")
    print(f"{'levels':>6}{'rebuild_book s':>16}{'ev/s (day)':>14}{'ev/s (prefix)':>15}"
          f"{'python s':>11}{'ev/s (prefix)':>15}{'speed-up':>10}")
    rates = {}
    for levels in LEVELS:
        day_s, prefix_s, python_s = (statistics.median(runs[levels][k]) for k in ("day", "prefix", "python"))
        rates[levels] = n / day_s
        speedup = (m / prefix_s) / (m / python_s)
        print(f"{levels:>6}{day_s:>16.3f}{n / day_s:>14,.0f}{m / prefix_s:>15,.0f}"
              f"{python_s:>11.3f}{m / python_s:>15,.0f}{speedup:>9.1f}x")
    print("speed-up: rebuild_book vs python, both on the prefix")
    rate = rates[10]
    verdict = "reaches" if rate >= TARGET else "does NOT reach"
    print(f"rebuild_book {verdict} the target at 10 levels: {rate:,.0f} events/s (>= {TARGET:,} needed)")
    lobster_reproduction()


def lobster_reproduction() -> None:
    """The share of a real LOBSTER day's orderbook rows the rebuild reproduces from its first row."""
    archives = sorted(LOBSTER_SAMPLES.glob("LOBSTER_SampleFile_*.zip"))
    if not archives:
        print(f"LOBSTER reproduction: no sample days at {LOBSTER_SAMPLES} (../shared/data is absent): skipped")
        return
    print("LOBSTER days rebuilt from their messages, seeded with their first orderbook row: share of later rows equal")
    print(f"{'day':<28}{'rows':>10}{'level 1':>10}{'every level':>13}")
    for archive in archives:
        share = reproduction_share(read_lobster_pair(pairs_in_archive(archive)[0]))
        print(f"{archive.stem.removeprefix('LOBSTER_SampleFile_'):<28}{share['rows']:>10,}"
              f"{share['level_1']:>10.2%}{share['every_level']:>13.2%}")


if __name__ == "__main__":
    main()
