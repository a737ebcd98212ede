"""The streaming path: online features equal to the batch features (a synthetic day and the real
AMZN day, every column, at several read sizes), stream entries and their checks, and, against a
real ``redis-server`` started here, replay, inference, the exactly-once sink under killed
processes and a restarted Redis, dead letters, a newly published model version, and the
evaluation asset's checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import dagster as dg
import numpy as np
import polars as pl
import pytest

from lob_platform.core.columns import book_columns
from lob_platform.datasets.rows import evaluation_rows
from lob_platform.errors import ConfigError
from lob_platform.features.table import build_features
from lob_platform.features.training_window import PREVIOUS_DAYS, SAME_DAY_SPLIT
from lob_platform.lineage import FEATURES, PREDICTIONS, Warehouse
from lob_platform.models.specs import ModelSpecs
from lob_platform.sources.catalog import discover
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.storage import write_partition
from lob_platform.streaming import schema
from lob_platform.streaming.consumer import Consumer, ConsumerConfig
from lob_platform.streaming.online import OnlineFeatures
from lob_platform.streaming.producer import replay
from lob_platform.streaming.redis_server import RedisServer, connect
from lob_platform.streaming.serving import ModelChoice
from lob_platform.streaming.sink import TABLE as SINK_TABLE
from lob_platform.streaming.sink import Sink, SinkConfig, partition_folder, read_partition
from lob_platform.training import store
from lob_platform.training.fit import predict_day, train_family

from .conftest import AMZN_5, require

DAYS = ("2024-03-04", "2024-03-05")
INSTRUMENTS = ("ACME", "BOLT")
LEVELS = 5
TICK = 0.01


def quiet(message: str) -> None:
    pass


# --------------------------------------------------------------------------- online = batch

def online_columns(messages: pl.DataFrame, levels: int, read_size: int) -> dict[str, np.ndarray]:
    engine = OnlineFeatures(TICK, levels)
    arrays = {"ts_ns": messages["ts_ns"].to_numpy(), "price": messages["price"].to_numpy(), "size": messages["size"].to_numpy(),
              "event_type": messages["event_type"].cast(pl.String).to_numpy(), "side": messages["side"].cast(pl.String).to_numpy(),
              "book": messages.select(pl.col(book_columns(levels)).cast(pl.Float64).fill_null(np.nan)).to_numpy()}
    parts = [engine.update({k: v[i:i + read_size] for k, v in arrays.items()}, "day") for i in range(0, messages.height, read_size)]
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def assert_equal_to_batch(messages: pl.DataFrame, levels: int, read_size: int) -> None:
    batch = build_features(messages, TICK)
    online = online_columns(messages, levels, read_size)
    compared = [c for c in batch.columns if not c.startswith("label_") and c != "source_row"]
    assert set(compared) <= set(online), f"online features lack {set(compared) - set(online)}"
    for column in compared:
        expected = batch[column]
        if expected.dtype == pl.Boolean:
            np.testing.assert_array_equal(online[column].astype(bool), expected.to_numpy(), err_msg=column)
            continue
        if isinstance(expected.dtype, pl.Enum):
            np.testing.assert_array_equal(online[column].astype(str), expected.cast(pl.String).to_numpy(), err_msg=column)
            continue
        expected = expected.cast(pl.Float64).fill_null(np.nan).to_numpy()
        # exactly equal, NaN where the batch value is null
        np.testing.assert_array_equal(online[column].astype(np.float64), expected, err_msg=f"{column} at read size {read_size}")


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> dict:
    """Two synthetic days of two instruments, their features in a warehouse, a LightGBM model of
    the second day trained on the first (walk-forward), and that model's batch probabilities."""
    root = tmp_path_factory.mktemp("stream")
    data, warehouse = root / "data", root / "warehouse"
    generate_market(data, MarketConfig(n_days=2, lobster_tickers=INSTRUMENTS, lobster_levels=LEVELS,
                                       lobster_events_per_day=6_000, mic_products=(), order_feed_products=(), crypto_pairs=()))
    days = {(d.instrument, d.date.isoformat()): d.read() for d in discover(data)}
    store_ = Warehouse(warehouse)
    specs = ModelSpecs.tiny()
    batch = {}
    for (instrument, date), messages in days.items():
        write_partition(messages, store_.path("validated_messages", "lobster", date, instrument))
        write_partition(build_features(messages, TICK), store_.path(FEATURES, "lobster", date, instrument))
    for instrument in INSTRUMENTS:
        first = build_features(days[(instrument, DAYS[0])], TICK)
        rows = evaluation_rows(first, DAYS[0], SAME_DAY_SPLIT, 0.8, 100)
        trained, _ = train_family("lightgbm", specs, rows, "test", quiet, labels=("next_mid_up",))
        folder = store.model_folder(warehouse, "lobster", "lightgbm", instrument, DAYS[1], "next_mid_up")
        version = store.save(folder, {**trained[0].manifest, "fit_scope": PREVIOUS_DAYS}, trained[0].model)
        test = evaluation_rows(build_features(days[(instrument, DAYS[1])], TICK), DAYS[1], PREVIOUS_DAYS, 0.8, 100)
        prediction = predict_day(trained[0].manifest, trained[0].model, test, "test")
        batch[instrument] = prediction.proba[:, 1]
        write_partition(pl.DataFrame({  # the batch predictions asset's columns the evaluation compares
            "event_row": test["event_row"][prediction.rows], "label": "next_mid_up", "p_up": prediction.proba[:, 1],
            "predicted_class": np.array(prediction.classes)[prediction.proba.argmax(axis=1)], "model_version": version,
        }), store_.path(PREDICTIONS, "lobster", DAYS[1], instrument, model="lightgbm"))
    # the LSTM of ACME, for the sequence-model paths
    rows = evaluation_rows(build_features(days[("ACME", DAYS[0])], TICK), DAYS[0], SAME_DAY_SPLIT, 0.8, 100)
    lstm, _ = train_family("lstm", specs, rows, "test", quiet, labels=("next_mid_up",))
    store.save(store.model_folder(warehouse, "lobster", "lstm", "ACME", DAYS[1], "next_mid_up"),
               {**lstm[0].manifest, "fit_scope": PREVIOUS_DAYS}, lstm[0].model)
    test = evaluation_rows(build_features(days[("ACME", DAYS[1])], TICK), DAYS[1], PREVIOUS_DAYS, 0.8, 100)
    lstm_batch = predict_day(lstm[0].manifest, lstm[0].model, test, "test")
    return {"data": data, "warehouse": warehouse, "days": days, "batch_p_up": batch,
            "lstm_batch": (lstm_batch.rows, lstm_batch.proba[:, 1])}


