"""Redis for the streaming path: the connection (``REDIS_URL``), retries with backoff while the
server is away, and a private ``redis-server`` the tests and ``lob stream run`` start when none
answers (Debian's ``redis-server`` binary; append-only file on, so a restart loses nothing that
was acknowledged before a clean shutdown)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

import redis

from lob_platform.errors import ConfigError

DEFAULT_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def redis_url() -> str:
    return os.environ.get("REDIS_URL", DEFAULT_URL)


def connect(url: str | None = None) -> redis.Redis:
    """A client that fails fast (2 s to connect) instead of hanging on an unreachable server."""
    return redis.Redis.from_url(url or redis_url(), socket_connect_timeout=2, socket_timeout=30)


def answers(url: str) -> bool:
    try:
        return bool(connect(url).ping())
    except RETRYABLE:
        return False


def retrying(call: Callable[[], T], what: str, log: Callable[[str], None], give_up_after_s: float = 120.0) -> T:
    """``call()``, retried with exponential backoff (0.1 s doubling to 2 s) while Redis is
    unreachable or restarting; after ``give_up_after_s`` the last error is raised."""
    delay, deadline = 0.1, time.monotonic() + give_up_after_s
    while True:
        try:
            return call()
        except RETRYABLE as problem:
            if time.monotonic() > deadline:
                raise ConfigError(f"Redis did not answer for {give_up_after_s:.0f} s while {what}: {problem}. Is the "
                                  "server at REDIS_URL running?") from problem
            log(f"Redis unavailable while {what} ({type(problem).__name__}); retrying in {delay:.1f} s")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def run_until_terminated(step: Callable[[], object], what: str, log: Callable[[str], None]) -> None:
    """Call ``step`` over and over (waiting out Redis restarts) until the process gets SIGTERM."""
    terminated = []
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(True))
    while not terminated:
        retrying(step, what, log)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` on a loopback port with its data in ``folder``; ``restart`` keeps the data."""

    def __init__(self, folder: Path, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError("redis-server is not installed: install Debian's redis-server package "
                              "(apt-get install redis-server) or set REDIS_URL to a running server.")
        self.binary, self.folder, self.port = binary, Path(folder), port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ConfigError(f"redis-server did not start on port {self.port} (data in {self.folder}).")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """A clean shutdown: the append-only file is flushed first."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_for_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for_s)
        self.start()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
