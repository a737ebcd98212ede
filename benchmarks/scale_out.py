"""The same backfill on three executors: every instrument-day of the synthetic market's order-book
venues (LOBSTER, MIC, the crypto order feed) through raw -> validated -> features, one run per
instrument-day, on

- **multiprocess**: the postgres profile; each step in a new process on this machine (Dagster's
  default executor as the profile sets it, the baseline);
- **multiprocess, forkserver**: the same, with the executor's ``forkserver`` start method
  preloading the code location, so step processes fork with it imported (run configuration);
- **celery, 1 worker** and **celery, 2 workers**: the celery profile; each step a Celery task run
  by a worker process (prefork, one step at a time per worker), through a Redis broker.

Every variant gets its own PostgreSQL database (the instance: runs and events) and warehouse, and
the same data folder; two runs are in flight at a time (two orchestrating processes, each loading
the definitions once, as the main job's workers do), so the executor is what differs. Printed:
the wall time of the whole backfill, and from the runs' events each step's compute time
(STEP_START -> STEP_SUCCESS) and its **overhead**: the time from the moment it could start (its
run's start, or the end of the step before it in the run) to its STEP_START, which holds
process start-up and definition loading (multiprocess), or queueing, the broker, the worker's
plan and the executor's one-second poll (Celery). Steps of a run that run side by side (the raw
schema check beside validation) count from the last step that ended before them. The four
warehouses must be byte-identical.

    python benchmarks/scale_out.py [--days 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from lob_platform.core.tables import MESSAGES
from lob_platform.main_job import QUIET
from lob_platform.deploy.celery import start_workers, stop_workers
from lob_platform.deploy.local_services import scratch_database
from lob_platform.deploy.pools import apply_pools
from lob_platform.deploy.profiles import CODE_LOCATION, PRELOADED_MULTIPROCESS, prepare_home, profile_named
from lob_platform.sources.catalog import Catalogue
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.streaming.redis_server import RedisServer

ORCHESTRATORS = 2
INGEST = (MESSAGES.raw, MESSAGES.validated, MESSAGES.rejected, "validation_reports", "features")
_orchestrator: dict = {}


def _start_orchestrator(run_config: dict) -> None:
    """Each orchestrating process: the code location loaded once, as `dagster asset materialize` loads it."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module(CODE_LOCATION, "defs", working_directory=os.getcwd())
    _orchestrator.update(repository=repository, definition=repository.get_definition(), instance=dg.DagsterInstance.get(),
                         run_config={**QUIET, **run_config})


def _run(venue: str, partition: str) -> bool:
    """One instrument-day's run, through the profile's executor."""
    keys = {dg.AssetKey([venue, table]) for table in INGEST}
    job = _orchestrator["definition"].get_implicit_job_def_for_assets(keys)
    tags = job.get_tags_for_partition_key(partition, selected_asset_keys=keys)
    with dg.execute_job(_orchestrator["repository"].get_reconstructable_job(job.name), _orchestrator["instance"],
                        run_config=_orchestrator["run_config"], tags=tags, asset_selection=list(keys)) as result:
        return result.success


def step_timings(instance: dg.DagsterInstance) -> tuple[list[float], list[float]]:
    """Each step's compute time and overhead (module docstring), over every run."""
    compute, overhead = [], []
    for record in instance.get_run_records():
        ready, started = None, {}
        for entry in instance.all_logs(record.dagster_run.run_id):
            if not entry.is_dagster_event:
                continue
            kind = entry.dagster_event.event_type
            if kind == dg.DagsterEventType.RUN_START:
                ready = entry.timestamp
            elif kind == dg.DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
                overhead.append(entry.timestamp - ready)
            elif kind == dg.DagsterEventType.STEP_SUCCESS:
                compute.append(entry.timestamp - started[entry.step_key])
                ready = entry.timestamp
    return compute, overhead


def backfill(profile: str, workers: int, run_config: dict, data: Path, folder: Path) -> dict:
    folder.mkdir(parents=True)
    with ExitStack() as stack:
        env = {"LOB_PROFILE": profile, "DAGSTER_HOME": str(folder / "home"), "LOB_DATA_DIR": str(data),
               "LOB_WAREHOUSE_DIR": str(folder / "warehouse"), "LOB_MODEL_FAMILIES": "", "LOB_BACKTESTS": "0",
               **stack.enter_context(scratch_database())}
        if workers:
            env["LOB_CELERY_BROKER"] = stack.enter_context(RedisServer(folder / "redis")).url
        os.environ.update(env)
        prepare_home(profile_named(profile))
        venues = [venue for venue in load_venues() if venue.kind is MESSAGES]
        days = Catalogue.scan(venues).days
        with dg.DagsterInstance.get() as instance:
            apply_pools(instance)
            for venue in venues:
                instance.add_dynamic_partitions(f"{venue.name}_instruments", sorted({d.instrument for d in days if d.venue == venue.name}))
        if workers:
            running = start_workers([f"worker{n + 1}" for n in range(workers)], dict(os.environ), folder)
            stack.callback(stop_workers, running)
        spawn = multiprocessing.get_context("spawn")
        started = time.perf_counter()
        with ProcessPoolExecutor(ORCHESTRATORS, mp_context=spawn, initializer=_start_orchestrator,
                                 initargs=(run_config,)) as pool:
            outcomes = list(pool.map(_run, [d.venue for d in days], [f"{d.date}|{d.instrument}" for d in days]))
        wall = time.perf_counter() - started
        with dg.DagsterInstance.get() as instance:
            compute, overhead = step_timings(instance)
    if not all(outcomes):
        raise SystemExit(f"{profile} with {workers} workers: a run failed; its warehouse and worker logs are in {folder}")
    warehouse = folder / "warehouse"
    files = {str(p.relative_to(warehouse)): p.read_bytes() for p in sorted(warehouse.rglob("*.parquet"))}
    return {"runs": len(days), "wall": wall, "steps": len(compute), "compute": statistics.mean(compute),
            "overhead": statistics.mean(overhead), "overhead_median": statistics.median(overhead), "files": files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lob_scale_out_"))
    data = root / "data"
    generate_market(data, MarketConfig(n_days=args.days, crypto_pairs=()))
    variants = [("multiprocess", "postgres", 0, {}), ("multiprocess, forkserver", "postgres", 0, PRELOADED_MULTIPROCESS),
                ("celery, 1 worker", "celery", 1, {}), ("celery, 2 workers", "celery", 2, {})]
    results = {name: backfill(profile, workers, run_config, data, root / name.replace(", ", "_").replace(" ", "_"))
               for name, profile, workers, run_config in variants}
    shutil.rmtree(root)  # kept where a variant failed, for a look
    baseline = results["multiprocess"]
    print(f"# scale_out: {baseline['runs']} instrument-days through features, {ORCHESTRATORS} runs in flight; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{'executor':<26}{'wall s':>9}{'ratio':>8}{'steps':>7}{'compute s/step':>16}{'overhead s/step':>17}{'(median)':>10}")
    for name, result in results.items():
        print(f"{name:<26}{result['wall']:>9.1f}{result['wall'] / baseline['wall']:>8.2f}{result['steps']:>7}"
              f"{result['compute']:>16.2f}{result['overhead']:>17.2f}{result['overhead_median']:>10.2f}")
    identical = all(result["files"] == baseline["files"] for result in results.values())
    print(f"warehouses byte-identical across executors: {identical} ({len(baseline['files'])} partition files)")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