@pytest.mark.parametrize("read_size", [7, 512, 100_000])
def test_online_features_equal_the_batch_features_over_a_whole_synthetic_day(market, read_size):
    assert_equal_to_batch(market["days"][("ACME", DAYS[1])], LEVELS, read_size)


def test_online_features_equal_the_batch_features_event_by_event(market):
    assert_equal_to_batch(market["days"][("ACME", DAYS[1])].head(1_500), LEVELS, 1)


def test_online_features_equal_the_batch_features_on_the_real_amzn_day(amzn_day_dir):
    from lob_platform import load_messages

    shutil.copy(require(AMZN_5), amzn_day_dir / "lobster")
    day = load_messages(product="AMZN", source="lobster", times=["120621.093000", "120621.160000"])
    levels = 5 if "ask_price_5" in day.columns else 1
    assert day.height > 100_000
    assert_equal_to_batch(day, levels, 512)
    assert_equal_to_batch(day.head(2_000), levels, 1)


# --------------------------------------------------------------------------- entries

def test_entries_carry_every_number_exactly_and_decode_to_the_same_arrays(market):
    messages = market["days"][("ACME", DAYS[1])].head(300).with_row_index("event_row")
    entries = [(i.encode(), {k.encode(): v.encode() for k, v in {**f, "sent_ns": "1"}.items()})
               for i, f in schema.encode_events(messages, DAYS[1], "ACME", LEVELS)]
    decoded, rejected = schema.decode_events(entries, "ACME", LEVELS, None)
    assert not rejected and decoded.event_row.tolist() == list(range(300))
    np.testing.assert_array_equal(decoded.events["book"], messages.select(pl.col(book_columns(LEVELS)).fill_null(np.nan)).to_numpy())
    np.testing.assert_array_equal(decoded.events["price"], messages["price"].to_numpy())
    ids = [schema.id_tuple(e) for e, _ in entries]
    assert ids == sorted(set(ids)), "entry ids increase with the events"


