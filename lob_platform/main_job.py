"""The main job: the platform's own automation, run in the foreground until the warehouse is
consistent with the data folder, then the DuckDB catalogue and a summary.

1. Every instrument-day in the data folder is requested (raw -> validated -> features, with the
   day's fit, tokens and labels where its training window is already settled), the same request
   the ``new_raw_files`` sensor makes for a new file.
2. Whenever a run finishes, the ``refit_training_windows`` and ``rebuild_crypto_panels`` logic
   (the sensors' own functions) says which fits and panels are now missing or stale; those runs
   are requested in turn. The order between days comes from those window plans, never from
   this loop: fit(D) is requested only once every day its window needs has a validation outcome.
3. Runs are executed by Dagster (each on the in-process executor, on this project's instance, so
   they show in the UI), two at a time in worker processes, so both cores work.

Before starting, runs that an earlier main job left "started" when it was killed are marked
failed, with the reason.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import dagster as dg

from lob_platform.core.processes import process_alive
from lob_platform.core.settings import data_root, load_settings, warehouse_root
from lob_platform.core.tables import MESSAGES
from lob_platform.errors import LobDataError
from lob_platform.sources.catalog import Catalogue, DayFile
from lob_platform.sources.registry import Venue, load_venues
from lob_platform.warehouse import CATALOGUE, query

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # runs are in the UI; keep the terminal short
WORKERS = 2
SUMMARY_SQL = {
    "validated_messages": "select venue, instrument, count(distinct date) as days, count(*) as events "
    "from validated_messages group by all order by all",
    "validated_depth_snapshots": "select venue, instrument, count(distinct date) as days, count(*) as snapshots "
    "from validated_depth_snapshots group by all order by all",
    "model_metrics": "select model, venue, instrument, date, label, any_value(test_rows) as test_rows, "
    + ", ".join(f"round(any_value(value) filter (where metric = '{m}'), 3) as {m}, "
                f"round(any_value(best_baseline) filter (where metric = '{m}'), 3) as baseline_{m}"
                for m in ("accuracy", "macro_f1", "mcc"))
    + " from model_metrics where model != 'mamba_tpp' group by all order by model, venue, instrument, date, label",
    "mamba_tpp": "select venue, instrument, date, any_value(test_rows) as test_events, "
    + ", ".join(f"round(any_value({column}) filter (where metric = '{m}'), 3) as {name}"
                for m, name in (("nll_total", "nll"), ("nll_time", "time_nll"), ("accuracy_price_coarse", "price_accuracy"),
                                ("accuracy_event_type", "type_accuracy"))
                for column, name in (("value", name), ("poisson_marginal", f"poisson_{name}")))
    + " from model_metrics where model = 'mamba_tpp' group by all order by all",
}
"""The summary's tables; ``model_metrics`` is the out-of-sample table: each model on its test day
beside the best naive baseline on the same rows; ``mamba_tpp`` the TPP's NLL per event (nats) and
mark accuracies beside the homogeneous Poisson process with marginal marks."""
HOST_TAG, PID_TAG = "lob/host", "lob/pid"


def ensure_data() -> tuple[list[Venue], Catalogue]:
    """The venues and their files; the synthetic market first where the data folder has none."""
    venues = load_venues()
    catalogue = Catalogue.scan(venues)
    if catalogue.days:
        return venues, catalogue
    from lob_platform.sources.synthetic import MarketConfig, generate_market

    started = time.perf_counter()
    print(f"no raw data under {data_root()}: generating the synthetic market ...", flush=True)
    generate_market(data_root(), MarketConfig())
    print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
    venues = load_venues()  # the market declares its order-by-order feed in venues.toml
    return venues, Catalogue.scan(venues)


def register_instruments(instance: dg.DagsterInstance, days: list[DayFile]) -> None:
    from lob_platform.defs.partitions import instruments_of

    for venue in sorted({d.venue for d in days}):
        dynamic = instruments_of(venue)
        new = {d.instrument for d in days if d.venue == venue} - set(instance.get_dynamic_partitions(dynamic.name))
        if new:
            instance.add_dynamic_partitions(dynamic.name, sorted(new))


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs a killed main job left queued or started on this machine, and free the
    pool slots their steps held (else the next run of the pool would wait for them forever)."""
    from lob_platform.defs.automation import IN_FLIGHT

    abandoned = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT, tags={HOST_TAG: socket.gethostname()})):
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0"))
        if not process_alive(pid):
            instance.report_run_failed(run, message=f"the main job process running it (pid {pid}) is gone: it was "
                                       "killed or crashed; the next main job or the sensors redo its work")
            if instance.event_log_storage.supports_global_concurrency_limits:  # its steps' pool slots
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            abandoned.append(run.run_id)
    return abandoned


