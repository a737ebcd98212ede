"""The deployment profiles against real servers: each profile's files and pools, `lob deploy check`
on answering and unreachable servers, a materialization stored in PostgreSQL and read back, and
the gpu pool running one step at a time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lob_platform.deploy.checks import check_profile
from lob_platform.deploy.local_services import scratch_database
from lob_platform.deploy.pools import CPU_POOL, GPU_POOL, apply_pools, pool_limits
from lob_platform.deploy.profiles import PROFILES, active_profile, prepare_home, profile_named
from lob_platform.errors import ConfigError
from lob_platform.streaming.redis_server import RedisServer, free_port
from lob_platform_tests.pool_steps import CPU_STEPS, GPU_STEPS, MEETING_POINT, gpu_and_cpu_steps
from lob_platform_tests.deployments import DATE, IN_PROCESS, INSTRUMENTS, materialize, profile_env, step_events, write_market


@pytest.fixture
def postgres(monkeypatch):
    """A database of its own on a real PostgreSQL server; the postgres profile's variables set."""
    with scratch_database() as settings:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        yield settings


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@contextmanager
def silent_server():
    """A port that accepts connections and never answers: the case that hangs without timeouts."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        yield listening.getsockname()[1]


def test_every_profile_has_its_files_and_op_granular_pools():
    for profile in PROFILES.values():
        config = yaml.safe_load(profile.instance_config.read_text())
        assert config["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}, profile.name
        assert ("postgres" in config.get("storage", {})) == profile.uses_postgres, profile.name
    values = yaml.safe_load((PROFILES["k8s"].instance_config.parents[1] / "k8s" / "values.yaml").read_text())
    assert values["dagsterDaemon"]["runCoordinator"]["enabled"]
    assert values["concurrency"]["pools"]["granularity"] == "op"
    assert pool_limits() == {GPU_POOL: 1, CPU_POOL: os.cpu_count()}


def test_the_profile_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.delenv("LOB_PROFILE", raising=False)
    assert active_profile().name == "local" and active_profile().executor_definition() is None
    monkeypatch.setenv("LOB_PROFILE", "celery")
    assert active_profile().executor_definition().name == "celery"
    monkeypatch.setenv("LOB_PROFILE", "k8s")
    assert active_profile().executor_definition().name == "k8s"
    monkeypatch.setenv("LOB_PROFILE", "cluster")
    with pytest.raises(ConfigError, match="unknown deployment profile 'cluster': the profiles are local, postgres, celery, k8s"):
        active_profile()


def test_pools_get_their_limits_and_a_limit_set_by_hand_is_kept(home):
    prepare_home(profile_named("local"))
    with dg.DagsterInstance.get() as instance:
        assert apply_pools(instance) == {GPU_POOL: 1, CPU_POOL: os.cpu_count()}
        instance.event_log_storage.set_concurrency_slots(CPU_POOL, 7)  # `dagster instance concurrency set cpu 7`
        assert apply_pools(instance)[CPU_POOL] == 7


def test_deploy_check_answers_on_real_servers(postgres, home, tmp_path):
    with RedisServer(tmp_path / "redis") as broker:
        result = subprocess.run([sys.executable, "-m", "lob_platform", "deploy", "check", "celery"], capture_output=True,
                                text=True, env={**os.environ, "LOB_CELERY_BROKER": broker.url}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"at postgresql://postgres@{postgres['DAGSTER_PG_HOST']}:{postgres['DAGSTER_PG_PORT']}/{postgres['DAGSTER_PG_DB']}" \
           f"?connect_timeout=3 answers" in result.stdout
    assert f"Celery broker at {broker.url} answers" in result.stdout
    assert f"pools: gpu 1, cpu {os.cpu_count()}" in result.stdout


@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_an_unreachable_database_fails_within_seconds_naming_it(answer, postgres, home, monkeypatch):
    with silent_server() as silent:
        port = silent if answer == "silent" else free_port()
        monkeypatch.setenv("DAGSTER_PG_PORT", str(port))
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"PostgreSQL at postgresql://postgres@127.0.0.1:{port}/.* did not answer within 3 s or refused the login"):
            check_profile(profile_named("postgres"), prepare_home(profile_named("postgres")))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("scheme", ["redis://127.0.0.1:{port}/0", "amqp://guest:secret@127.0.0.1:{port}//"])
def test_an_unreachable_broker_fails_within_seconds_naming_it(scheme, postgres, home, monkeypatch):
    with silent_server() as port:
        monkeypatch.setenv("LOB_CELERY_BROKER", scheme.format(port=port))
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"Celery broker at .*127.0.0.1:{port}.* did not answer within 3 s") as raised:
            check_profile(profile_named("celery"), prepare_home(profile_named("celery")))
    assert time.monotonic() - started < 10
    assert "secret" not in str(raised.value)  # the password is not printed


def test_missing_connection_settings_are_named(postgres, home, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(ConfigError, match="the environment does not set DAGSTER_PG_HOST: export them"):
        check_profile(profile_named("postgres"), prepare_home(profile_named("postgres")))


@pytest.mark.slow
def test_the_postgres_profile_stores_runs_and_materializations_in_postgresql(postgres, tmp_path, monkeypatch):
    env = profile_env("postgres", tmp_path / "home", write_market(tmp_path / "data"), tmp_path / "warehouse")
    partition = f"{DATE}|{INSTRUMENTS[0]}"
    run = materialize(env, partition, tmp_path / "materialize.log", *IN_PROCESS)
    assert run.wait(timeout=300) == 0, (tmp_path / "materialize.log").read_text()[-3000:]

    import psycopg2

    connection = psycopg2.connect(host=postgres["DAGSTER_PG_HOST"], port=postgres["DAGSTER_PG_PORT"],
                                  user=postgres["DAGSTER_PG_USERNAME"], dbname=postgres["DAGSTER_PG_DB"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("select status from runs")
            assert cursor.fetchall() == [("SUCCESS",)]  # in PostgreSQL itself, not in files under DAGSTER_HOME
    finally:
        connection.close()
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        [record] = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert record.dagster_run.tags["dagster/partition"] == partition
        for table in ("raw_messages", "validated_messages", "features"):
            [materialization] = instance.fetch_materializations(dg.AssetKey(["lobster", table]), limit=10).records
            assert materialization.run_id == record.dagster_run.run_id
            assert materialization.partition_key == partition
            assert materialization.asset_materialization.metadata["rows"].value > 0


# --------------------------------------------------------------------------- pools


def _intervals(instance, run_id: str) -> dict[str, tuple[float, float]]:
    starts, ends = {}, {}
    for entry in step_events(instance, run_id):
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        elif entry.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            ends[entry.step_key] = entry.timestamp
    return {key: (starts[key], ends[key]) for key in starts}


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that hold at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the cpu pool has one slot on a one-core machine")
@pytest.mark.parametrize("profile", ["local", "postgres"])
def test_the_gpu_pool_runs_one_step_at_a_time(profile, request, tmp_path, monkeypatch):
    """Five steps become ready at once on a multiprocess executor allowed five: the three GPU steps
    run one after another, while the cpu pool's two run together (as many as the cores: each
    finishes only once the other has started)."""
    if profile_named(profile).uses_postgres:
        request.getfixturevalue("postgres")
    monkeypatch.setenv("LOB_PROFILE", profile)
    (tmp_path / "meeting_point").mkdir()
    monkeypatch.setenv(MEETING_POINT, str(tmp_path / "meeting_point"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    prepare_home(profile_named(profile))
    with dg.DagsterInstance.get() as instance:
        apply_pools(instance)
        result = dg.execute_job(dg.reconstructable(gpu_and_cpu_steps), instance)
        assert result.success
        intervals = _intervals(instance, result.run_id)
    assert _overlap([intervals[step.name] for step in GPU_STEPS]) == 1
    assert _overlap([intervals[step.name] for step in CPU_STEPS]) == 2