def test_malformed_entries_are_rejected_with_their_reason_and_the_rest_kept(market):
    messages = market["days"][("ACME", DAYS[1])].head(6).with_row_index("event_row")
    entries = [(i.encode(), {k.encode(): v.encode() for k, v in {**f, "sent_ns": "1"}.items()})
               for i, f in schema.encode_events(messages, DAYS[1], "ACME", LEVELS)]
    del entries[1][1][b"size"]
    entries[2][1][b"price"] = b"abc"
    entries[3][1][b"instrument"] = b"ZZZ"
    entries[4][1][b"ts_ns"] = b"5"  # before the events already read
    decoded, rejected = schema.decode_events(entries, "ACME", LEVELS, None)
    assert decoded.event_row.tolist() == [0, 5]
    reasons = {int(r.entry_id.split("-")[1]): r.reason for r in rejected}
    assert "'size' is missing" in reasons[1] and "'price' is not a number" in reasons[2]
    assert "unknown instrument 'ZZZ'" in reasons[3] and "out of time order" in reasons[4]


# --------------------------------------------------------------------------- against a real Redis

@pytest.fixture
def redis_server(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def env(market, monkeypatch, redis_server):
    monkeypatch.setenv("LOB_DATA_DIR", str(market["data"]))
    monkeypatch.setenv("LOB_WAREHOUSE_DIR", str(market["warehouse"]))
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    shutil.rmtree(market["warehouse"] / SINK_TABLE, ignore_errors=True)  # every test starts with no sink files
    return {**market, "server": redis_server, "client": connect(redis_server.url)}


def test_replay_resumes_after_the_last_event_and_never_writes_one_twice(env):
    client, messages = env["client"], env["days"][("ACME", DAYS[1])]
    first = replay(client, "lobster", "ACME", DAYS[1], messages.head(1_000), log=quiet)
    again = replay(client, "lobster", "ACME", DAYS[1], messages, log=quiet)
    assert (first.events, again.events, again.skipped) == (1_000, messages.height - 1_000, 1_000)
    stream = schema.events_stream("lobster", "ACME")
    rows = [int(f[b"event_row"]) for _, f in client.xrange(stream)]
    assert rows == list(range(messages.height))
    assert replay(client, "lobster", "ACME", DAYS[1], messages, log=quiet).events == 0
    bolt = env["days"][("BOLT", DAYS[1])]
    later = replay(client, "lobster", "BOLT", DAYS[1], bolt, log=quiet, after=schema.entry_id(bolt["ts_ns"][99], 99))
    assert later.events == bolt.height - 100
    with pytest.raises(Exception, match="later day"):
        replay(client, "lobster", "ACME", DAYS[0], env["days"][("ACME", DAYS[0])], log=quiet)


def _consumer(env, family: str = "lightgbm", name: str = "in-process") -> Consumer:
    config = ConsumerConfig("lobster", ModelChoice(family), name=name, batch=64, model_check_s=0.0)
    return Consumer(env["client"], config, env["warehouse"], lambda _: TICK, lambda _: LEVELS, quiet)


def _drain(consumer: Consumer, sink: Sink) -> None:
    """Step the consumer and the sink until three rounds in a row move nothing."""
    idle = 0
    while idle < 3:
        moved = consumer.step() + sink.step()
        idle = 0 if moved else idle + 1


def _sunk(env, instrument: str, family: str = "lightgbm") -> pl.DataFrame:
    return read_partition(partition_folder(env["warehouse"], "lobster", family, instrument, DAYS[1]))


def test_served_predictions_equal_the_batch_predictions_and_malformed_entries_go_to_the_dead_letter_stream(env):
    client, messages = env["client"], env["days"][("ACME", DAYS[1])]
    stream = schema.events_stream("lobster", "ACME")
    replay(client, "lobster", "ACME", DAYS[1], messages.head(2_000), log=quiet)
    client.xadd(stream, {"date": DAYS[1], "instrument": "ACME", "event_row": "2000", "ts_ns": "9999999999999000000", "event_type": "submit",
                         "side": "bid", "price": "1", "size": "1", "book": "", "sent_ns": "0"}, id="9999999999999-0")
    _drain(_consumer(env), Sink(client, SinkConfig("lobster", batch_rows=500, max_age_s=0.0), env["warehouse"], quiet))
    dead = client.xrange(schema.dead_letter_stream("lobster"))
    assert [f[b"entry_id"] for _, f in dead] == [b"9999999999999-0"] and b"book" in dead[0][1][b"reason"]
    sunk = _sunk(env, "ACME")
    assert sunk["event_row"].to_list() == list(range(2_000))
    np.testing.assert_array_equal(sunk["p_up"].to_numpy(), env["batch_p_up"]["ACME"][:2_000])


def test_a_newly_published_model_version_is_served_without_a_restart(env):
    client, messages = env["client"], env["days"][("ACME", DAYS[1])]
    consumer = _consumer(env)
    sink = Sink(client, SinkConfig("lobster", max_age_s=0.0), env["warehouse"], quiet)
    replay(client, "lobster", "ACME", DAYS[1], messages.head(500), log=quiet)
    _drain(consumer, sink)
    folder = store.model_folder(env["warehouse"], "lobster", "lightgbm", "ACME", DAYS[1], "next_mid_up")
    backup = {path: path.read_bytes() for path in folder.iterdir()}
    manifest, model, old = store.load(folder, {})
    model.fit(np.random.default_rng(0).normal(size=(500, len(manifest["features"]))), np.arange(500) % 2)
    try:
        new = store.save(folder, manifest, model)
        replay(client, "lobster", "ACME", DAYS[1], messages.head(1_000), log=quiet)
        _drain(consumer, sink)
    finally:
        for path, data in backup.items():  # the module's model again, for the other tests
            path.write_bytes(data)
    versions = _sunk(env, "ACME").group_by("model_version").agg(pl.col("event_row").min().alias("first"), pl.len())
    assert dict(zip(versions["model_version"], versions["first"])) == {old: 0, new: 500}


def test_a_consumer_taking_over_mid_day_rebuilds_the_lstm_window_and_predicts_as_the_batch(env):
    client, messages = env["client"], env["days"][("ACME", DAYS[1])]
    sink = Sink(client, SinkConfig("lobster", max_age_s=0.0), env["warehouse"], quiet)
    first = _consumer(env, "lstm", "first")
    replay(client, "lobster", "ACME", DAYS[1], messages.head(1_000), log=quiet)
    _drain(first, sink)
    first.close()  # gives its instruments back
    replay(client, "lobster", "ACME", DAYS[1], messages.head(2_000), log=quiet)
    _drain(_consumer(env, "lstm", "second"), sink)
    rows, batch_p_up = env["lstm_batch"]
    sunk = _sunk(env, "ACME", "lstm")
    assert sunk["event_row"].to_list() == rows[rows < 2_000].tolist() == list(range(99, 2_000))
    np.testing.assert_allclose(sunk["p_up"].to_numpy(), batch_p_up[rows < 2_000], atol=1e-6)


def _process(arguments: list[str], env) -> subprocess.Popen:
    variables = {**os.environ, "REDIS_URL": env["server"].url, "LOB_DATA_DIR": str(env["data"]),
                 "LOB_WAREHOUSE_DIR": str(env["warehouse"])}
    log = open(env["warehouse"].parent / f"{arguments[0]}-{time.monotonic_ns()}.log", "w")  # read it when a test fails
    return subprocess.Popen([sys.executable, "-m", "lob_platform", "stream", *arguments], env=variables,
                            stdout=log, stderr=subprocess.STDOUT)


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _replay_slowly(env, instruments, seconds: float) -> threading.Thread:
    """Replay the day of each instrument paced to take about ``seconds`` (in a thread)."""
    def run(instrument):
        messages = env["days"][(instrument, DAYS[1])]
        span = (messages["ts_ns"][-1] - messages["ts_ns"][0]) / 1e9
        replay(connect(env["server"].url), "lobster", instrument, DAYS[1], messages, speed=span / seconds, log=quiet)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in instruments]
    for thread in threads:
        thread.start()
    return threads


