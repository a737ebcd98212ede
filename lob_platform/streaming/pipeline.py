"""``lob stream run``: the whole streaming path for one instrument-day, in one command.

1. What the day needs is made if missing, by Dagster runs on this project's instance (visible in
   the UI): the validated messages, the features, the model family's trained models and its
   batch predictions (for the agreement).
2. Redis: the server at ``REDIS_URL`` when it answers, else a private ``redis-server`` started
   here (data in ``.redis/``) and stopped at the end.
3. The instrument-day's streams, committed ids and sink files are cleared (``resume`` keeps them
   and continues), then the consumers and the sink start as their own processes (``lob stream
   serve`` / ``lob stream sink``) and the day is replayed, with a progress line: events sent,
   predictions published, rows in parquet, consumer lag, events per second.
4. When every prediction is in parquet, the processes stop, the ``stream_evaluation`` asset of
   the partition is materialized, the DuckDB views are refreshed (``stream_predictions``,
   ``stream_evaluation``) and the evaluation is printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from lob_platform.core.settings import load_settings, warehouse_root
from lob_platform.errors import ConfigError
from lob_platform.lineage import FEATURES, MODEL_TABLES, PREDICTIONS, Warehouse
from lob_platform.sources.registry import venue_named
from lob_platform.streaming import schema
from lob_platform.streaming.consumer import committed_key
from lob_platform.streaming.evaluation import expected_rows
from lob_platform.streaming.producer import replay
from lob_platform.streaming.redis_server import RedisServer, answers, connect, redis_url
from lob_platform.streaming.serving import ModelChoice
from lob_platform.streaming.sink import partition_folder, read_partition
from lob_platform.training import store
from lob_platform.warehouse import refresh_views

REDIS_FOLDER = ".redis"


@dataclass(frozen=True)
class RunOptions:
    venue: str
    instrument: str
    date: str
    model: ModelChoice = ModelChoice()
    speed: float | None = None
    batch: int = 512
    consumers: int = 1
    resume: bool = False
    timeout_s: float = 600.0


def ensure_inputs(options: RunOptions, log=print) -> None:
    """Materialize the partitions the streaming run reads that are not in the warehouse yet."""
    from lob_platform.cli import ensure_dagster_home
    from lob_platform.defs import build_definitions
    from lob_platform.defs.automation import ingest_job_name, ingest_keys
    from lob_platform.defs.models import model_key
    from lob_platform.main_job import QUIET, failure_reasons, register_instruments
    from lob_platform.sources.registry import load_venues

    venue, family = venue_named(options.venue), options.model.family
    warehouse = Warehouse(warehouse_root())
    folder = store.model_folder(warehouse.root, venue.name, family, options.instrument, options.date, options.model.label)
    if warehouse.path(FEATURES, venue.name, options.date, options.instrument).exists() and (folder / store.MANIFEST).exists() \
            and warehouse.path(PREDICTIONS, venue.name, options.date, options.instrument, model=family).exists():
        return
    days = [d for d in venue.catalogue().days if d.instrument == options.instrument and d.date.isoformat() == options.date]
    if not days:
        raise ConfigError(f"{venue.name} has no raw file for {options.instrument} on {options.date} under {venue.folder}: "
                          "put the day's files there (for the real AMZN sample: copy its zip into data/lobster/).")
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    register_instruments(instance, days)
    settings = load_settings()
    if family not in settings.models.families:
        raise ConfigError(f"model family {family!r} has no assets (LOB_MODEL_FAMILIES); choose one of {settings.models.families}")
    keys = [*ingest_keys(venue), *(model_key(venue, family, table) for table in MODEL_TABLES)]
    log(f"materializing {', '.join(k.to_user_string() for k in keys)} for {options.date}|{options.instrument}")
    job = build_definitions(load_venues(), settings).resolve_job_def(ingest_job_name(venue))
    result = job.execute_in_process(partition_key=dg.MultiPartitionKey({"date": options.date, "instrument": options.instrument}),
                                    instance=instance, asset_selection=keys, run_config=QUIET, raise_on_error=False)
    if not result.success:
        raise ConfigError(f"the inputs of {options.date}|{options.instrument} could not be made: " + "; ".join(failure_reasons(result)))


def clear(client, options: RunOptions) -> None:
    """Forget an earlier streaming run of this instrument-day: its streams, ids and sink files."""
    venue, family = options.venue, options.model.family
    client.delete(schema.events_stream(venue, options.instrument), schema.predictions_stream(venue, options.instrument, family),
                  committed_key(venue, options.instrument, family))
    shutil.rmtree(partition_folder(warehouse_root(), venue, family, options.instrument, options.date), ignore_errors=True)


def _spawn(arguments: list[str], url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lob_platform", "stream", *arguments],
                            env={**os.environ, "REDIS_URL": url})


def _sunk(folder: Path) -> int:
    files = list(folder.glob("part-*-*.parquet"))
    return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0


def _wait_ready(client, options: RunOptions, children: list[subprocess.Popen], timeout_s: float = 120) -> None:
    """Wait until every consumer has announced itself and the sink holds its lease (latency is
    measured from the first event, so the replay waits for the processes to start)."""
    registry, names = f"lob:{options.venue}:consumers:{options.model.family}", [f"consumer-{i + 1}" for i in range(options.consumers)]
    since = time.time() * 1000
    deadline = time.monotonic() + timeout_s
    while True:
        beats = client.hmget(registry, names)
        if all(b is not None and int(b) >= since for b in beats) and client.exists(f"lob:{options.venue}:sink"):
            return
        if any(c.poll() is not None for c in children) or time.monotonic() > deadline:
            raise ConfigError("the consumers or the sink did not start; see their output above")
        time.sleep(0.05)


def run_pipeline(options: RunOptions, log=print) -> int:
    ensure_inputs(options, log)
    venue, family = options.venue, options.model.family
    root = warehouse_root()
    messages = Warehouse(root).read(venue_named(venue).kind.validated, venue, options.date, options.instrument)
    manifest = store.read_manifest(store.model_folder(root, venue, family, options.instrument, options.date, options.model.label))
    expected = len(expected_rows(messages.height, manifest))
    server, url = None, redis_url()
    if not answers(url):
        server = RedisServer(Path(REDIS_FOLDER)).start()
        url = server.url
        log(f"no Redis answers at {redis_url()}: started redis-server on {url} (data in {REDIS_FOLDER}/)")
    children: list[subprocess.Popen] = []
    try:
        client = connect(url)
        if not options.resume:
            clear(client, options)
        model = ["--family", family, "--label", options.model.label, "--batch", str(options.batch)]
        model += ["--version", options.model.version] if options.model.version else []
        children = [_spawn(["serve", "--venue", venue, *model, "--name", f"consumer-{i + 1}"], url) for i in range(options.consumers)]
        children.append(_spawn(["sink", "--venue", venue, "--max-age", "0.2"], url))
        _wait_ready(client, options, children)
        folder = partition_folder(root, venue, family, options.instrument, options.date)
        predictions = schema.predictions_stream(venue, options.instrument, family)
        started = time.perf_counter()
        sent = [0]
        last_line = [0.0]

        def progress(count: int = 0) -> None:
            sent[0] += count
            now = time.perf_counter()
            if now - last_line[0] < 0.5:
                return
            last_line[0] = now
            published, sunk = client.xlen(predictions), _sunk(folder)
            groups = {g["name"].decode(): g for g in client.xinfo_groups(schema.events_stream(venue, options.instrument))} \
                if client.exists(schema.events_stream(venue, options.instrument)) else {}
            lag = groups.get(f"serve:{family}", {}).get("lag") or 0
            print(f"\r{sent[0]:,}/{messages.height:,} events sent · {published:,} predictions · {sunk:,} rows in parquet · "
                  f"consumer lag {lag:,} · {sent[0] / (now - started):,.0f} events/s   ", end="", flush=True)

        replayed = replay(client, venue, options.instrument, options.date, messages, speed=options.speed, log=log,
                          progress=progress)
        sent_s = replayed.seconds
        while client.xlen(predictions) < expected or _sunk(folder) < expected:
            if time.perf_counter() - started > options.timeout_s:
                raise ConfigError(f"the streaming run did not finish in {options.timeout_s:.0f} s: "
                                  f"{client.xlen(predictions):,} of {expected:,} predictions, {_sunk(folder):,} in parquet")
            if any(c.poll() is not None for c in children):
                raise ConfigError("a consumer or the sink stopped early; see its output above")
            progress()
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        progress()
        print()
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)
        if server:
            server.stop()
    streamed = read_partition(folder)
    log(f"replayed {replayed.events:,} events in {sent_s:.1f} s; {len(streamed):,} predictions in parquet after {elapsed:.1f} s: "
        f"{messages.height / elapsed:,.0f} events/s end to end")
    return evaluate_partition(options)


def evaluate_partition(options: RunOptions) -> int:
    from lob_platform.cli import ensure_dagster_home
    from lob_platform.defs import build_definitions
    from lob_platform.defs.streaming import stream_evaluation_job_name
    from lob_platform.main_job import QUIET, failure_reasons
    from lob_platform.sources.registry import load_venues

    ensure_dagster_home()
    venue = venue_named(options.venue)
    job = build_definitions(load_venues()).resolve_job_def(stream_evaluation_job_name(venue))
    result = job.execute_in_process(partition_key=dg.MultiPartitionKey({"date": options.date, "instrument": options.instrument}),
                                    instance=dg.DagsterInstance.get(), run_config=QUIET, raise_on_error=False)
    if not result.success:
        print("stream_evaluation failed: " + "; ".join(failure_reasons(result)), file=sys.stderr)
        return 1
    refresh_views(warehouse_root())  # stream_predictions and stream_evaluation in DuckDB
    frame = pl.read_parquet(Warehouse(warehouse_root()).path("stream_evaluation", venue.name, options.date, options.instrument))
    columns = ["model", "label", "streamed", "missing", "duplicated", "labelled", "accuracy", "brier", "ece",
               "latency_p50_us", "latency_p99_us", "lag_max", "compared_with_batch", "agreement"]
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(frame.select([c for c in columns if c in frame.columns]))
    return 0
