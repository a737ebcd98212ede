"""The sink: predictions streams to hive-partitioned parquet, exactly once per event.

    warehouse/stream_predictions/venue=V/model=FAMILY/instrument=I/date=D/part-{first}-{last}.parquet

(first and last: the event rows the file holds). The sink reads every predictions stream of the
venue in the consumer group ``sink`` and writes a partition's buffered rows when it holds
``batch_rows`` of them or its oldest is ``max_age_s`` old (and on shutdown). A file is written
whole to a temporary name and renamed, then its entries are acknowledged. One sink runs per
venue (it holds the lease ``lob:{venue}:sink``).

Exactly once: a sink killed between writing a file and acknowledging its entries reads them again
when it restarts (pending entries come first); entries whose event row is at or below the last
row already written for their partition are acknowledged without being written again. Files are
never appended to or rewritten, so a reader never sees half a batch.
"""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl
import redis

from lob_platform.storage import write_partition
from lob_platform.streaming import schema
from lob_platform.streaming.consumer import RELEASE, RENEW, claim_pending, ensure_group
from lob_platform.streaming.redis_server import RETRYABLE, run_until_terminated

TABLE = "stream_predictions"
GROUP = "sink"
COLUMNS = {"event_row": pl.Int64, "ts_ns": pl.Int64, "event_id": pl.String, "label": pl.String, "pred": pl.String,
           "p_up": pl.Float64, "model_version": pl.String, "latency_us": pl.Int64, "lag": pl.Int64,
           "written_ns": pl.Int64}
Log = Callable[[str], None]


@dataclass(frozen=True)
class SinkConfig:
    venue: str
    batch_rows: int = 10_000
    max_age_s: float = 2.0
    name: str = field(default_factory=lambda: f"sink-{socket.gethostname()}-{os.getpid()}")
    block_ms: int = 100
    lease_ms: int = 5000


def partition_folder(root: Path, venue: str, family: str, instrument: str, date: str) -> Path:
    return Path(root, TABLE, f"venue={venue}", f"model={family}", f"instrument={instrument}", f"date={date}")


def last_written(folder: Path) -> int:
    """The highest event row in the partition's files (-1 when none)."""
    rows = [int(p.stem.split("-")[2]) for p in folder.glob("part-*-*.parquet")]
    return max(rows, default=-1)


def read_partition(folder: Path) -> pl.DataFrame:
    files = sorted(folder.glob("part-*-*.parquet"))
    if not files:
        return pl.DataFrame(schema=COLUMNS)
    return pl.concat([pl.read_parquet(f) for f in files]).sort("event_row")


class Sink:
    def __init__(self, client: redis.Redis, config: SinkConfig, root: Path, log: Log = print):
        self.client, self.config, self.root, self.log = client, config, root, log
        self.buffers: dict[tuple[str, str, str], list[dict]] = defaultdict(list)  # (family, instrument, date) -> rows
        self.entries: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)  # -> (stream, entry id)
        self.oldest: dict[tuple[str, str, str], float] = {}
        self.written: dict[tuple[str, str, str], int] = {}
        self.backlog: set[str] = set()
        self.known: set[str] = set()
        self.renew, self.release = client.register_script(RENEW), client.register_script(RELEASE)

    def run(self) -> None:
        """Sink until SIGTERM, then write what is buffered and give the lease back."""
        try:
            run_until_terminated(self.step, f"sinking {self.config.venue} predictions", self.log)
        finally:
            try:
                self.flush(everything=True)
                self.release(keys=[f"lob:{self.config.venue}:sink"], args=[self.config.name])
            except RETRYABLE:
                pass  # unacknowledged entries are read again by the next sink; the lease expires

    def _lease(self) -> bool:
        key, me, lease = f"lob:{self.config.venue}:sink", self.config.name, self.config.lease_ms
        return bool(self.client.set(key, me, nx=True, px=lease) or self.renew(keys=[key], args=[me, lease]))

    def _streams(self) -> None:
        pattern = schema.predictions_stream(self.config.venue, "*", "*")
        for key in self.client.scan_iter(match=pattern, count=1000):
            stream = key.decode()
            if stream not in self.known:
                ensure_group(self.client, stream, GROUP)
                claim_pending(self.client, stream, GROUP, self.config.name)  # a previous sink's unacknowledged entries
                self.known.add(stream)
                self.backlog.add(stream)

    def step(self) -> int:
        """One round: read, buffer, write what is due. When Redis fails mid-round the buffers are
        dropped and every stream is read again from its unacknowledged entries (rows already in
        files are recognised and not written twice)."""
        try:
            return self._round()
        except RETRYABLE:
            self.buffers.clear()
            self.entries.clear()
            self.oldest.clear()
            self.backlog = set(self.known)
            raise

    def _round(self) -> int:
        if not self._lease():
            time.sleep(self.config.lease_ms / 5000)
            return 0
        self._streams()
        if not self.known:
            time.sleep(self.config.block_ms / 1000)
            return 0
        streams = {s: "0" for s in self.backlog} or {s: ">" for s in self.known}
        reply = self.client.xreadgroup(GROUP, self.config.name, streams, count=self.config.batch_rows,
                                       block=None if self.backlog else self.config.block_ms)
        read = {stream.decode(): entries for stream, entries in reply or []}
        self.backlog = {stream for stream in self.backlog if read.get(stream)}  # the rest: pending entries done
        got = sum(self._buffer(stream, entries) for stream, entries in read.items())
        self.flush()
        return got

    def _buffer(self, stream: str, entries: list) -> int:
        _, venue, instrument, _, family = stream.split(":")
        now = time.monotonic()
        for entry, fields in entries:
            f = {k.decode(): v.decode() for k, v in fields.items()}
            key = (family, instrument, f["date"])
            if key not in self.written:
                self.written[key] = last_written(partition_folder(self.root, venue, *key))
            self.entries[key].append((stream, entry.decode()))
            if int(f["event_row"]) <= max(self.written[key], self.buffers[key][-1]["event_row"] if self.buffers[key] else -1):
                continue  # written (or buffered) already: acknowledged with the batch, not written twice
            self.buffers[key].append({"event_row": int(f["event_row"]), "ts_ns": int(f["ts_ns"]), "event_id": f["event_id"],
                                      "label": f["label"], "pred": f["pred"], "p_up": float(f["p_up"]),
                                      "model_version": f["model_version"], "latency_us": int(f["latency_us"]),
                                      "lag": int(f["lag"])})
            self.oldest.setdefault(key, now)
        return len(entries)

    def flush(self, everything: bool = False) -> None:
        now = time.monotonic()
        for key in list(self.entries):
            rows = self.buffers.get(key, [])
            due = everything or len(rows) >= self.config.batch_rows or now - self.oldest.get(key, now) >= self.config.max_age_s
            if not due and rows:
                continue
            if rows:
                folder = partition_folder(self.root, self.config.venue, *key)
                frame = pl.DataFrame(rows, schema={k: v for k, v in COLUMNS.items() if k != "written_ns"}, orient="row")
                frame = frame.with_columns(written_ns=pl.lit(time.time_ns(), pl.Int64))
                write_partition(frame, folder / f"part-{rows[0]['event_row']:09d}-{rows[-1]['event_row']:09d}.parquet")
                self.written[key] = rows[-1]["event_row"]
            by_stream = defaultdict(list)
            for stream, entry in self.entries.pop(key):
                by_stream[stream].append(entry)
            for stream, ids in by_stream.items():
                self.client.xack(stream, GROUP, *ids)
            self.buffers.pop(key, None)
            self.oldest.pop(key, None)