def _assert_exactly_once_and_equal_to_batch(env, instrument):
    sunk = _sunk(env, instrument)
    expected = env["days"][(instrument, DAYS[1])].height
    assert sunk["event_row"].to_list() == list(range(expected)), "every event predicted once, none twice"
    np.testing.assert_array_equal(sunk["p_up"].to_numpy(), env["batch_p_up"][instrument])


@pytest.mark.slow
def test_killed_consumers_and_sink_and_a_restarted_redis_lose_nothing_and_duplicate_nothing(env):
    """Two consumer processes share the two instruments; one consumer is killed (SIGKILL) and
    restarted, then the sink, then Redis itself restarts, all while the day streams in."""
    client = env["client"]
    serve = [["serve", "--venue", "lobster", "--name", f"consumer-{i}", "--batch", "64"] for i in (1, 2)]
    sink_args = ["sink", "--venue", "lobster", "--batch-rows", "200", "--max-age", "0.05", "--name", "sink-1"]
    consumers, sink = [_process(args, env) for args in serve], _process(sink_args, env)
    folder = partition_folder(env["warehouse"], "lobster", "lightgbm", "ACME", DAYS[1])
    streamed = lambda: sum(client.xlen(schema.predictions_stream("lobster", i, "lightgbm")) for i in INSTRUMENTS)  # noqa: E731
    try:
        _wait(lambda: client.exists("lob:lobster:sink") and client.hlen("lob:lobster:consumers:lightgbm") == 2, 60, "start")
        threads = _replay_slowly(env, INSTRUMENTS, seconds=5)
        _wait(lambda: all(client.exists(schema.predictions_stream("lobster", i, "lightgbm")) for i in INSTRUMENTS), 60,
              "predictions of both instruments")
        owners = {i: client.get(f"lob:lobster:{i}:owner:lightgbm") for i in INSTRUMENTS}
        assert set(owners.values()) == {b"consumer-1", b"consumer-2"}, f"one instrument each: {owners}"
        _wait(lambda: streamed() > 3_000, 60, "the first predictions")
        consumers[0].send_signal(signal.SIGKILL)
        consumers[0].wait()
        consumers[0] = _process(serve[0], env)
        _wait(lambda: len(list(folder.glob("part-*"))) >= 3 and streamed() > 6_000, 60, "sink files")
        sink.send_signal(signal.SIGKILL)
        sink.wait()
        sink = _process(sink_args, env)
        _wait(lambda: streamed() > 8_000, 60, "more predictions")
        env["server"].restart(down_for_s=1.0)
        for thread in threads:
            thread.join(90)
        for instrument in INSTRUMENTS:
            height = env["days"][(instrument, DAYS[1])].height
            _wait(lambda: _sunk(env, instrument).height >= height, 90, f"{instrument} in parquet")
        time.sleep(0.3)  # anything doubled would land now
    finally:
        for process in (*consumers, sink):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    for instrument in INSTRUMENTS:
        _assert_exactly_once_and_equal_to_batch(env, instrument)
    assert connect(env["server"].url).xlen(schema.dead_letter_stream("lobster")) == 0


