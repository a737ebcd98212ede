"""Raw -> validated throughput for one LOBSTER sample day: lob_platform against plain pandas.

First table: both sides inflate the zip and parse the message and orderbook CSVs (read),
convert to the unified schema and apply the original nine validation rules with the quarantine
split (validate; the platform applies every rule it has now, the newer ones included:
``book_follows_messages``, book sizes and prices, magnitudes, order ids), and write the valid and
rejected rows to parquet (write). The platform's asset steps also run its pandera schemas as
asset checks (raw columns and dtypes, the validated table with every rule, the rejected table):
that is shown as its own stage, with the step total (``total+checks``) beside it.

Second table, the ingest speed aim: the pair unzipped to CSV files; the platform's whole read ->
every rule (``read_lobster_pair`` + ``split_valid_rejected``) against a plain pandas
``read_csv`` of the same two files followed by a few basic checks (sorted, known types,
positive sizes, uncrossed level 1).

Each side runs ``--repeats`` times, interleaved, and the median wall time is printed.

    python benchmarks/ingest.py [ZIP] [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from lob_platform.sources.lobster import LobsterFilePair, pairs_in_archive, pairs_in_folder, read_lobster_pair
from lob_platform.core.columns import book_levels
from lob_platform.core.tables import MESSAGES
from lob_platform.storage import write_partition
from lob_platform.validation.report import split_valid_rejected
from lob_platform.validation.schemas import rejected_schema, table_schema

DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared/data/lobster/LOBSTER_SampleFile_AMZN_2012-06-21_5.zip"
TICK = 0.01
EVENT_NAMES = {1: "submit", 2: "cancel", 3: "delete", 4: "execute_visible", 5: "execute_hidden", 6: "cross"}


def platform_stages(archive: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    frame = read_lobster_pair(pairs_in_archive(archive)[0])
    read_done = time.perf_counter()
    valid, rejected, _ = split_valid_rejected(frame, MESSAGES, TICK, str(archive))
    validate_done = time.perf_counter()
    write_partition(valid, out / "platform.parquet")
    write_partition(rejected, out / "platform_rejected.parquet")
    write_done = time.perf_counter()
    levels = book_levels(frame.columns)
    table_schema(MESSAGES, levels, TICK, with_rules=False).validate(frame, lazy=True)
    table_schema(MESSAGES, levels, TICK).validate(valid, lazy=True)
    rejected_schema(MESSAGES, levels).validate(rejected, lazy=True)
    return {"read": read_done - started, "validate": validate_done - read_done, "write": write_done - validate_done,
            "pandera checks": time.perf_counter() - write_done}


def pandas_read(archive: Path) -> pd.DataFrame:
    with zipfile.ZipFile(archive) as zf:
        message_name = next(n for n in zf.namelist() if "_message_" in n)
        book_name = next(n for n in zf.namelist() if "_orderbook_" in n)
        message_bytes, book_bytes = zf.read(message_name), zf.read(book_name)
    messages = pd.read_csv(io.BytesIO(message_bytes), header=None, names=["time_s", "code", "order_id", "size", "price", "direction"],
                           dtype={"time_s": "float64", "code": "int64", "order_id": "int64", "size": "int64", "price": "int64", "direction": "int64"})
    book = pd.read_csv(io.BytesIO(book_bytes), header=None, dtype="int64")
    levels = book.shape[1] // 4
    book.columns = [f"{side}_{field}_{lv}" for lv in range(1, levels + 1) for side, field in (("ask", "price"), ("ask", "size"), ("bid", "price"), ("bid", "size"))]
    if len(book) != len(messages):
        raise ValueError("row counts differ")
    midnight = pd.Timestamp("2012-06-21", tz="America/New_York").tz_convert("UTC").value
    unified = pd.DataFrame({
        "ts_ns": np.round(messages["time_s"].to_numpy() * 1e9).astype("int64") + midnight,
        "event_type": messages["code"].map(EVENT_NAMES),
        "order_id": messages["order_id"],
        "size": messages["size"].astype("float64"),
        "price": messages["price"] * 1e-4,
        "side": messages["direction"].map({1: "bid", -1: "ask"}),
    })
    for column in book.columns:
        values = book[column]
        if "_price_" in column:
            unified[column] = values.where(values.abs() != 9_999_999_999) * 1e-4
        else:
            unified[column] = values.astype("float64")
    unified["source_row"] = np.arange(1, len(unified) + 1, dtype="uint32")
    return unified


def pandas_rules(df: pd.DataFrame) -> pd.DataFrame:
    levels = sum(1 for c in df.columns if c.startswith("ask_price_"))
    order_event = df["event_type"].notna() & ~df["event_type"].isin(["halt", "quoting_resumed", "trading_resumed"])
    ticks = df["price"] / TICK
    half = df["price"] / (TICK / 2)
    off_grid = np.where(df["event_type"] == "execute_hidden", (half - half.round()).abs() > 1e-6, (ticks - ticks.round()).abs() > 1e-6)
    masks = {
        "no_nulls": df[["ts_ns", "order_id", "size", "price"]].isna().any(axis=1),
        "known_codes": df["event_type"].isna() | df["side"].isna(),
        "timestamps_sorted": df["ts_ns"].diff() < 0,
        "positive_size": order_event & ~(df["size"] > 0),
        "price_on_tick_grid": order_event & (~(df["price"] > 0) | off_grid),
        "book_not_crossed": df["bid_price_1"] >= df["ask_price_1"],
    }
    inconsistent = pd.Series(False, index=df.index)
    for side, worse in (("ask", np.less_equal), ("bid", np.greater_equal)):
        for lv in range(1, levels + 1):
            price, size = df[f"{side}_price_{lv}"], df[f"{side}_size_{lv}"]
            inconsistent |= price.isna() & (size != 0)
            if lv > 1:
                previous = df[f"{side}_price_{lv - 1}"]
                inconsistent |= previous.isna() & price.notna()
                inconsistent |= pd.Series(worse(price, previous), index=df.index).fillna(False)
    masks["book_levels_consistent"] = inconsistent
    unmatched = pd.Series(False, index=df.index)
    for side in ("bid", "ask"):
        prices = df[[f"{side}_price_{lv}" for lv in range(1, levels + 1)]]
        deepest = prices.min(axis=1) if side == "bid" else prices.max(axis=1)
        inside = prices.iloc[:, -1].isna() | ((df["price"] >= deepest) if side == "bid" else (df["price"] <= deepest))
        shown = prices.eq(df["price"], axis=0).any(axis=1)
        unmatched |= (df["side"] == side) & inside & ~shown
    masks["book_matches_message"] = (df["event_type"] == "submit") & unmatched
    masks["no_duplicate_rows"] = df.drop(columns="source_row").duplicated() & (df["order_id"] != 0)
    return pd.DataFrame(masks)


def pandas_stages(archive: Path, out: Path) -> dict[str, float]:
    started = time.perf_counter()
    frame = pandas_read(archive)
    read_done = time.perf_counter()
    masks = pandas_rules(frame)
    bad = masks.any(axis=1)
    valid, rejected = frame[~bad], frame[bad]
    validate_done = time.perf_counter()
    valid.to_parquet(out / "pandas.parquet", compression="lz4")
    rejected.to_parquet(out / "pandas_rejected.parquet", compression="lz4")
    return {"read": read_done - started, "validate": validate_done - read_done, "write": time.perf_counter() - validate_done,
            "pandera checks": 0.0}


def csv_pair(archive: Path, folder: Path) -> LobsterFilePair:
    """The archive's pair unzipped into ``folder`` as CSV files."""
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder, [n for n in zf.namelist() if n.endswith(".csv")])
    return pairs_in_folder(folder)[0]


