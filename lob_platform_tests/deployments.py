"""What the tests of the deployment profiles share: a small synthetic market, and the environment
of a ``dagster`` command run under a profile."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dagster as dg

from lob_platform.deploy.pools import apply_pools
from lob_platform.deploy.profiles import PRELOADED_MULTIPROCESS, prepare_home, profile_named
from lob_platform.sources.synthetic import MarketConfig, generate_market

DATE = "2024-03-04"
INSTRUMENTS = ("ACME", "BOLT")
MARKET = MarketConfig(start_date=DATE, n_days=1, lobster_tickers=INSTRUMENTS, lobster_levels=5, lobster_events_per_day=20_000,
                      mic_products=(), order_feed_products=(), crypto_pairs=())
IN_PROCESS = ("--config-json", '{"execution": {"config": {"in_process": {}}}}')
"""Run options for a run whose steps may share the orchestrating process (where the test is not about the executor)."""
MULTIPROCESS = ("--config-json", json.dumps(PRELOADED_MULTIPROCESS))
"""Run options for the multiprocess executor, its step processes forked with the code location imported."""
INGEST = "lobster/raw_messages,lobster/validated_messages,lobster/rejected_messages,lobster/validation_reports,lobster/features"
"""raw -> validated -> features of an instrument-day: three steps (with the raw schema check, four)."""


def write_market(root: Path) -> Path:
    generate_market(root, MARKET)
    return root


def profile_env(profile: str, home: Path, data: Path, warehouse: Path, **extra: str) -> dict[str, str]:
    """The environment of a run under ``profile``: its DAGSTER_HOME (prepared as ``lob`` does: the
    profile's dagster.yaml, the pools' limits; instruments registered), the data folder and
    warehouse, no model assets (the ingest chain only)."""
    env = {**os.environ, "LOB_PROFILE": profile, "DAGSTER_HOME": str(home), "LOB_DATA_DIR": str(data),
           "LOB_WAREHOUSE_DIR": str(warehouse), "LOB_MODEL_FAMILIES": "", "LOB_BACKTESTS": "0", **extra}
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        prepare_home(profile_named(profile))
        with dg.DagsterInstance.get() as instance:
            apply_pools(instance)
            instance.add_dynamic_partitions("lobster_instruments", list(INSTRUMENTS))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return env


def materialize(env: dict[str, str], partition: str, log: Path, *options: str, selection: str = INGEST) -> subprocess.Popen:
    """``dagster asset materialize`` of ``selection`` for one partition, as CI and users call it."""
    with log.open("w") as output:
        return subprocess.Popen(["dagster", "asset", "materialize", "-m", "lob_platform.definitions", "--select", selection,
                                 "--partition", partition, *options], env=env, stdout=output, stderr=subprocess.STDOUT)


def step_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return [entry for entry in instance.all_logs(run_id) if entry.is_dagster_event and entry.dagster_event.step_key]