# --------------------------------------------------------------------------- the evaluation asset

def _evaluate(env) -> dg.ExecuteInProcessResult:
    from lob_platform.core.settings import load_settings
    from lob_platform.defs.resources import WarehouseIOManager
    from lob_platform.defs.streaming import build_streaming_assets
    from lob_platform.sources.registry import venue_named

    settings = load_settings()
    _, asset = build_streaming_assets(venue_named("lobster"), settings)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("lobster_instruments", ["ACME"])
    return dg.materialize([asset], partition_key=dg.MultiPartitionKey({"date": DAYS[1], "instrument": "ACME"}),
                          instance=instance, resources={"io_manager": WarehouseIOManager()}, raise_on_error=False)


def test_the_stream_evaluation_passes_a_complete_stream_and_fails_a_missing_or_doubled_event(env):
    client, messages = env["client"], env["days"][("ACME", DAYS[1])]
    replay(client, "lobster", "ACME", DAYS[1], messages, log=quiet)
    consumer = _consumer(env)
    _drain(consumer, Sink(client, SinkConfig("lobster", batch_rows=1_000, max_age_s=0.0), env["warehouse"], quiet))
    result = _evaluate(env)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["every_event_once"].passed and checks["agrees_with_batch"].passed
    evaluation = pl.read_parquet(Warehouse(env["warehouse"]).path("stream_evaluation", "lobster", DAYS[1], "ACME"))
    assert evaluation["agreement"].item() == 1.0 and evaluation["missing"].item() == 0
    assert evaluation["accuracy"].item() > 0.6, "the model learnt the planted signal"

    folder = partition_folder(env["warehouse"], "lobster", "lightgbm", "ACME", DAYS[1])
    files = sorted(folder.glob("part-*"))
    doubled, missing = pl.read_parquet(files[1]).height, pl.read_parquet(files[2]).height
    (folder / files[1].name.replace("part-", "part-9")).write_bytes(files[1].read_bytes())
    files[2].unlink()
    checks = {c.check_name: c for c in _evaluate(env).get_asset_check_evaluations()}
    assert not checks["every_event_once"].passed
    text = str(checks["every_event_once"].metadata)
    assert f"missing {missing}," in text and f"duplicated {doubled}," in text


def test_a_family_the_stream_cannot_serve_is_refused_by_name():
    with pytest.raises(ConfigError, match="'mamba_tpp' is not served on the streaming path.*lightgbm"):
        ModelChoice("mamba_tpp", "next_event")  # the TPP predicts the next event, not the next mid move
