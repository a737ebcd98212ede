"""The celery profile for real: a Redis broker, two Celery worker processes and PostgreSQL run two
instrument-days through raw -> validated -> features. The steps run in the workers (their
process ids say so); the worker process running one step is killed mid-step, the step is retried
by Dagster and the runs complete, with a warehouse byte-identical to the multiprocess executor's
and no partial partition files."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from lob_platform.deploy.celery import start_workers, stop_workers
from lob_platform.deploy.local_services import scratch_database
from lob_platform.streaming.redis_server import RedisServer
from lob_platform_tests.deployments import DATE, INSTRUMENTS, MULTIPROCESS, materialize, profile_env, step_events, write_market

pytestmark = pytest.mark.slow

KILLED_STEP = "lobster_validate"  # the longest step of the chain (the book replays)
STARTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED}


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no parent of {pid}")


def files(warehouse: Path) -> dict[str, bytes]:
    return {str(path.relative_to(warehouse)): path.read_bytes() for path in sorted(warehouse.rglob("*")) if path.is_file()}


def run_all(env: dict[str, str], logs: Path, *options: str, on_step_start=None) -> list[int]:
    """Materialize every instrument-day at once (one run each); ``on_step_start(run, entry)`` sees
    each step start (or restart after a retry) while they run (the instance of this process's environment). Returns the
    commands' exit codes."""
    logs.mkdir(exist_ok=True)
    runs = [materialize(env, f"{DATE}|{instrument}", logs / f"{instrument}.log", *options) for instrument in INSTRUMENTS]
    try:
        if on_step_start:
            seen = set()
            with dg.DagsterInstance.get() as instance:
                while any(run.poll() is None for run in runs):
                    for record in instance.get_run_records():
                        for entry in instance.all_logs(record.dagster_run.run_id, of_type=STARTS):
                            key = (record.dagster_run.run_id, entry.step_key, entry.timestamp)
                            if key not in seen:
                                seen.add(key)
                                on_step_start(record.dagster_run, entry)
                    time.sleep(0.05)
        return [run.wait(timeout=600) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    return write_market(tmp_path_factory.mktemp("celery") / "data")


def test_celery_workers_run_the_steps_and_a_lost_worker_is_retried(market, tmp_path, monkeypatch):
    killed: dict[str, int] = {}
    parents: dict[int, int] = {}

    def watch(run: dg.DagsterRun, entry: dg.EventLogEntry) -> None:
        pid = entry.dagster_event.pid
        parents.setdefault(pid, parent_of(pid))
        if entry.step_key == KILLED_STEP and run.tags["dagster/partition"].endswith(INSTRUMENTS[0]) and not killed:
            os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would
            killed.update(pid=pid, run=run.run_id)

    with scratch_database() as postgres, RedisServer(tmp_path / "redis") as broker:
        env = profile_env("celery", tmp_path / "home", market, tmp_path / "warehouse", **postgres, LOB_CELERY_BROKER=broker.url)
        for name in [*postgres, "DAGSTER_HOME"]:
            monkeypatch.setenv(name, env[name])
        workers = start_workers(["worker1", "worker2"], env, tmp_path)
        try:
            codes = run_all(env, tmp_path / "celery_logs", on_step_start=watch)
            worker_pids = {worker.pid for worker in workers}
            alive = all(worker.poll() is None for worker in workers)
        finally:
            stop_workers(workers)
        assert codes == [0, 0], [(tmp_path / "celery_logs" / f"{i}.log").read_text()[-3000:] for i in INSTRUMENTS]
        assert alive  # a worker whose step process was killed starts another and goes on

        with dg.DagsterInstance.get() as instance:
            records = instance.get_run_records()
            events = {record.dagster_run.run_id: step_events(instance, record.dagster_run.run_id) for record in records}
    assert {record.dagster_run.status for record in records} == {dg.DagsterRunStatus.SUCCESS}

    # every step ran in a worker's process, never in the command that orchestrated the run; both workers worked
    step_pids = {entry.dagster_event.pid for run_events in events.values() for entry in run_events
                 if entry.dagster_event.event_type in STARTS}
    assert step_pids <= set(parents)
    assert {parents[pid] for pid in step_pids} == worker_pids

    # the killed step: started in the killed process, up for retry, restarted elsewhere, succeeded
    history = [(entry.dagster_event.event_type, entry.dagster_event.pid) for entry in events[killed["run"]]
               if entry.step_key == KILLED_STEP and entry.dagster_event.event_type in (
                   dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_UP_FOR_RETRY,
                   dg.DagsterEventType.STEP_RESTARTED, dg.DagsterEventType.STEP_SUCCESS)]
    assert [kind for kind, _ in history] == [dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_UP_FOR_RETRY,
                                            dg.DagsterEventType.STEP_RESTARTED, dg.DagsterEventType.STEP_SUCCESS]
    assert history[0][1] == killed["pid"] and history[2][1] != killed["pid"]

    # the same outputs as the multiprocess executor's, and nothing partial left behind
    reference = profile_env("local", tmp_path / "local_home", market, tmp_path / "reference")
    assert run_all(reference, tmp_path / "local_logs", *MULTIPROCESS) == [0, 0]
    produced = files(tmp_path / "warehouse")
    assert produced.keys() == files(tmp_path / "reference").keys()
    assert all(name.endswith("part-0.parquet") for name in produced)  # no temporary file of the killed writer
    assert produced == files(tmp_path / "reference")
