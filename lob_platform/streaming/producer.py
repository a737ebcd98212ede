"""The producer: replays a validated instrument-day into its events stream.

At full speed, or paced by the events' own timestamps divided by ``speed`` (2.0: twice as fast
as the day happened). Replays resume: events whose id the stream already holds are skipped, so a
replay interrupted (or repeated) continues after the last event written, and ``after`` starts
later still (after a given entry id). Writes go in pipelined chunks; a Redis restart mid-replay is
waited out and the chunk retried (ids already written are refused, nothing is doubled).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import polars as pl
import redis

from lob_platform.core.columns import book_levels
from lob_platform.errors import ConfigError
from lob_platform.streaming import schema
from lob_platform.streaming.redis_server import retrying

CHUNK = 1000


@dataclass
class Replayed:
    stream: str
    events: int  # written by this replay
    skipped: int  # already in the stream
    seconds: float


def replay(client: redis.Redis, venue: str, instrument: str, date: str, messages: pl.DataFrame, *,
           speed: float | None = None, after: str | None = None, log: Callable[[str], None] = print,
           progress: Callable[[int], None] | None = None) -> Replayed:
    """Write ``messages`` (the validated day, in order) to the instrument's events stream."""
    if speed is not None and speed <= 0:
        raise ConfigError(f"speed must be positive (1.0: as fast as the day happened), got {speed}")
    stream = schema.events_stream(venue, instrument)
    frame = messages.with_row_index("event_row")
    entries = schema.encode_events(frame, date, instrument, book_levels(messages.columns))
    last = retrying(lambda: client.xrevrange(stream, count=1), f"reading the end of {stream}", log)
    last_id = schema.id_tuple(last[0][0]) if last else None
    if last and last[0][1][b"date"].decode() > date:
        raise ConfigError(f"{stream} already holds a later day ({last[0][1][b'date'].decode()}); replaying {date} would go "
                          "back in time. Delete the stream (DEL) to replay an earlier day.")
    floor = max([i for i in (last_id, schema.id_tuple(after) if after else None) if i is not None], default=None)
    todo = [e for e in entries if floor is None or schema.id_tuple(e[0]) > floor]
    if last and not todo:
        log(f"{stream}: {date} is already in the stream (up to {last[0][0].decode()}); nothing to replay")
    ts = frame["ts_ns"].to_list()[len(entries) - len(todo):]
    started, begin = time.perf_counter(), 0
    while begin < len(todo):
        end = min(begin + CHUNK, len(todo)) if speed is None else _due(ts, begin, started, speed)
        chunk = todo[begin:end]
        retrying(lambda chunk=chunk: _write(client, stream, chunk), f"writing {stream}", log)
        if progress:
            progress(len(chunk))
        begin = end
    return Replayed(stream, len(todo), len(entries) - len(todo), time.perf_counter() - started)


def _due(ts: list[int], begin: int, started: float, speed: float) -> int:
    """Wait until event ``begin`` is due; return the end of the run of events due by then (at most ``CHUNK``)."""
    wait = started + (ts[begin] - ts[0]) / 1e9 / speed - time.perf_counter()
    if wait > 0:
        time.sleep(wait)
    now = ts[0] + (time.perf_counter() - started) * speed * 1e9
    end = begin + 1
    while end < len(ts) and end - begin < CHUNK and ts[end] <= now:
        end += 1
    return end


def _write(client: redis.Redis, stream: str, chunk: list) -> None:
    pipe = client.pipeline(transaction=False)
    sent = str(time.time_ns())
    for entry, fields in chunk:
        pipe.xadd(stream, {**fields, "sent_ns": sent}, id=entry)
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, Exception) and "equal or smaller" not in str(result):
            raise result