# --------------------------------------------------------------------------- worker processes

_worker: dict = {}


def _start_worker() -> None:
    """Each worker: the definitions, the instance, and one thread for numerical libraries (two
    workers on two cores; oversubscribed OpenMP / BLAS threads spin and slow training severalfold)."""
    import torch
    from threadpoolctl import threadpool_limits

    from lob_platform.defs import build_definitions
    from lob_platform.models.tabular import THREADS_VARIABLE

    os.environ[THREADS_VARIABLE] = "1"
    threadpool_limits(1)
    torch.set_num_threads(1)

    _worker["defs"] = build_definitions(load_venues())
    _worker["instance"] = dg.DagsterInstance.get()


def _execute(job_name: str, partition: str, keys: list[str] | None, tags: dict[str, str]) -> dict:
    """Run one requested job in this worker; what the main job prints about it."""
    job = _worker["defs"].resolve_job_def(job_name)
    if "|" in partition:
        date, instrument = partition.split("|")
        partition = dg.MultiPartitionKey({"date": date, "instrument": instrument})
    result = job.execute_in_process(
        partition_key=partition, instance=_worker["instance"], raise_on_error=False, run_config=QUIET,
        asset_selection=[dg.AssetKey.from_user_string(k) for k in keys] if keys else None,
        tags={**tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())},
    )
    return {"success": result.success, "reasons": [] if result.success else failure_reasons(result)}


def failure_reasons(result) -> list[str]:
    """Each failed check (with the rows that broke its rule), else the error that stopped a step."""
    failed = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            rows = evaluation.metadata.get("rows_breaking_rule")
            failed.append(f"{evaluation.check_name}: {rows.value} rows" if rows else evaluation.check_name)
    if failed:
        return failed
    errors = [event.step_failure_data.error for event in result.all_events if event.is_step_failure]
    return [project_message(error) for error in errors if error] or ["see the run in the Dagster UI"]


