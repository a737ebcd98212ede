"""The deployment profiles: files under ``deploy/`` in the repository, one chosen by ``LOB_PROFILE``.

=========  ==========================================  ===========================================
profile    instance (runs, events, schedules)          where steps execute
=========  ==========================================  ===========================================
local      SQLite in DAGSTER_HOME (``deploy/local``)    processes on this machine (multiprocess)
postgres   PostgreSQL (``deploy/postgres``)             processes on this machine (multiprocess)
celery     PostgreSQL (``deploy/postgres``)             Celery workers, through a Redis or RabbitMQ
                                                        broker (``deploy/celery``)
k8s        PostgreSQL, written by Dagster's Helm chart  one Kubernetes pod per step (``deploy/k8s``)
=========  ==========================================  ===========================================

The code location reads ``LOB_PROFILE`` for its executor; ``lob`` commands copy the profile's
``dagster.yaml`` into a DAGSTER_HOME that has none (``.dagster_home`` for local,
``.dagster_home_<profile>`` for the others) and give the pools their limits.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lob_platform.errors import ConfigError

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
PROFILE_VARIABLE = "LOB_PROFILE"
CODE_LOCATION = "lob_platform.definitions"
PRELOADED_MULTIPROCESS = {"execution": {"config": {"multiprocess": {"start_method": {"forkserver": {
    "preload_modules": [CODE_LOCATION]}}}}}}
"""Run configuration for the multiprocess executor whose step processes fork from a server that has
the code location imported (as the Celery workers' do) instead of each importing it (1.4 s of
overhead per step instead of 6 on a 2-core machine: ``benchmarks/scale_out.py``)."""


@dataclass(frozen=True)
class Profile:
    name: str
    instance: str
    """The folder of ``deploy/`` whose ``dagster.yaml`` configures the instance."""
    executor: str
    """``multiprocess``, ``celery`` or ``k8s``."""
    summary: str

    @property
    def instance_config(self) -> Path:
        return DEPLOY_DIR / self.instance / "dagster.yaml"

    @property
    def uses_postgres(self) -> bool:
        return self.instance == "postgres"

    @property
    def uses_broker(self) -> bool:
        return self.executor == "celery"

    def executor_definition(self):
        """The code location's executor; None for Dagster's default (multiprocess; a run started
        with ``execute_in_process``, as the main job's, stays in its process)."""
        if self.executor == "celery":
            from lob_platform.deploy.celery import celery_executor

            return celery_executor()
        if self.executor == "k8s":
            from lob_platform.deploy.k8s import k8s_executor

            return k8s_executor()
        return None

    def default_home(self) -> Path:
        return Path(".dagster_home" if self.name == "local" else f".dagster_home_{self.name}")


PROFILES = {profile.name: profile for profile in (
    Profile("local", "local", "multiprocess", "SQLite in DAGSTER_HOME; steps in processes on this machine"),
    Profile("postgres", "postgres", "multiprocess", "PostgreSQL (DAGSTER_PG_*); steps in processes on this machine"),
    Profile("celery", "postgres", "celery", "PostgreSQL (DAGSTER_PG_*); steps on Celery workers through the "
            "broker at LOB_CELERY_BROKER"),
    Profile("k8s", "postgres", "k8s", "PostgreSQL; one Kubernetes pod per step (Dagster's Helm chart with "
            "deploy/k8s/values.yaml)"),
)}


def profile_named(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(f"unknown deployment profile {name!r}: the profiles are {', '.join(PROFILES)} "
                          f"(set {PROFILE_VARIABLE} to one of them, or leave it unset for local).")
    return PROFILES[name]


def active_profile() -> Profile:
    """The profile ``LOB_PROFILE`` names; local when it is unset."""
    return profile_named(os.environ.get(PROFILE_VARIABLE) or "local")


def prepare_home(profile: Profile) -> Path:
    """The DAGSTER_HOME of ``profile``: ``$DAGSTER_HOME``, else the profile's own folder, holding
    the profile's ``dagster.yaml`` where it has none (one that is there, edited or not, is kept)."""
    home = Path(os.environ.get("DAGSTER_HOME") or profile.default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(profile.instance_config, config)
    return home
