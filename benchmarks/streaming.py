"""Streaming throughput and latency, beside the batch path on the same events.

For LightGBM and the LSTM, one and four instruments, and read sizes 1, 64 and 512: a private
redis-server, one ``lob stream serve`` and one ``lob stream sink`` process, and the day replayed
from this process.

- events/s end to end: the replay at full speed, until every prediction is in parquet;
- latency p50 / p99 (event written to Redis -> prediction ready), measured under a light paced
  load (``--paced`` events/s per instrument, default 100), so it is the path's own delay and not
  time spent queueing behind a full-speed replay; the first ``WARM_UP`` events of each instrument
  are left out (the model loads when the first event arrives) and the first event's latency is
  shown apart;
- baseline: the batch path (features of the whole day, then the model on every row) in events/s.

    python benchmarks/streaming.py [--events 20000]

Uses the synthetic market of `lob run` (data/, warehouse/, its tiny models of lobster ACME on
2024-03-05); four instruments are the same day replayed under four names, each served with the
same model.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from lob_platform.core.settings import warehouse_root
from lob_platform.features.table import build_features
from lob_platform.lineage import Warehouse
from lob_platform.streaming import schema
from lob_platform.streaming.consumer import ensure_group, owner_key
from lob_platform.streaming.producer import replay
from lob_platform.streaming.redis_server import RedisServer, connect
from lob_platform.streaming.sink import partition_folder, read_partition
from lob_platform.training import store
from lob_platform.training.fit import build_module, predict_day
from lob_platform.datasets.rows import evaluation_rows
from lob_platform.features.training_window import PREVIOUS_DAYS

DATE, SOURCE = "2024-03-05", "ACME"
WARM_UP = 150  # events per instrument left out of the latency figures (the LSTM's first prediction is at 99)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def quiet(_: str) -> None:
    pass


def prepare(root: Path, instruments: list[str], messages: pl.DataFrame) -> None:
    """A warehouse holding the day's validated messages and both models under each name."""
    source = Warehouse(warehouse_root())
    target = Warehouse(root)
    for name in instruments:
        path = target.path("validated_messages", "lobster", DATE, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        messages.write_parquet(path)
        for family in ("lightgbm", "lstm"):
            folder = store.model_folder(source.root, "lobster", family, SOURCE, DATE, "next_mid_up")
            shutil.copytree(folder, store.model_folder(root, "lobster", family, name, DATE, "next_mid_up"), dirs_exist_ok=True)


def batch_baseline(messages: pl.DataFrame, family: str) -> float:
    folder = store.model_folder(warehouse_root(), "lobster", family, SOURCE, DATE, "next_mid_up")
    manifest, model, _ = store.load(folder, {}, build_module)
    started = time.perf_counter()
    features = build_features(messages, 0.01)
    predict_day(manifest, model, evaluation_rows(features, DATE, PREVIOUS_DAYS, 0.6, 100), "benchmark")
    return messages.height / (time.perf_counter() - started)


def run(server: RedisServer, root: Path, family: str, instruments: list[str], batch: int, messages: pl.DataFrame,
        per_second: float | None) -> dict:
    client = connect(server.url)
    client.flushall()
    shutil.rmtree(root / "stream_predictions", ignore_errors=True)
    env = {**os.environ, "REDIS_URL": server.url, "LOB_WAREHOUSE_DIR": str(root)}
    processes = [subprocess.Popen([sys.executable, "-m", "lob_platform", "stream", *args], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for args in (["serve", "--family", family, "--batch", str(batch), "--name", "bench"],
                              ["sink", "--max-age", "0.2", "--batch-rows", "20000"])]
    try:
        for name in instruments:  # the streams exist before the day starts, as in production
            ensure_group(client, schema.events_stream("lobster", name), f"serve:{family}")
        while not (all(client.get(owner_key("lobster", name, family)) == b"bench" for name in instruments)
                   and client.exists("lob:lobster:sink")):
            time.sleep(0.05)
        span = (messages["ts_ns"][-1] - messages["ts_ns"][0]) / 1e9
        speed = None if per_second is None else span / (messages.height / per_second)
        started = time.perf_counter()
        import threading

        threads = [threading.Thread(target=replay, args=(connect(server.url), "lobster", name, DATE, messages),
                                    kwargs={"speed": speed, "log": quiet}) for name in instruments]
        for thread in threads:
            thread.start()
        expected = messages.height - (0 if family == "lightgbm" else 99)
        folders = [partition_folder(root, "lobster", family, name, DATE) for name in instruments]
        # cheap checks (this process shares the cores): predictions published, then rows in parquet
        while sum(client.xlen(schema.predictions_stream("lobster", name, family)) for name in instruments) < expected * len(instruments):
            time.sleep(0.01)
        while sum(pl.scan_parquet(list(f.glob("part-*"))).select(pl.len()).collect().item() if any(f.glob("part-*")) else 0
                  for f in folders) < expected * len(instruments):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    # the first events of a day wait for the model to load (once per process): left out, shown apart
    frames = [read_partition(f) for f in folders]
    latency = np.concatenate([f.filter(pl.col("event_row") >= WARM_UP)["latency_us"].to_numpy() for f in frames])
    first = max(f["latency_us"][0] for f in frames) / 1000
    return {"events_per_s": messages.height * len(instruments) / elapsed,
            "p50_ms": float(np.percentile(latency, 50)) / 1000, "p99_ms": float(np.percentile(latency, 99)) / 1000,
            "first_ms": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per instrument at read sizes 64 and 512")
    parser.add_argument("--events-batch-1", type=int, default=3_000, help="events per instrument at read size 1")
    parser.add_argument("--paced", type=float, default=100.0, help="events/s per instrument of the latency runs")
    args = parser.parse_args()
    day = Warehouse(warehouse_root()).read("validated_messages", "lobster", DATE, SOURCE)
    print(f"machine: {machine()}; day: lobster {SOURCE} {DATE} ({day.height:,} events)")
    with tempfile.TemporaryDirectory() as folder, RedisServer(Path(folder) / "redis") as server:
        root = Path(folder) / "warehouse"
        names = [f"I{i}" for i in range(4)]
        print(f"{'model':9} {'instr':>5} {'read':>5} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'first ms':>9}   (latency at {args.paced:g} events/s per instrument, after {WARM_UP} events)")
        for family in ("lightgbm", "lstm"):
            print(f"{family:9} batch path (baseline): {batch_baseline(day, family):,.0f} events/s")
            for count in (1, 4):
                for batch in (1, 64, 512):
                    messages = day.head(args.events_batch_1 if batch == 1 else args.events)
                    prepare(root, names[:count], messages)
                    fast = run(server, root, family, names[:count], batch, messages, None)
                    paced = run(server, root, family, names[:count], batch, messages.head(int(args.paced * 6)), args.paced)
                    print(f"{family:9} {count:>5} {batch:>5} {fast['events_per_s']:>10,.0f} {paced['p50_ms']:>8.2f} "
                          f"{paced['p99_ms']:>8.2f} {paced['first_ms']:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