def _project_errors() -> set[str]:
    found, todo = set(), [LobDataError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo += cls.__subclasses__()
    return found


def project_message(error) -> str:
    """The project's own error in the chain (it names file, line and what to do), else the innermost."""
    ours = _project_errors()
    while error.cause is not None and error.cls_name not in ours:
        error = error.cause
    return error.message.strip()


# --------------------------------------------------------------------------- the loop


def describe(request: dg.RunRequest) -> str:
    partition = str(request.partition_key).split("|")
    where = " ".join(reversed(partition)) if len(partition) == 2 else partition[0]
    return f"{request.tags['lob/venue']} {where} {request.tags['lob/what']}"


def settle(first: list[dg.RunRequest], next_requests, pool, progress=print) -> dict:
    """Execute ``first``, then whatever ``next_requests()`` asks for after each finished run, until
    nothing is in flight or requested; every run key once. Returns the last outcome per request."""
    requested, outcomes, finished = set(), {}, 0
    queue: list[dg.RunRequest] = []
    running: dict[Future, dg.RunRequest] = {}

    def enqueue(requests):
        for request in requests:
            if request.run_key not in requested:
                requested.add(request.run_key)
                queue.append(request)

    enqueue(first)
    while queue or running:
        busy = {str(r.partition_key) for r in running.values()}
        for request in [r for r in queue if str(r.partition_key) not in busy]:
            if len(running) >= WORKERS:
                break
            queue.remove(request)
            busy.add(str(request.partition_key))
            keys = [k.to_user_string() for k in request.asset_selection] if request.asset_selection else None
            running[pool.submit(_execute, request.job_name, str(request.partition_key), keys, dict(request.tags))] = request
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            request = running.pop(future)
            outcome = future.result()
            outcomes[(str(request.partition_key), request.job_name, request.tags.get("lob/what"))] = (request, outcome)
            finished += 1
            progress(f"[{finished}/{len(requested)}] {describe(request)}: {'ok' if outcome['success'] else 'FAILED'}")
        if not running or len(queue) < WORKERS:
            enqueue(next_requests())
    return outcomes


def run_main_job() -> int:
    from lob_platform.defs import build_definitions
    from lob_platform.defs.automation import ingest_request, panel_requests, refit_requests
    from lob_platform.defs.partitions import FIRST_DATE, in_partition_range

    settings = load_settings()
    venues, catalogue = ensure_data()
    by_name = {v.name: v for v in venues}
    for day in [d for d in catalogue.days if not in_partition_range(d)]:
        print(f"not ingested: {day.source} is dated {day.date}, outside the partitions ({FIRST_DATE} to today)")
    days = [d for d in catalogue.days if in_partition_range(d)]
    instance = dg.DagsterInstance.get()
    for run_id in fail_abandoned_runs(instance):
        print(f"marked failed: run {run_id}, left started by a main job that was killed")
    register_instruments(instance, days)
    # message venues first, oldest days first: their fits wait for earlier days, snapshots wait for nothing
    order = sorted(days, key=lambda d: (by_name[d.venue].kind is not MESSAGES, d.date, d.venue, d.instrument))
    first = [ingest_request(by_name[d.venue], d, settings, f"main|{d.venue}|{d.instrument}|{d.date}|{d.stamp_ns}") for d in order]
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=spawn, initializer=_start_worker) as pool:
        outcomes = settle(first,
                          lambda: refit_requests(venues, settings, instance) + panel_requests(venues, instance),
                          pool, progress=lambda line: print(line, flush=True))
    build_definitions(venues, settings).resolve_job_def("refresh_duckdb_catalog").execute_in_process(
        instance=instance, run_config=QUIET)
    print(f"{len(outcomes)} runs for {len(days)} instrument-days in {time.perf_counter() - started:.1f}s")
    print_summary()
    failures = [(request, outcome) for request, outcome in outcomes.values() if not outcome["success"]]
    for request, outcome in failures:
        source = catalogue.find(request.tags["lob/venue"], *_instrument_date(request))
        where = f" ({source.source})" if source else ""
        print(f"FAILED {describe(request)}{where}: {'; '.join(outcome['reasons'])}")
    return 1 if failures else 0


def _instrument_date(request: dg.RunRequest):
    from datetime import date as Date

    parts = str(request.partition_key).split("|")
    return (parts[1], Date.fromisoformat(parts[0])) if len(parts) == 2 else ("", Date.fromisoformat(parts[0]))


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
    print_backtests(root)


def print_backtests(root) -> None:
    """The backtest summary table (every model and day) and the path of its report."""
    from lob_platform.backtest.report import REPORTS
    from lob_platform.backtest.summary import summary_rows

    rows = summary_rows(root)
    if not rows:
        return
    print("\nbacktests (return = PnL / capital of a full position; each model beside its comparisons):")
    print("  " + "\t".join(rows[0]))
    for row in rows:
        print("  " + "\t".join("" if v is None else str(v) for v in row.values()))
    print(f"report:  {(root / REPORTS / 'index.html').resolve()}")
