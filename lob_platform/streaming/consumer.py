"""The inference consumer: events in, predictions out, exactly once per event.

Consumers of one model family form the Redis consumer group ``serve:{family}`` on every events
stream of the venue. Feature state needs every event of an instrument in order, so each
instrument is served by one consumer at a time: a consumer holds a lease on it
(``lob:{venue}:{instrument}:owner:{family}``, renewed while it lives) and the consumers share the
instruments evenly (a live consumer announces itself in ``lob:{venue}:consumers:{family}``).

Per read (``XREADGROUP``, up to ``batch`` entries per instrument) a consumer:

1. checks every entry (``schema.decode_events``); malformed ones go to the dead-letter stream
   with their id and reason, and are acknowledged;
2. computes the online features of the rest and runs the model on them in one batch;
3. in one ``MULTI``: adds the predictions under their events' ids, records the last processed
   event id (``lob:{venue}:{instrument}:committed:{family}``) and acknowledges the entries.

Because a prediction's id is its event's id, adding it twice is refused: a batch redone after a
crash cannot duplicate anything. A consumer that takes an instrument over (a restart, or a dead
consumer's lease expiring) rebuilds the feature state from the events stream up to the
committed id, claims the instrument's pending entries and processes those after the committed id
before reading new ones: nothing is lost.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import redis

from lob_platform.streaming import schema
from lob_platform.streaming.online import OnlineFeatures
from lob_platform.streaming.redis_server import RETRYABLE, run_until_terminated
from lob_platform.streaming.serving import ModelChoice, ModelUnavailable, ServedModel

Log = Callable[[str], None]
RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass(frozen=True)
class ConsumerConfig:
    venue: str
    model: ModelChoice = field(default_factory=ModelChoice)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch: int = 512  # entries per read per instrument
    block_ms: int = 100  # how long a read waits for new entries
    lease_ms: int = 5000  # an instrument whose consumer stopped renewing is taken over after this
    model_check_s: float = 1.0  # how often the store is checked for a newly published version

    @property
    def group(self) -> str:
        return f"serve:{self.model.family}"


def owner_key(venue: str, instrument: str, family: str) -> str:
    return f"lob:{venue}:{instrument}:owner:{family}"


def committed_key(venue: str, instrument: str, family: str) -> str:
    return f"lob:{venue}:{instrument}:committed:{family}"


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as problem:
        if "BUSYGROUP" not in str(problem):
            raise


def claim_pending(client: redis.Redis, stream: str, group: str, consumer: str) -> None:
    """Make every entry of ``stream`` that ``group`` delivered and nobody acknowledged ``consumer``'s."""
    cursor = "0-0"
    while True:
        cursor, *_ = client.xautoclaim(stream, group, consumer, min_idle_time=0, start_id=cursor, count=1000)
        if cursor in (b"0-0", "0-0"):
            return


def lag_of(client: redis.Redis, stream: str, group: str) -> int:
    """Entries of ``stream`` the group has not read yet."""
    for info in client.xinfo_groups(stream):
        if info["name"].decode() == group:
            return int(info.get("lag") or 0)
    return 0


class Instrument:
    """What a consumer keeps for one instrument it serves."""

    def __init__(self, name: str, tick: float, levels: int):
        self.name, self.tick, self.levels = name, tick, levels
        self.features = OnlineFeatures(tick, levels)
        self.models: dict[str, ServedModel] = {}
        self.backlog = True  # pending entries are read (id "0") before new ones (">")
        self.committed = (-1, -1)  # the last event id whose outcome is published
        self.checked = 0.0  # when the store was last checked for a new model version
        self.lag, self.lag_checked = 0, 0.0


