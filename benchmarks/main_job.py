"""Orchestration overhead of the main job: ``lob run`` against the same work as plain function calls.

The built-in synthetic market (``MarketConfig(n_days=--days)``) is generated once into a
temporary folder, untimed. Then, per repeat, interleaved, each with a fresh warehouse:

- plain: one loop in this process over every instrument-day of ``discover(data)`` (sorted by
  venue, instrument, date): read the day, ``split_valid_rejected``, write the validated and
  rejected rows and a one-row validation report; for message venues whose validation passed,
  ``build_features``, the fit on the training window (the instrument's earlier days computed so
  far, else the first 60% of the day): ``fit_bins`` and, where the venue has a book,
  ``fit_label_thresholds``; tokens, token sequences and ternary labels; each written as one
  hive-partitioned parquet file with ``write_partition``. Then the 5 s crypto panel of every
  crypto date from the validated snapshots of the instruments that passed. Timed with
  ``time.perf_counter`` (the imports are already done).
- orchestrated: ``python -m lob_platform run`` in a subprocess (fresh ``DAGSTER_HOME`` with
  telemetry off, ``LOB_DATA_DIR`` = the generated market), timed by the wall clock around it. Its
  time includes what Dagster adds: interpreter start, imports, loading the definitions, one
  in-process run per instrument-day and per panel date, run and event storage, IO-manager
  reads between steps, metadata, and the work the plain loop leaves out: the raw tables, the
  pandera asset checks, the feature/token checks and the DuckDB catalogue refresh.

Printed: the median of each side, beside it the time ``lob run`` itself reports for its runs
(``... instrument-days in Xs``: the job loop, panel and catalogue, without interpreter start,
imports and definitions; "-" when it does not print it), the ratio orchestrated / plain
(wall clock) against the aim (within 1.5x), the instrument-days processed and the machine.
After the last repeat the partition files per table of the two warehouses are compared (the
tables both write), so the plain loop is known to have written the same partitions; a
difference is printed, not fatal. The script exits non-zero if ``lob run`` fails, printing the
tail of its output.

    python benchmarks/main_job.py [--days 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from features import machine  # benchmarks/features.py: the machine line every benchmark prints
from lob_platform.features.crypto_panel import build_panel
from lob_platform.features.labels import fit_label_thresholds, ternary_labels
from lob_platform.features.table import build_features
from lob_platform.features.training_window import training_window
from lob_platform.sources.catalog import discover
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.storage import partition_path, write_partition
from lob_platform.tokens.bins import compute_token_bins, fit_bins
from lob_platform.tokens.sequences import token_sequences
from lob_platform.validation.report import split_valid_rejected

REPO = Path(__file__).resolve().parents[1]
AIM = 1.5  # orchestrated within this factor of plain
TRAIN_DAYS, TRAIN_FRACTION, FIT_LOOKBACK_DAYS = 5, 0.6, 14  # the platform's defaults
KEYS = ["event_row", "ts_ns", "source_row"]
TAIL_CHARS = 4000
# lob run's own timing of its runs: "ingested N instrument-days in Xs" or "R runs for N instrument-days in Xs"
JOB_LOOP = re.compile(r"(?:ingested \d+|\d+ runs for \d+) instrument-days in ([0-9.]+)s")


def plain(data: Path, warehouse: Path) -> tuple[float, int]:
    """The main job's work as plain calls; (seconds, instrument-days)."""
    started = time.perf_counter()
    days = sorted(discover(data), key=lambda d: (d.venue, d.instrument, d.date))
    venues = {v.name: v for v in load_venues(data)}
    features_so_far: dict[tuple[str, str], dict[str, pl.DataFrame]] = {}
    crypto_passed: dict[dt.date, dict[str, pl.DataFrame]] = {}

    def write(table: str, frame: pl.DataFrame, keys: dict[str, str]) -> None:
        write_partition(frame, partition_path(warehouse, table, keys))

    for day in days:
        date = day.date.isoformat()
        keys = {"venue": day.venue, "instrument": day.instrument, "date": date}
        venue = venues[day.venue]
        tick = venue.tick_for(day.instrument)
        raw = day.read()
        valid, rejected, report = split_valid_rejected(raw, venue.kind, tick, day.source)
        write(venue.kind.validated, valid, keys)
        write(venue.kind.rejected, rejected, keys)
        write("validation_reports", pl.DataFrame({
            "source_file": [day.source], "rows": [raw.height], "valid_rows": [valid.height],
            "rejected_rows": [rejected.height], "passed": [report.passed],
            **{f"rejected_by_{r.rule}": [r.violations] for r in report.results},
        }), keys)
        if not report.passed:  # blocking checks: the platform stops this partition here
            continue
        if venue.kind.name == "snapshots":
            crypto_passed.setdefault(day.date, {})[day.instrument] = valid
            continue
        if tick is None:
            sys.exit(f"{day.venue} {day.instrument}: no tick size, so no features (the platform refuses it too)")

        features = build_features(valid, tick)
        write("features", features, keys)
        history = features_so_far.setdefault((day.venue, day.instrument), {})
        history[date] = features
        since = (day.date - dt.timedelta(days=FIT_LOOKBACK_DAYS)).isoformat()
        window = training_window({d: f for d, f in history.items() if d >= since}, date, TRAIN_DAYS, TRAIN_FRACTION)
        bins = fit_bins(window.rows)
        write("bin_edges", bins.to_frame(), keys)
        split = window.split_of(features.height)
        tokens = compute_token_bins(features, bins)
        write("event_tokens", tokens, keys)
        write("token_sequences", token_sequences(tokens, split), keys)
        if "label_return_10ev" in features.columns:  # the venue has a book
            thresholds = fit_label_thresholds(window.rows)
            write("label_thresholds", pl.DataFrame({"horizon_events": list(thresholds), "threshold": list(thresholds.values())},
                                                   schema={"horizon_events": pl.UInt16, "threshold": pl.Float64}), keys)
            labels = pl.concat([features.select(*KEYS, "label_next_mid_up"), ternary_labels(features, thresholds),
                                split.to_frame()], how="horizontal")
            write("labels", labels, keys)

    for date in sorted({d.date for d in days if venues[d.venue].kind.name == "snapshots"}):
        panel = build_panel(crypto_passed.get(date, {}), date)
        write("panel_5s", panel.frame, {"venue": "crypto", "date": date.isoformat()})
    return time.perf_counter() - started, len(days)


