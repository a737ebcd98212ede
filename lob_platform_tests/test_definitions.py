"""The Dagster wiring: the graph itself (snapshot), definitions built in-process for any venue set,
partitions with and without data, blocking checks on synthetic and real corrupted days, idempotent
reruns and the new-file sensor."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lob_platform.core.tables import MESSAGES
from lob_platform.defs import build_definitions
from lob_platform.defs.automation import ingested_days, plan_new_files
from lob_platform.defs.checks import pandera_check
from lob_platform.defs.partitions import instruments_of
from lob_platform.defs.validated import rule_names
from lob_platform.errors import ConfigError
from lob_platform.sources.catalog import discover
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.validation.schemas import table_schema
from lob_platform_tests.conftest import AMZN_1, require
from lob_platform_tests.helpers import CRYPTO_FEED, VENUES_TOML, corrupt, cross_book, day, messages, replace_line, warehouse_path

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"
MONDAY = "2024-03-04"
ONE_DAY = MarketConfig(start_date=MONDAY, n_days=1, lobster_tickers=("ACME",), lobster_levels=5, lobster_events_per_day=3_000,
                       mic_products=(), order_feed_products=(), crypto_pairs=())
INGEST = ["lobster/raw_messages", "lobster/validated_messages", "lobster/rejected_messages", "lobster/validation_reports",
          "lobster/features"]


def describe_graph(defs: dg.Definitions) -> str:
    graph = defs.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = type(node.partitions_def).__name__ if node.partitions_def else "-"
        parents = ",".join(sorted(p.to_user_string() for p in node.parent_keys))
        lines.append(f"asset {key.to_user_string()} partitions={partitions} parents=[{parents}]")
    for check in sorted(graph.asset_check_keys, key=lambda c: c.to_user_string()):
        lines.append(f"check {check.to_user_string()} blocking={graph.get_check_spec(check).blocking}")
    lines += [f"job {job.name}" for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name) if not job.name.startswith("__")]
    lines += [f"sensor {sensor.name}" for sensor in defs.sensors]
    lines += [f"schedule {schedule.name} {schedule.cron_schedule} {schedule.execution_timezone}" for schedule in defs.schedules]
    return "\n".join(lines) + "\n"


def test_graph_matches_snapshot(data_dir):
    """A change to assets, checks, jobs or sensors shows up here for review.
    Regenerate with UPDATE_SNAPSHOTS=1 after an intended change."""
    described = describe_graph(build_definitions(load_venues(data_dir)))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(described)
    assert described == SNAPSHOT.read_text()


def test_definitions_load_and_validate(data_dir):
    dg.Definitions.validate_loadable(build_definitions(load_venues(data_dir)))


def test_code_location_reads_nothing_on_import_and_names_a_broken_venues_file(data_dir):
    (data_dir / "venues.toml").write_text('[mycoin]\nfilename_template = "{product}_{date}.csv"\ncolour = "red"\n')
    import lob_platform.definitions as location

    importlib.reload(location)  # importing does not read data/venues.toml
    with pytest.raises(ConfigError, match=r"venues.toml, line 3: \[mycoin\] field 'colour' is not an ExchangeConfig field"):
        location.defs()


def test_graph_for_any_venue_set_is_built_in_process(data_dir):
    (data_dir / "venues.toml").write_text(VENUES_TOML)
    venues = [v for v in load_venues(data_dir) if v.name in ("lobster", "mycoin")]
    keys = {k.to_user_string() for k in build_definitions(venues).resolve_asset_graph().get_all_asset_keys()}
    # mycoin's messages carry order ids, so its book is rebuilt and it gets labels and models too
    assert {"mycoin/raw_messages", "mycoin/features", "mycoin/bin_edges", "mycoin/labels", "mycoin/lightgbm/trained_models",
            "lobster/labels"} <= keys
    assert not any(k.startswith(("mic/", "crypto/")) for k in keys)


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def ingest(instance, data_dir: Path, partition=day(MONDAY), run_config=None, selection=INGEST) -> dg.ExecuteInProcessResult:
    """One lobster instrument-day through the real ingest job, as the sensor requests it."""
    defs = build_definitions(load_venues(data_dir))
    instance.add_dynamic_partitions(instruments_of("lobster").name, [partition.keys_by_dimension["instrument"]])
    return defs.resolve_job_def("ingest_lobster").execute_in_process(
        partition_key=partition, instance=instance, run_config=run_config, raise_on_error=False,
        asset_selection=[dg.AssetKey.from_user_string(k) for k in selection])


@pytest.fixture
def synthetic_pair(tmp_path) -> tuple[Path, Path]:
    """One synthetic LOBSTER day (ACME, 5 levels) as a message / orderbook CSV pair, outside the data root."""
    paths = generate_market(tmp_path / "generated", ONE_DAY)
    return next(p for p in paths if "_message_" in p.name), next(p for p in paths if "_orderbook_" in p.name)


def test_synthetic_day_materializes_with_every_check_passing(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir)
    result = ingest(instance, data_dir)
    assert result.success
    checks = {c.asset_check_key.to_user_string(): c.passed for c in result.get_asset_check_evaluations()}
    venue = next(v for v in load_venues(data_dir) if v.name == "lobster")
    expected = [f"lobster/validated_messages:{n}" for n in rule_names(venue) + ["pandera_schema"]]
    assert {name: checks[name] for name in expected} == dict.fromkeys(expected, True)
    assert checks["lobster/raw_messages:pandera_schema"] and checks["lobster/rejected_messages:pandera_schema"]
    raw_meta = result.asset_materializations_for_node("lobster__raw_messages")[0].metadata
    rows = pl.read_parquet(warehouse_path("raw_messages", MONDAY)).height
    assert raw_meta["rows"].value == rows == pl.read_parquet(warehouse_path("validated_messages", MONDAY)).height
    assert raw_meta["source_file"].value.endswith("ACME_2024-03-04_34200000_57600000_message_5.csv")
    assert pl.read_parquet(warehouse_path("rejected_messages", MONDAY)).height == 0
    assert warehouse_path("features", MONDAY).exists()


def test_corrupted_day_is_blocked_but_nothing_is_lost(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir, book_edit=replace_line(1234, cross_book))
    result = ingest(instance, data_dir)
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    # the changed orderbook row no longer follows its message either (and only that row breaks it)
    assert [c.check_name for c in failed] == ["book_not_crossed", "book_follows_messages"]
    assert [c.metadata["rows_breaking_rule"].value for c in failed] == [1, 1]
    assert [c.metadata["first_source_rows"].value for c in failed] == ["[1234]", "[1234]"]
    assert not warehouse_path("features", MONDAY).exists()  # the blocking check stopped downstream
    rejected = pl.read_parquet(warehouse_path("rejected_messages", MONDAY))
    assert rejected.select("rules", "source_row").rows() == [("book_not_crossed,book_follows_messages", 1234)]
    assert rejected["source_file"][0].endswith("ACME_2024-03-04_34200000_57600000_message_5.csv")
    raw = pl.read_parquet(warehouse_path("raw_messages", MONDAY))
    assert pl.read_parquet(warehouse_path("validated_messages", MONDAY)).height == raw.height - 1
    report = pl.read_parquet(warehouse_path("validation_reports", MONDAY)).row(0, named=True)
    assert (report["passed"], report["failed_checks"], report["rejected_rows"]) == (False, "book_not_crossed,book_follows_messages", 1)


def test_tolerance_lets_a_day_with_few_bad_rows_through(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir, book_edit=replace_line(1234, cross_book))
    result = ingest(instance, data_dir, run_config={"ops": {"lobster_validate": {"config": {"max_rejected_fraction": 0.001}}}})
    assert result.success
    assert warehouse_path("features", MONDAY).exists()
    assert pl.read_parquet(warehouse_path("rejected_messages", MONDAY)).height == 1


def test_day_without_data_is_skipped_not_failed(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir)
    result = ingest(instance, data_dir, partition=day("2024-03-09"))  # a Saturday
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert not warehouse_path("raw_messages", "2024-03-09").exists()


def test_unregistered_instrument_is_refused(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir)
    defs = build_definitions(load_venues(data_dir))
    with pytest.raises(dg.DagsterUnknownPartitionError, match="NOPE"):
        defs.resolve_job_def("ingest_lobster").execute_in_process(partition_key=day(MONDAY, "NOPE"), instance=instance)


def test_rerun_gives_identical_partitions(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir)
    ingest(instance, data_dir)
    tables = ("raw_messages", "validated_messages", "rejected_messages", "features")
    first = {t: warehouse_path(t, MONDAY).read_bytes() for t in tables}
    ingest(instance, data_dir)
    assert {t: warehouse_path(t, MONDAY).read_bytes() for t in tables} == first


def test_real_day_materializes_with_every_check_passing(data_dir, instance):
    import shutil

    (data_dir / "lobster").mkdir()
    shutil.copy(require(AMZN_1), data_dir / "lobster")
    result = ingest(instance, data_dir, partition=day("2012-06-21", "AMZN"))
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations() if c.check_name != "label_balance")
    raw_meta = result.asset_materializations_for_node("lobster__raw_messages")[0].metadata
    assert raw_meta["rows"].value == 57_515 and raw_meta["first_event_utc"].value.startswith("2012-06-21T13:30")
    assert raw_meta["source_file"].value.endswith("AMZN_2012-06-21_1.zip!AMZN_2012-06-21_34200000_57600000_message_1.csv")


def test_sensor_registers_instruments_and_requests_each_new_file_once(synthetic_pair, data_dir):
    corrupt(synthetic_pair, data_dir)
    defs = build_definitions(load_venues(data_dir))
    sensor = defs.get_sensor_def("new_raw_files")
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partitions_def_name for r in first.dynamic_partitions_requests] == ["lobster_instruments"]
        assert list(first.dynamic_partitions_requests[0].partition_keys) == ["ACME"]
        assert [(r.job_name, r.partition_key) for r in first.run_requests] == [("ingest_lobster", day(MONDAY))]
        # the only day of its instrument: its window is settled, so the whole chain runs at once
        assert "lobster/labels" in {k.to_user_string() for k in first.run_requests[0].asset_selection}
        again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        assert again.run_requests == []
        message = data_dir / "lobster" / synthetic_pair[0].name
        os.utime(message, ns=(message.stat().st_atime_ns, message.stat().st_mtime_ns + 10**9))
        redelivered = sensor(dg.build_sensor_context(instance=instance, cursor=again.cursor, definitions=defs))
        assert len(redelivered.run_requests) == 1


def test_pandera_asset_check_passes_and_fails_with_the_failure_cases():
    key = dg.AssetKey(["lobster", "raw_messages"])
    schema = table_schema(MESSAGES, 2, 0.01, with_rules=False)
    assert pandera_check(messages(), schema, key).passed
    failed = pandera_check(messages().with_columns(pl.col("order_id").cast(pl.Float64)), schema, key)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert "order_id" in failed.metadata["failures"].value


def test_sensor_skips_days_already_ingested_but_reingests_changed_files(synthetic_pair, data_dir, instance):
    corrupt(synthetic_pair, data_dir)
    days = discover(data_dir)
    known = {"lobster": {"ACME"}, "mic": set(), "crypto": set()}
    key = f"lobster|ACME|{MONDAY}"
    _, fresh, cursor = plan_new_files(days, {}, known, ingested={key})
    assert fresh == []  # the main job already ingested it
    _, fresh, _ = plan_new_files(days, {key: cursor[key] - 1}, known, ingested={key})
    assert [d.instrument for d in fresh] == ["ACME"]  # the file changed since
    assert ingested_days(instance, load_venues(data_dir)) == set()
    ingest(instance, data_dir)
    assert ingested_days(instance, load_venues(data_dir)) == {key}


def test_declared_venue_becomes_assets_and_runs_in_process(data_dir, instance):
    (data_dir / "venues.toml").write_text(VENUES_TOML)
    (data_dir / "mycoin").mkdir()
    (data_dir / "mycoin" / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED)
    defs = build_definitions(load_venues(data_dir))
    instance.add_dynamic_partitions("mycoin_instruments", ["BTCUSD"])
    result = defs.resolve_job_def("ingest_mycoin").execute_in_process(
        partition_key=day("2020-06-01", "BTCUSD"), instance=instance,
        asset_selection=[dg.AssetKey(["mycoin", t]) for t in ("raw_messages", "validated_messages", "rejected_messages",
                                                               "validation_reports", "features")])
    assert result.success
    validated = pl.read_parquet(warehouse_path("validated_messages", "2020-06-01", "mycoin", "BTCUSD"))
    # the book rebuilt from the order ids: created, changed to 0.2, the bid deleted
    assert validated.select("bid_price_1", "bid_size_1", "ask_price_1", "ask_size_1").rows() == [
        (9500.5, 0.5, None, 0.0), (9500.5, 0.5, 9501.0, 0.25), (9500.5, 0.5, 9501.0, 0.2), (None, 0.0, 9501.0, 0.2)]
    assert validated["book_crossed"].to_list() == [False] * 4
    features = pl.read_parquet(warehouse_path("features", "2020-06-01", "mycoin", "BTCUSD"))
    assert features["mid"].to_list()[1:3] == [9500.75, 9500.75]