class Consumer:
    def __init__(self, client: redis.Redis, config: ConsumerConfig, root: Path, venue_ticks: Callable[[str], float | None],
                 levels: Callable[[str], int], log: Log = print):
        self.client, self.config, self.root, self.log = client, config, root, log
        self.tick_of, self.levels_of = venue_ticks, levels
        self.owned: dict[str, Instrument] = {}
        self.renew, self.release = client.register_script(RENEW), client.register_script(RELEASE)
        self.last_refresh = 0.0

    # ---- the loop

    def run(self) -> None:
        """Serve until SIGTERM, then give the instruments back."""
        try:
            run_until_terminated(self.step, f"serving {self.config.venue} ({self.config.name})", self.log)
        finally:
            self.close()

    def close(self) -> None:
        """Give the instruments back (another consumer takes them over at once) and leave the registry."""
        try:
            self._release_all()
            self.client.hdel(f"lob:{self.config.venue}:consumers:{self.config.model.family}", self.config.name)
        except RETRYABLE:
            pass  # the leases expire by themselves

    def step(self) -> int:
        """One round: refresh the leases, read, process; returns the events processed. When Redis
        fails mid-round, every instrument is taken over again on the next round (state rebuilt
        from the committed id, unacknowledged entries read again): nothing half-done survives."""
        try:
            return self._round()
        except RETRYABLE:
            self.owned.clear()
            self.last_refresh = 0.0
            raise

    def _round(self) -> int:
        now = time.monotonic()
        if now - self.last_refresh > min(self.config.lease_ms / 3000, 0.25):  # renew leases, notice new streams
            self._refresh_leases()
            self.last_refresh = now
        if not self.owned:
            time.sleep(self.config.block_ms / 1000)
            return 0
        done = 0
        backlog = [i for i in self.owned.values() if i.backlog]
        streams = {schema.events_stream(self.config.venue, i.name): "0" for i in backlog} or \
                  {schema.events_stream(self.config.venue, name): ">" for name in self.owned}
        reply = self.client.xreadgroup(self.config.group, self.config.name, streams, count=self.config.batch,
                                       block=None if backlog else self.config.block_ms)
        read = {schema.instrument_of(stream.decode()): entries for stream, entries in reply or []}
        for instrument in backlog:
            if not read.get(instrument.name):
                instrument.backlog = False  # the pending entries are done
        for name, entries in read.items():
            if entries and name in self.owned:
                done += self._process(self.owned[name], entries)
        return done

    # ---- leases

    def _instruments(self) -> list[str]:
        pattern = schema.events_stream(self.config.venue, "*")
        return sorted({schema.instrument_of(k.decode()) for k in self.client.scan_iter(match=pattern, count=1000)})

    def _refresh_leases(self) -> None:
        venue, family, me, lease = self.config.venue, self.config.model.family, self.config.name, self.config.lease_ms
        registry = f"lob:{venue}:consumers:{family}"
        now_ms = int(time.time() * 1000)
        self.client.hset(registry, me, now_ms)
        alive = [k for k, v in self.client.hgetall(registry).items() if now_ms - int(v) <= lease]
        instruments = self._instruments()
        quota = math.ceil(len(instruments) / max(len(alive), 1))
        for name in list(self.owned):
            if not self.renew(keys=[owner_key(venue, name, family)], args=[me, lease]):
                self.log(f"{me}: lost the lease on {name}")
                del self.owned[name]
        for name in list(self.owned)[quota:]:  # a consumer joined: give instruments back
            self.release(keys=[owner_key(venue, name, family)], args=[me])
            del self.owned[name]
        for name in instruments:
            if len(self.owned) >= quota:
                break
            if name in self.owned:
                continue
            key = owner_key(venue, name, family)
            if self.client.set(key, me, nx=True, px=lease) or self.renew(keys=[key], args=[me, lease]):
                self._take_over(name)

    def _release_all(self) -> None:
        for instrument in list(self.owned.values()):
            self._release(instrument)

    def _take_over(self, name: str) -> None:
        """Serve ``name`` from where its last consumer committed: the state rebuilt from the
        events stream up to the committed id, its pending entries claimed."""
        venue, group = self.config.venue, self.config.group
        stream = schema.events_stream(venue, name)
        tick = self.tick_of(name)
        if tick is None:
            self.log(f"{self.config.name}: {venue} has no tick size for {name}; not serving it (declare it in data/venues.toml)")
            return
        ensure_group(self.client, stream, group)
        instrument = Instrument(name, tick, self.levels_of(name))
        committed = self.client.get(committed_key(venue, name, self.config.model.family))
        rebuilt, last = 0, ""
        try:
            while committed:  # the feature state (and a sequence model's window) up to the committed event
                entries = self.client.xrange(stream, min="(" + last if rebuilt else "-", max=committed.decode(), count=10_000)
                if not entries:
                    break
                decoded, _ = schema.decode_events(entries, name, instrument.levels, instrument.features.last_ts)
                for part, features in self._features(instrument, decoded):
                    self._model(instrument, part.date[0]).remember(features)
                rebuilt, last = rebuilt + len(entries), entries[-1][0].decode()
        except ModelUnavailable as problem:
            self.log(f"{self.config.name}: {name}: {problem}; not serving it yet")
            self.release(keys=[owner_key(venue, name, self.config.model.family)], args=[self.config.name])
            return
        instrument.committed = schema.id_tuple(committed) if committed else (-1, -1)
        claim_pending(self.client, stream, group, self.config.name)  # what dead consumers read and did not acknowledge
        self.owned[name] = instrument
        self.log(f"{self.config.name}: serving {name}" + (f" from {committed.decode()} ({rebuilt} events replayed into "
                                                            "the feature state)" if committed else ""))

    # ---- processing

    def _features(self, instrument: Instrument, decoded: schema.Decoded) -> list[tuple[schema.Decoded, dict]]:
        """Online features of decoded events, per date (a read may cross midnight)."""
        out = []
        dates = np.asarray(decoded.date)
        for date in dict.fromkeys(decoded.date):
            part = decoded.take(dates == date) if len(set(decoded.date)) > 1 else decoded
            out.append((part, instrument.features.update(part.events, date)))
        return out

    def _model(self, instrument: Instrument, date: str) -> ServedModel:
        model = instrument.models.get(date)
        if model is None:  # a new day: yesterday's model is no longer needed
            model = ServedModel(self.root, self.config.venue, instrument.name, date, self.config.model)
            instrument.models = {date: model}
        now = time.monotonic()
        if model.stamp is None or now - instrument.checked > self.config.model_check_s:
            instrument.checked = now
            if model.refresh():
                self.log(f"{self.config.name}: {instrument.name} {date}: {self.config.model.family} version {model.version}")
        return model

    def _process(self, instrument: Instrument, entries: list) -> int:
        venue, family = self.config.venue, self.config.model.family
        stream = schema.events_stream(venue, instrument.name)
        fresh = [e for e in entries if schema.id_tuple(e[0]) > instrument.committed]  # the rest: published already
        decoded, rejected = schema.decode_events(fresh, instrument.name, instrument.levels, instrument.features.last_ts)
        try:
            parts = []
            for part, features in self._features(instrument, decoded):
                model = self._model(instrument, part.date[0])
                parts.append((part, model, *model.predict(features)))
        except ModelUnavailable as problem:
            self.log(f"{self.config.name}: {instrument.name}: {problem}; waiting")
            self._release(instrument)
            time.sleep(1)
            return 0
        ready_ns = time.time_ns()
        if time.monotonic() - instrument.lag_checked > 1.0:
            instrument.lag, instrument.lag_checked = lag_of(self.client, stream, self.config.group), time.monotonic()
        pipe = self.client.pipeline(transaction=True)
        out = schema.predictions_stream(venue, instrument.name, family)
        for part, model, rows, proba in parts:
            predicted = np.asarray(model.classes)[proba.argmax(axis=1)] if len(rows) else []
            for row, pred, p_up in zip(rows.tolist(), predicted, proba[:, model.up].tolist()):
                pipe.xadd(out, {
                    "date": part.date[row], "event_row": int(part.event_row[row]), "ts_ns": int(part.events["ts_ns"][row]),
                    "event_id": part.ids[row], "label": self.config.model.label, "pred": pred, "p_up": repr(p_up),
                    "model_version": model.version, "latency_us": (ready_ns - int(part.sent_ns[row])) // 1000,
                    "lag": instrument.lag,
                }, id=part.ids[row])
        for bad in rejected:
            self.log(f"{self.config.name}: dead letter: {stream} entry {bad.entry_id}: {bad.reason}")
            pipe.xadd(schema.dead_letter_stream(venue), {"stream": stream, "entry_id": bad.entry_id, "reason": bad.reason,
                                                         "consumer": self.config.name, **bad.fields})
        last = max((schema.id_tuple(e[0]) for e in fresh), default=None)
        if last is not None:
            pipe.set(committed_key(venue, instrument.name, family), f"{last[0]}-{last[1]}")
        pipe.xack(stream, self.config.group, *[e[0] for e in entries])
        results = pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and "equal or smaller" not in str(result):
                raise result  # an id already published is the idempotence at work; anything else is not
        if last is not None:
            instrument.committed = last
        return len(fresh)

    def _release(self, instrument: Instrument) -> None:
        self.release(keys=[owner_key(self.config.venue, instrument.name, self.config.model.family)], args=[self.config.name])
        self.owned.pop(instrument.name, None)
