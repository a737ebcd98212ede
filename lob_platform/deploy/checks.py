"""``lob deploy check PROFILE``: does the profile's database answer, and its broker? Each check
gives up after ``TIMEOUT_S`` with an error that names what did not answer and where, never hangs."""

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from lob_platform.deploy.profiles import Profile
from lob_platform.errors import ConfigError

TIMEOUT_S = 3


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def postgres_url(home: Path) -> str | None:
    """The libpq URL of the instance in ``home``'s PostgreSQL (its environment variables resolved),
    or None when the instance stores runs elsewhere (SQLite)."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.storage.config import pg_config
    from dagster_postgres.utils import pg_url_from_config

    config = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    storage = (config.get("storage") or {}).get("postgres")
    if storage is None:
        return None
    resolved = process_config(resolve_to_config_type(pg_config()), storage)
    if not resolved.success:
        missing = [error.message.split('"')[1] for error in resolved.errors if "environment variable" in error.message]
        raise ConfigError(f"{home / 'dagster.yaml'} stores runs in PostgreSQL, but "
                          + (f"the environment does not set {', '.join(missing)}: export them (the database's host, port, "
                             "name, user and password; DAGSTER_PG_PASSWORD may be empty)." if missing else
                             "; ".join(error.message for error in resolved.errors)))
    return re.sub(r"^postgresql\+\w+://", "postgresql://", pg_url_from_config(resolved.value))


def check_postgres(url: str) -> str:
    import psycopg2

    try:
        connection = psycopg2.connect(url, connect_timeout=TIMEOUT_S)
    except psycopg2.Error as problem:  # refused, silent past the timeout, or the login or database refused
        raise ConfigError(f"PostgreSQL at {redact(url)} did not answer within {TIMEOUT_S} s or refused the login: "
                          f"{str(problem).strip()}. Start the server or fix DAGSTER_PG_HOST / DAGSTER_PG_PORT / "
                          "DAGSTER_PG_DB / DAGSTER_PG_USERNAME / DAGSTER_PG_PASSWORD.") from problem
    try:
        with connection.cursor() as cursor:
            cursor.execute("show server_version")
            version = cursor.fetchone()[0]
    finally:
        connection.close()
    return f"PostgreSQL {version} at {redact(url)} answers"


def check_broker(url: str, what: str, variable: str) -> str:
    from kombu import Connection

    connection = Connection(url, connect_timeout=TIMEOUT_S,  # amqp: connecting and the handshake
                            transport_options={"socket_connect_timeout": TIMEOUT_S, "socket_timeout": TIMEOUT_S})  # redis
    try:
        connection.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
    except Exception as problem:  # kombu raises its transport's own errors
        raise ConfigError(f"the Celery {what} at {redact(url)} did not answer within {TIMEOUT_S} s: {problem}. "
                          f"Start it or fix {variable}.") from problem
    finally:
        connection.release()
    return f"Celery {what} at {redact(url)} answers"


def check_workers() -> str:
    """Which Celery workers answer (a warning, not an error, when none does: they may start later,
    but until one does the celery profile's runs wait)."""
    from lob_platform.deploy.celery import worker_app

    replies = worker_app().control.ping(timeout=TIMEOUT_S)
    names = sorted(name for reply in replies for name in reply)
    return (f"{len(names)} Celery worker(s) answer: {', '.join(names)}" if names else
            "warning: no Celery worker answers yet; runs wait until one starts (`lob deploy worker`)")


def check_profile(profile: Profile, home: Path) -> list[str]:
    """What answered, line by line; raises ConfigError naming the first database or broker that did not."""
    lines = [f"profile {profile.name}: {profile.summary}", f"instance: {home / 'dagster.yaml'}"]
    url = postgres_url(home)
    if profile.uses_postgres and url is None:
        raise ConfigError(f"{home / 'dagster.yaml'} does not store runs in PostgreSQL, but the {profile.name} profile "
                          f"needs it: copy {profile.instance_config} there, or point DAGSTER_HOME at another folder.")
    lines.append(check_postgres(url) if url else "SQLite run storage in DAGSTER_HOME")
    if profile.uses_broker:
        from lob_platform.deploy.celery import BACKEND_VARIABLE, BROKER_VARIABLE, backend_url, broker_url

        lines.append(check_broker(broker_url(), "broker", BROKER_VARIABLE))
        if backend_url().startswith("redis"):
            lines.append(check_broker(backend_url(), "result backend", BACKEND_VARIABLE))
        lines.append(check_workers())
    return lines
