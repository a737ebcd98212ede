"""Real servers for the tests and the benchmark of the deployment profiles, started and removed by
the code that needs them: a PostgreSQL database of its own, a Redis broker on a free port
(``lob_platform.streaming.redis_server``), Celery workers (``lob_platform.deploy.celery``).

``scratch_database`` creates a database on the PostgreSQL server at ``PGHOST``:``PGPORT``
(default 127.0.0.1:5432, user ``PGUSER`` or postgres) and drops it afterwards. Where none answers,
it starts a private server with Debian's PostgreSQL binaries (``apt-get install postgresql``) in a
temporary folder on a free port, and removes it afterwards.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from lob_platform.errors import ConfigError
from lob_platform.streaming.redis_server import free_port


def postgres_env(host: str, port: int, database: str, user: str) -> dict[str, str]:
    """The postgres profile's connection settings (deploy/postgres/dagster.yaml)."""
    return {"DAGSTER_PG_HOST": host, "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_DB": database,
            "DAGSTER_PG_USERNAME": user, "DAGSTER_PG_PASSWORD": os.environ.get("PGPASSWORD", "")}


def _answers(host: str, port: int, user: str) -> bool:
    import psycopg2

    try:
        psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def _admin(host: str, port: int, user: str, statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host=host, port=port, user=user, dbname="postgres", connect_timeout=3)
    connection.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextlib.contextmanager
def _private_server(user: str) -> Iterator[tuple[str, int]]:
    """A PostgreSQL server of Debian's binaries in a temporary folder, trust authentication on
    loopback; as root it runs as the ``postgres`` system user (PostgreSQL refuses root)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        raise ConfigError("no PostgreSQL server answers on 127.0.0.1:5432 and Debian's PostgreSQL binaries are not "
                          "installed: apt-get install postgresql, or set PGHOST / PGPORT to a running server.")
    bin_dir, port = Path(binaries[-1]).parent, free_port()
    folder = Path(tempfile.mkdtemp(prefix="lob_postgres_"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    data, log = folder / "data", folder / "server.log"
    try:
        for command in ([bin_dir / "initdb", "-D", data, "-U", user, "-A", "trust"],
                        [bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "30", "-o",
                         f"-p {port} -c listen_addresses=127.0.0.1 -k {folder}", "start"]):
            done = subprocess.run([*as_user, *command], capture_output=True, text=True)
            if done.returncode:
                server_log = log.read_text()[-2000:] if log.exists() else ""
                raise ConfigError(f"a private PostgreSQL server could not start: `{' '.join(map(str, command))}` "
                                  f"exited {done.returncode}: {done.stderr.strip()} {server_log}")
        yield "127.0.0.1", port
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def scratch_database() -> Iterator[dict[str, str]]:
    """A new, empty database for one test or benchmark; yields the postgres profile's settings."""
    host, port = os.environ.get("PGHOST", "127.0.0.1"), int(os.environ.get("PGPORT", "5432"))
    user, name = os.environ.get("PGUSER", "postgres"), f"lob_{uuid.uuid4().hex[:12]}"
    with contextlib.ExitStack() as stack:
        if not _answers(host, port, user):
            host, port = stack.enter_context(_private_server(user))
        _admin(host, port, user, f"CREATE DATABASE {name}")
        try:
            yield postgres_env(host, port, name, user)
        finally:
            _admin(host, port, user, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
