"""The celery profile: dagster-celery's executor and workers, settings from ``deploy/celery``.

Each step of a run is a Celery task that a worker process runs (dagster-celery's own task and
execution loop). One addition: a worker process that dies mid-step (killed, out of memory) makes
Celery report ``WorkerLostError`` instead of the step's events. dagster-celery would fail the run
there; here the step is retried the way Dagster retries a failed step (an ``up for retry`` event,
the attempt counted, the retry policy's delay), by the step's own ``RetryPolicy`` or else by
``LOST_WORKER_RETRY``. The partial output of the lost attempt never shows: partitions are written
to a temporary file and moved into place (``lob_platform.storage``).
"""

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping

import dagster as dg
import yaml
from billiard.exceptions import WorkerLostError
from celery.exceptions import DuplicateTaskNameWarning
from dagster._core.events import DagsterEvent
from dagster._core.execution.plan.objects import ErrorSource, StepFailureData, StepRetryData
from dagster._core.execution.retries import RetryMode
from dagster._serdes import serialize_value
from dagster._utils.error import SerializableErrorInfo
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor, _submit_task
from dagster_celery.make_app import make_app

from lob_platform.deploy.profiles import DEPLOY_DIR
from lob_platform.errors import ConfigError

BROKER_VARIABLE, BACKEND_VARIABLE = "LOB_CELERY_BROKER", "LOB_CELERY_BACKEND"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
SETTINGS = DEPLOY_DIR / "celery" / "celery.yaml"
QUEUE = "dagster"
LOST_WORKER_RETRY = dg.RetryPolicy(max_retries=2, delay=1)
"""How often a step whose worker died is run again, where the step has no retry policy of its
own. Only for lost workers: a step that raises (bad data, a bug) is not retried blindly."""
WORKER_APP = "lob_platform.deploy.celery_worker"

# dagster-celery registers its one step task on the run's app again for every step it sends
warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)


def broker_url(env: Mapping[str, str] = os.environ) -> str:
    return env.get(BROKER_VARIABLE) or DEFAULT_BROKER


def backend_url(env: Mapping[str, str] = os.environ) -> str:
    broker = broker_url(env)
    return env.get(BACKEND_VARIABLE) or (broker if broker.startswith(("redis://", "rediss://")) else "rpc://")


def executor_config(env: Mapping[str, str] = os.environ) -> dict:
    """The dagster-celery executor's configuration: broker and backend from the environment ``env``,
    the Celery settings from ``deploy/celery/celery.yaml``."""
    return {"broker": broker_url(env), "backend": backend_url(env), "config_source": yaml.safe_load(SETTINGS.read_text())}


def worker_app(env: Mapping[str, str] = os.environ):
    """The Celery app of the workers and of ``lob deploy check celery``: the executor's own."""
    config = executor_config(env)
    return make_app(CeleryExecutor.for_cli(broker=config["broker"], backend=config["backend"],
                                           config_source=config["config_source"]).app_args())


class RetryingCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor; a step whose worker was lost is retried (module docstring)."""

    def execute(self, plan_context, execution_plan):
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=_submit_step)


def _submit_step(app, plan_context, step, queue, priority, known_state):
    return _LostWorkerAware(_submit_task(app, plan_context, step, queue, priority, known_state),
                            plan_context, step, known_state)


class _LostWorkerAware:
    """A step's Celery result whose ``get`` answers a lost worker with the step's retry (or its
    failure, once the retries are spent) instead of raising."""

    def __init__(self, result, plan_context, step, known_state):
        self.result, self.plan_context, self.step, self.known_state = result, plan_context, step, known_state

    def ready(self) -> bool:
        return self.result.ready()

    def revoke(self) -> None:
        self.result.revoke()

    def get(self) -> list[str]:
        try:
            return self.result.get()
        except WorkerLostError as lost:
            return [serialize_value(lost_worker_event(self.plan_context, self.step, self.known_state, str(lost)))]


def lost_worker_event(plan_context, step, known_state, reason: str) -> DagsterEvent:
    """``STEP_UP_FOR_RETRY`` while the step's retry policy (or ``LOST_WORKER_RETRY``) allows another
    attempt, else ``STEP_FAILURE``; logged to the run like any step event."""
    job = plan_context.reconstructable_job.get_definition()
    policy = job.get_retry_policy_for_handle(step.handle.node_handle) or LOST_WORKER_RETRY
    attempts = known_state.previous_retry_attempts.get(step.key, 0) if known_state else 0
    error = SerializableErrorInfo(message=f"the Celery worker process running step {step.key} was lost ({reason}); "
                                  "it was killed or ran out of memory", stack=[], cls_name=WorkerLostError.__name__)
    context = plan_context.for_step(step)
    if plan_context.executor.retries.enabled and attempts < policy.max_retries:
        return DagsterEvent.step_retry_event(context, StepRetryData(error=error, seconds_to_wait=policy.calculate_delay(attempts + 1)))
    return DagsterEvent.step_failure_event(context, StepFailureData(error=error, user_failure_data=None,
                                                                    error_source=ErrorSource.FRAMEWORK_ERROR))


@dg.executor(name="celery", config_schema=CELERY_CONFIG, requirements=dg.multiple_process_executor_requirements())
def _retrying_celery_executor(init_context):
    config = init_context.executor_config
    return RetryingCeleryExecutor(retries=RetryMode.from_config(config["retries"]), broker=config.get("broker"),
                                  backend=config.get("backend"), include=config.get("include"),
                                  config_source=config.get("config_source"))


def celery_executor() -> dg.ExecutorDefinition:
    """The celery profile's executor, configured from the environment and ``deploy/celery``."""
    return _retrying_celery_executor.configured(executor_config(), name="celery")


# --------------------------------------------------------------------------- workers


def worker_command(name: str, processes: int = 1) -> list[str]:
    """A Celery worker of the celery profile: ``processes`` step processes (prefork pool), listening
    on dagster-celery's queue."""
    return [sys.executable, "-m", "celery", "-A", WORKER_APP, "worker", "-Q", QUEUE, "-n", f"{name}@%h",
            "--pool", "prefork", "--concurrency", str(processes),
            "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]


def start_workers(names: list[str], env: dict[str, str], log_dir, timeout_s: float = 60) -> list[subprocess.Popen]:
    """Start one worker per name (with the environment ``env``) and wait until each answers a ping."""
    workers = []
    for name in names:
        with open(f"{log_dir}/{name}.log", "ab") as log:
            workers.append(subprocess.Popen(worker_command(name), env=env, stdout=log, stderr=subprocess.STDOUT))
    app, deadline = worker_app(env), time.monotonic() + timeout_s
    try:
        while True:
            answered = {name.split("@")[0] for reply in app.control.ping(timeout=1) for name in reply}
            if answered >= set(names):
                return workers
            dead = [name for name, worker in zip(names, workers) if worker.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise ConfigError(f"Celery worker(s) {', '.join(dead or sorted(set(names) - answered))} did not start; "
                                  f"see their logs in {log_dir}.")
    except BaseException:
        stop_workers(workers)
        raise
    finally:
        app.close()


def stop_workers(workers: list[subprocess.Popen], timeout_s: float = 20) -> None:
    """A warm shutdown (SIGTERM: running steps finish), then SIGKILL for any still there."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
