"""Validated messages -> features -> tokens for one LOBSTER sample day: lob_platform against pandas.

The validated messages are loaded once, untimed. Then, per repeat, the platform computes the
event features, the book features (every column of ``compute_book_features`` with the default
windows), the labels, and from the features table the token bins (fit on the first 60% of the
day), the tokens and the token sequences. A plain pandas implementation of the same event
features, book features and labels runs in the same repeats, interleaved, starting from
``valid.to_pandas()`` made outside the timing. The median wall time per stage is printed, then
every pandas column is compared with the platform's (rtol = atol = 1e-9, NaN == NaN); any
mismatch is printed and the script exits with status 1.

    python benchmarks/features.py [ZIP] [--repeats 11]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from lob_platform.features.book import BookFeatureConfig, compute_book_features
from lob_platform.features.events import compute_derived_features
from lob_platform.features.labels import LABEL_HORIZONS, compute_labels
from lob_platform.features.table import build_features
from lob_platform.sources.lobster import pairs_in_archive, read_lobster_pair
from lob_platform.core.columns import ORDER_EVENT_TYPES
from lob_platform.tokens.bins import BinEdges, compute_token_bins, fit_bins
from lob_platform.core.splits import chronological_split
from lob_platform.core.tables import MESSAGES
from lob_platform.tokens.sequences import token_sequences
from lob_platform.validation.report import split_valid_rejected

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared/data/lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
TICK = 0.01
CONFIG = BookFeatureConfig()
FEATURE_STAGES = ("event features", "book features", "labels")
TOKEN_STAGES = ("fit bins", "tokens", "sequences")


def platform_stages(valid: pl.DataFrame) -> tuple[dict[str, float], dict[str, pl.DataFrame]]:
    t0 = time.perf_counter()
    events = compute_derived_features(valid, TICK)
    t1 = time.perf_counter()
    book = compute_book_features(valid, TICK)
    t2 = time.perf_counter()
    labels = compute_labels(book["mid"])
    t3 = time.perf_counter()
    features = build_features(valid, TICK)
    t4 = time.perf_counter()
    split = chronological_split(features.height)
    bins = fit_bins(features.filter(split == "train"), BinEdges())
    t5 = time.perf_counter()
    tokens = compute_token_bins(features, bins)
    t6 = time.perf_counter()
    token_sequences(tokens, split)
    t7 = time.perf_counter()
    times = {"event features": t1 - t0, "book features": t2 - t1, "labels": t3 - t2, "build_features": t4 - t3,
             "fit bins": t5 - t4, "tokens": t6 - t5, "sequences": t7 - t6}
    return times, {"event features": events, "book features": book, "labels": labels}


def pandas_events(df: pd.DataFrame) -> pd.DataFrame:
    """Event features: price change (status rows 0), log1p size, gaps, level vs the previous best."""
    is_order = df["event_type"].isin(ORDER_EVENT_TYPES)
    price = df["price"].where(is_order)
    gap = df["ts_ns"].diff().fillna(0).astype("int64")
    best_bid = df["bid_price_1"].shift(1).fillna({0: df["bid_price_1"].iloc[0]})
    best_ask = df["ask_price_1"].shift(1).fillna({0: df["ask_price_1"].iloc[0]})
    distance = pd.Series(np.where(df["side"] == "bid", best_bid - df["price"], df["price"] - best_ask), index=df.index)
    return pd.DataFrame({
        "price_change_ticks": ((price - price.ffill().shift(1)) / TICK).round(6).fillna(0.0),
        "log_size": np.log1p(df["size"]),
        "inter_arrival_ns": gap,
        "log_inter_arrival_s": np.log(gap.clip(lower=1) / 1e9),
        "same_timestamp": df["ts_ns"].diff() == 0,
        "event_type": df["event_type"],
        "side": df["side"],
        "level": (distance / TICK).round(6).where(is_order),
    })


def pandas_book(df: pd.DataFrame) -> pd.DataFrame:
    """Book features as in lob_platform.features.book, written with ordinary pandas idioms."""
    levels = sum(c.startswith("ask_price_") for c in df.columns)
    ask, bid, ask_q, bid_q = df["ask_price_1"], df["bid_price_1"], df["ask_size_1"], df["bid_size_1"]
    two_sided = ask.notna() & bid.notna() & (bid < ask)

    def carry(s: pd.Series) -> pd.Series:  # last two-sided value, NaN before the first
        return s.where(two_sided).ffill()

    ask_depth = df[[f"ask_size_{i}" for i in range(1, levels + 1)]].sum(axis=1)
    bid_depth = df[[f"bid_size_{i}" for i in range(1, levels + 1)]].sum(axis=1)
    book_cols = [f"{s}_{{}}_{i}" for s in ("ask", "bid") for i in range(1, levels + 1)]
    value = (df[[c.format("price") for c in book_cols]].fillna(0).to_numpy() * df[[c.format("size") for c in book_cols]].to_numpy()).sum(axis=1)
    mid = carry((ask + bid) / 2)
    micro = carry((bid * ask_q + ask * bid_q) / (ask_q + bid_q))
    vwap = carry(pd.Series(value, index=df.index) / (ask_depth + bid_depth))
    out = pd.DataFrame({
        "book_two_sided": two_sided, "mid": mid, "spread_ticks": (carry(ask - bid) / TICK).round(6),
        "microprice": micro, "microprice_offset_ticks": (micro - mid) / TICK,
        "book_vwap": vwap, "vwap_offset_ticks": (vwap - mid) / TICK,
        "bid_depth": bid_depth, "ask_depth": ask_depth,
        "depth_imbalance": ((bid_depth - ask_depth) / (bid_depth + ask_depth)).fillna(0.0),
        "queue_imbalance": ((bid_q - ask_q) / (bid_q + ask_q)).fillna(0.0),
    })

    # Cont-Kukanov-Stoikov OFI per level; empty levels are -inf bids / +inf asks of size 0.
    e = {}
    for i in range(1, levels + 1):
        bp, ap = df[f"bid_price_{i}"].fillna(-np.inf), df[f"ask_price_{i}"].fillna(np.inf)
        bq, aq = df[f"bid_size_{i}"], df[f"ask_size_{i}"]
        e[f"ofi_l{i}"] = ((bp >= bp.shift()) * bq - (bp <= bp.shift()) * bq.shift()
                          - (ap <= ap.shift()) * aq + (ap >= ap.shift()) * aq.shift()).fillna(0.0)
    e = pd.DataFrame(e)
    clock = pd.DatetimeIndex(pd.to_datetime(df["ts_ns"], unit="ns"))
    windows = [e.rolling(k, min_periods=1).sum().add_suffix(f"_{k}ev") for k in CONFIG.ofi_event_windows]
    windows += [e.set_axis(clock).rolling(pd.Timedelta(seconds=s)).sum().set_axis(df.index).add_suffix(f"_{s:g}s")
                for s in CONFIG.ofi_time_windows_s]

    # Log mid returns against the window's first mid (truncated to the first row with a mid).
    log_mid = np.log(mid)
    base = log_mid.bfill()  # rows before the first mid start at the first mid
    squared = log_mid.diff().fillna(0.0) ** 2
    no_mid_yet = log_mid.index < (log_mid.first_valid_index() if log_mid.notna().any() else len(log_mid))
    returns = {}
    for k in CONFIG.return_event_horizons:
        returns[f"return_{k}ev"] = log_mid - base.shift(k).fillna(base.iloc[0])
        returns[f"realized_vol_{k}ev"] = np.sqrt(squared.rolling(k, min_periods=1).sum().clip(lower=0)).mask(no_mid_yet)
    anchors = pd.DataFrame({"ts": df["ts_ns"], "base": base})
    for s in CONFIG.return_time_horizons_s:
        start = pd.merge_asof(pd.DataFrame({"ts": df["ts_ns"] - round(s * 1e9)}), anchors, on="ts")["base"]
        returns[f"return_{s:g}s"] = log_mid - start.fillna(base.iloc[0])
        rolled = squared.set_axis(clock).rolling(pd.Timedelta(seconds=s)).sum().set_axis(df.index)
        returns[f"realized_vol_{s:g}s"] = np.sqrt(rolled.clip(lower=0)).mask(no_mid_yet)
    return pd.concat([out, *windows, pd.DataFrame(returns)], axis=1)


def pandas_labels(mid: pd.Series) -> pd.DataFrame:
    """Direction of the next mid change, and forward log returns over k events."""
    changed = mid.diff().ne(0) & mid.notna() & mid.shift().notna()
    next_mid = mid.where(changed).shift(-1).bfill()
    labels = {"label_next_mid_up": (next_mid > mid).astype(float).where(next_mid.notna() & mid.notna())}
    labels.update({f"label_return_{k}ev": np.log(mid.shift(-k) / mid) for k in LABEL_HORIZONS})
    return pd.DataFrame(labels)


def pandas_stages(df: pd.DataFrame) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    t0 = time.perf_counter()
    events = pandas_events(df)
    t1 = time.perf_counter()
    book = pandas_book(df)
    t2 = time.perf_counter()
    labels = pandas_labels(book["mid"])
    t3 = time.perf_counter()
    return {"event features": t1 - t0, "book features": t2 - t1, "labels": t3 - t2}, \
        {"event features": events, "book features": book, "labels": labels}


def mismatches(ours: dict[str, pl.DataFrame], theirs: dict[str, pd.DataFrame]) -> list[str]:
    """One line per column whose values differ (or that one side lacks)."""
    lines = []
    for stage, frame in ours.items():
        ref = theirs[stage]
        for column in frame.columns:
            if column in ("event_row", "ts_ns", "source_row", "event_type", "side"):  # keys and pass-through
                continue
            if column not in ref.columns:
                lines.append(f"{stage}: {column} missing from pandas")
                continue
            a = frame[column].cast(pl.Float64).to_numpy()
            b = ref[column].astype("float64").to_numpy()
            close = np.isclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
            if not close.all():
                row = int(np.flatnonzero(~close)[0])
                lines.append(f"{stage}: {column} differs on {(~close).sum():,} rows, first row {row}: "
                             f"lob_platform {float(a[row])!r} pandas {float(b[row])!r}")
        lines += [f"{stage}: {c} only in pandas" for c in ref.columns if c not in frame.columns]
    return lines


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, polars {pl.__version__}, pandas {pd.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", nargs="?", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    if not args.archive.is_file():
        sys.exit(f"LOBSTER sample not found: {args.archive}\nput the 5-level AMZN sample day there or pass its path.")
    frame = read_lobster_pair(pairs_in_archive(args.archive)[0])
    valid, _, _ = split_valid_rejected(frame, MESSAGES, TICK, str(args.archive))
    df = valid.to_pandas()
    events = valid.height

    runs: dict[str, list[dict[str, float]]] = {"lob_platform": [], "pandas": []}
    for _ in range(args.repeats):
        times, ours = platform_stages(valid)
        runs["lob_platform"].append(times)
        times, theirs = pandas_stages(df)
        runs["pandas"].append(times)

    def median(side: str, stages: tuple[str, ...]) -> float | None:
        if side == "pandas" and not set(stages) <= set(FEATURE_STAGES):
            return None
        return statistics.median(sum(run[s] for s in stages) for run in runs[side])

    def cell(seconds: float | None) -> str:
        return f"{'-':>26}" if seconds is None else f"{seconds:>9.4f} s {events / seconds / 1e6:>7.2f} M ev/s"

    print(f"{args.archive.name}: {events:,} validated events, median of {args.repeats} interleaved runs")
    print(f"machine: {machine()}")
    print(f"{'stage':<28}{'lob_platform':>26}  {'pandas':>26}{'speed-up':>10}")
    rows = [(s, (s,)) for s in FEATURE_STAGES] + [("features total", FEATURE_STAGES),
                                                   ("  build_features (check)", ("build_features",))]
    rows += [(s, (s,)) for s in TOKEN_STAGES] + [("features -> tokens", ("build_features", *TOKEN_STAGES))]
    for name, stages in rows:
        ours_s, theirs_s = median("lob_platform", stages), median("pandas", stages)
        ratio = f"{theirs_s / ours_s:>9.1f}x" if theirs_s else ""
        print(f"{name:<28}{cell(ours_s)}  {cell(theirs_s)}{ratio}")

    bad = mismatches(ours, theirs)
    checked = sum(len(f.columns) for f in theirs.values())
    print(f"verification: {checked} pandas columns vs lob_platform, {len(bad)} mismatching")
    for line in bad:
        print(f"  MISMATCH {line}")
    total, reference = median("lob_platform", FEATURE_STAGES), median("pandas", FEATURE_STAGES)
    rate, speedup = events / total, reference / total
    verdict = "reach" if rate > 1e6 and speedup >= 3 else "do NOT reach"
    print(f"features {verdict} the target: {rate:,.0f} events/s (> 1,000,000 needed), {speedup:.1f}x pandas (>= 3x needed)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