def platform_read_and_rules(pair: LobsterFilePair) -> None:
    split_valid_rejected(read_lobster_pair(pair), MESSAGES, TICK, pair.source)


def pandas_read_and_basic_checks(pair: LobsterFilePair) -> tuple[pd.DataFrame, pd.DataFrame]:
    messages = pd.read_csv(pair.message, header=None, names=["time_s", "code", "order_id", "size", "price", "direction"])
    book = pd.read_csv(pair.orderbook, header=None)
    if len(book) != len(messages):
        raise ValueError("row counts differ")
    bad = ((messages["time_s"].diff() < 0) | ~messages["code"].isin(range(1, 8))
           | (messages["code"].isin(range(1, 7)) & ~(messages["size"] > 0)) | (book[2] >= book[0]))
    return messages[~bad], book[~bad]


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", nargs="?", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    events = read_lobster_pair(pairs_in_archive(args.archive)[0]).height  # also warms caches
    assert len(pandas_rules(pandas_read(args.archive))) == events
    runs: dict[str, list[dict[str, float]]] = {"lob_platform": [], "pandas": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            runs["lob_platform"].append(platform_stages(args.archive, Path(folder)))
            runs["pandas"].append(pandas_stages(args.archive, Path(folder)))
    print(f"{args.archive.name}: {events:,} events, median of {args.repeats} interleaved runs")
    print(f"{'stage':<15}{'platform s':>11}{'ev/s':>14}{'pandas s':>12}{'ev/s':>14}{'speed-up':>10}")
    core = ("read", "validate", "write")
    for stage in (*core, "total", "pandera checks", "total+checks"):
        medians = {}
        for side, samples in runs.items():
            if stage == "total":
                values = [sum(s[k] for k in core) for s in samples]
            elif stage == "total+checks":
                values = [sum(s.values()) for s in samples]
            else:
                values = [s[stage] for s in samples]
            medians[side] = statistics.median(values)
        ours, theirs = medians["lob_platform"], medians["pandas"]
        if stage == "pandera checks":
            print(f"{stage:<15}{ours:>11.3f}{events / ours:>14,.0f}{'(none)':>12}")
            continue
        print(f"{stage:<15}{ours:>11.3f}{events / ours:>14,.0f}{theirs:>12.3f}{events / theirs:>14,.0f}{theirs / ours:>9.1f}x")

    with tempfile.TemporaryDirectory() as folder:
        pair = csv_pair(args.archive, Path(folder))
        platform_read_and_rules(pair)  # warm: numba's compiled rules load once per process
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(timed(platform_read_and_rules, pair))
            theirs.append(timed(pandas_read_and_basic_checks, pair))
    ours, theirs = statistics.median(ours), statistics.median(theirs)
    print(f"\nthe CSV pair: platform read -> every rule {ours:.3f} s; plain pandas read_csv + basic checks {theirs:.3f} s; "
          f"platform / pandas = {ours / theirs:.2f} (aim: at most 1)")


if __name__ == "__main__":
    main()
