"""The main job: every instrument-day in the data folder through raw -> validated -> features ->
tokens (in date order per instrument, so each day's fit sees the days before it), the crypto
panel of every date, then the DuckDB catalogue. It runs through the real Dagster definitions and
instance (so the runs show in the UI) and ends with a short summary of where the outputs are."""

from __future__ import annotations

import time

import dagster as dg

from lob_platform.paths import data_root, warehouse_root
from lob_platform.sources.catalog import DayFile, discover
from lob_platform.warehouse import CATALOGUE, query

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # runs are in the UI; keep the terminal short
SUMMARY_SQL = {
    "validated_messages": "select venue, instrument, count(distinct date) as days, count(*) as events "
    "from validated_messages group by all order by all",
    "validated_depth_snapshots": "select venue, instrument, count(distinct date) as days, count(*) as snapshots "
    "from validated_depth_snapshots group by all order by all",
}


def ensure_data() -> list[DayFile]:
    days = discover()
    if days:
        return days
    from lob_platform.sources.synthetic import MarketConfig, generate_market

    started = time.perf_counter()
    print(f"no raw data under {data_root()}: generating the synthetic market ...", flush=True)
    generate_market(data_root(), MarketConfig())
    print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    return discover()


def register_instruments(instance: dg.DagsterInstance, days: list[DayFile]) -> None:
    from lob_platform.defs.partitions import instruments

    for venue, dynamic in instruments.items():
        new = {d.instrument for d in days if d.venue == venue} - set(instance.get_dynamic_partitions(dynamic.name))
        if new:
            instance.add_dynamic_partitions(dynamic.name, sorted(new))


def run_main_job() -> int:
    from lob_platform.defs.partitions import FIRST_DATE, in_partition_range, partition_key
    from lob_platform.definitions import defs

    days = ensure_data()
    for day in [d for d in days if not in_partition_range(d)]:
        print(f"not ingested: {day.source} is dated {day.date}, outside the partitions ({FIRST_DATE} to today)")
    days = [d for d in days if in_partition_range(d)]
    instance = dg.DagsterInstance.get()
    register_instruments(instance, days)
    failures = []
    started = time.perf_counter()
    for number, day in enumerate(days, start=1):
        job = defs.resolve_job_def(f"ingest_{day.venue}")
        result = job.execute_in_process(
            partition_key=partition_key(day), instance=instance, raise_on_error=False, run_config=QUIET
        )
        status = "ok" if result.success else "FAILED"
        print(f"[{number}/{len(days)}] {day.venue} {day.instrument} {day.date}: {status}", flush=True)
        if not result.success:
            failures.append((f"{day.venue} {day.instrument} {day.date} ({day.source})", _failure_reasons(result)))
    panel_dates = sorted({day.date.isoformat() for day in days if day.venue == "crypto"})
    for number, date in enumerate(panel_dates, start=1):
        result = defs.resolve_job_def("build_crypto_panel").execute_in_process(
            partition_key=date, instance=instance, raise_on_error=False, run_config=QUIET
        )
        print(f"[{number}/{len(panel_dates)}] crypto panel {date}: {'ok' if result.success else 'FAILED'}", flush=True)
        if not result.success:
            failures.append((f"crypto panel {date}", _failure_reasons(result)))
    defs.resolve_job_def("refresh_duckdb_catalog").execute_in_process(instance=instance, run_config=QUIET)
    print(f"ingested {len(days)} instrument-days in {time.perf_counter() - started:.1f}s")
    print_summary()
    for what, reasons in failures:
        print(f"FAILED {what}: {'; '.join(reasons)}")
    return 1 if failures else 0


def _failure_reasons(result) -> list[str]:
    """Each failed check (with the rows that broke its rule), else the error that stopped a step."""
    failed = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            rows = evaluation.metadata.get("rows_breaking_rule")
            failed.append(f"{evaluation.check_name}: {rows.value} rows" if rows else evaluation.check_name)
    if failed:
        return failed
    errors = [event.step_failure_data.error for event in result.all_events if event.is_step_failure]
    return [_root_message(error) for error in errors if error] or ["see the run in the Dagster UI"]


def _root_message(error) -> str:
    """The innermost error's message: the user's MalformedFileError rather than Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def print_summary() -> None:
    root = warehouse_root()
    print(f"\noutputs: {root.resolve()}/<table>/venue=../instrument=../date=../part-0.parquet")
    print(f"SQL:     duckdb {root / CATALOGUE} -c \"select * from validated_messages limit 5\"   (or: lob sql \"...\")")
    for table, sql in SUMMARY_SQL.items():
        try:
            columns, rows = query(root, sql)
        except Exception:  # the table has no partition yet
            continue
        print(f"\n{table}:")
        print("  " + "\t".join(columns))
        for row in rows:
            print("  " + "\t".join(str(v) for v in row))