def orchestrated(data: Path, warehouse: Path, dagster_home: Path) -> tuple[float, float | None]:
    """(wall seconds of ``python -m lob_platform run``, the seconds it reports for its runs, None
    if it does not say); exits the script if it fails."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "LOB_DATA_DIR": str(data), "LOB_WAREHOUSE_DIR": str(warehouse), "DAGSTER_HOME": str(dagster_home)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lob_platform", "run"], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"`python -m lob_platform run` exited {done.returncode} after {seconds:.1f}s", file=sys.stderr)
        print(f"--- stdout (tail) ---\n{done.stdout[-TAIL_CHARS:]}", file=sys.stderr)
        print(f"--- stderr (tail) ---\n{done.stderr[-TAIL_CHARS:]}", file=sys.stderr)
        sys.exit(1)
    loop = JOB_LOOP.search(done.stdout)
    return seconds, float(loop.group(1)) if loop else None


def partition_files(warehouse: Path) -> dict[str, int]:
    """Partition files per table (the first folder under the warehouse)."""
    counts: dict[str, int] = {}
    for path in warehouse.rglob("part-0.parquet"):
        table = path.relative_to(warehouse).parts[0]
        counts[table] = counts.get(table, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3, help="calendar days of the synthetic market (default 3)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved plain/orchestrated runs (default 1)")
    args = parser.parse_args()
    if args.days < 1 or args.repeat < 1:
        parser.error("--days and --repeat must be >= 1")

    runs: dict[str, list[float]] = {"plain": [], "orchestrated": [], "job loop": []}
    with tempfile.TemporaryDirectory(prefix="lob_main_job_bench_") as folder:
        root = Path(folder)
        data = root / "data"
        print(f"generating the synthetic market ({args.days} days) ...", flush=True)
        generate_market(data, MarketConfig(n_days=args.days))
        for repeat in range(1, args.repeat + 1):
            plain_warehouse = root / f"plain_{repeat}"
            seconds, instrument_days = plain(data, plain_warehouse)
            runs["plain"].append(seconds)
            print(f"[{repeat}/{args.repeat}] plain        {seconds:8.2f} s", flush=True)
            lob_warehouse = root / f"orchestrated_{repeat}"
            seconds, loop = orchestrated(data, lob_warehouse, root / f"dagster_home_{repeat}")
            runs["orchestrated"].append(seconds)
            runs["job loop"] += [] if loop is None else [loop]
            print(f"[{repeat}/{args.repeat}] orchestrated {seconds:8.2f} s", flush=True)
        ours, theirs = partition_files(plain_warehouse), partition_files(lob_warehouse)
        differ = {t: (ours[t], theirs.get(t, 0)) for t in ours if ours[t] != theirs.get(t, 0)}

    plain_s, lob_s = statistics.median(runs["plain"]), statistics.median(runs["orchestrated"])
    ratio = lob_s / plain_s
    print(f"\nsynthetic market, {args.days} days: {instrument_days} instrument-days, median of {args.repeat} interleaved runs")
    print(f"machine: {machine()}")
    loop = f"{statistics.median(runs['job loop']):.2f}" if len(runs["job loop"]) == args.repeat else "-"
    print(f"{'plain s':>10}{'orchestrated s':>16}{'(its runs s)':>14}{'ratio':>9}{'instrument-days':>17}")
    print(f"{plain_s:>10.2f}{lob_s:>16.2f}{loop:>14}{ratio:>8.2f}x{instrument_days:>17}")
    print(f"aim: orchestrated within {AIM}x of plain: {'met' if ratio <= AIM else 'NOT met'} ({ratio:.2f}x)")
    print(f"partition files: {sum(ours.values())} plain in {len(ours)} tables; "
          + (f"{len(differ)} tables differ from lob run: {differ}" if differ else "lob run wrote the same in those tables"))


if __name__ == "__main__":
    main()
