"""The Dagster wiring: the graph itself (snapshot), partitions with and without data, blocking
checks on real and corrupted days, idempotent reruns and the new-file sensor."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lob_platform.defs.automation import new_raw_files, plan_new_files
from lob_platform.defs.partitions import instruments
from lob_platform.defs.raw import raw_assets, raw_checks
from lob_platform.defs.resources import WarehouseIOManager
from lob_platform.defs.checks import pandera_check
from lob_platform.defs.validated import rule_names, validated_assets
from lob_platform.definitions import defs
from lob_platform.sources.catalog import BUILT_IN
from lob_platform_tests.test_lobster_reader import _corrupt, _replace_line

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.txt"
AMZN_DAY = dg.MultiPartitionKey({"date": "2012-06-21", "instrument": "AMZN"})
LOBSTER_RAW, LOBSTER_VALIDATE = raw_assets[0], validated_assets[0]


def describe_graph() -> str:
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
    return "\n".join(lines) + "\n"


def test_graph_matches_snapshot():
    """A change to assets, checks, jobs or sensors shows up here for review.
    Regenerate with UPDATE_SNAPSHOTS=1 after an intended change."""
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(describe_graph())
    assert describe_graph() == SNAPSHOT.read_text()


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def downstream_of_validated():
    @dg.asset(deps=[dg.AssetKey(["lobster", "validated_messages"])], partitions_def=LOBSTER_RAW.partitions_def)
    def consumer() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return consumer


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        test_instance.add_dynamic_partitions(instruments["lobster"].name, ["AMZN"])
        yield test_instance


def materialize(instance, partition=AMZN_DAY, run_config=None):
    return dg.materialize(
        [LOBSTER_RAW, raw_checks[0], LOBSTER_VALIDATE, downstream_of_validated()],
        partition_key=partition,
        instance=instance,
        resources={"io_manager": WarehouseIOManager()},
        run_config=run_config,
        raise_on_error=False,
    )


def _warehouse(table: str, instrument="AMZN", date="2012-06-21") -> Path:
    return Path(os.environ["LOB_WAREHOUSE_DIR"], table, "venue=lobster", f"instrument={instrument}", f"date={date}", "part-0.parquet")


def test_real_day_materializes_with_every_check_passing(amzn_day_dir, instance):
    result = materialize(instance)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert sorted(c.asset_check_key.to_user_string() for c in checks) == [
        "lobster/raw_messages:pandera_schema", "lobster/rejected_messages:pandera_schema",
        *[f"lobster/validated_messages:{name}" for name in sorted(rule_names(BUILT_IN[0]) + ["pandera_schema"])]]
    assert all(c.passed for c in checks)
    raw_meta = result.asset_materializations_for_node("lobster__raw_messages")[0].metadata
    assert raw_meta["rows"].value == 57_515 and raw_meta["source_file"].value.endswith("AMZN_2012-06-21_1.zip!AMZN_2012-06-21_34200000_57600000_message_1.csv")
    assert raw_meta["first_event_utc"].value.startswith("2012-06-21T13:30")
    assert pl.read_parquet(_warehouse("validated_messages")).height == 57_515
    assert pl.read_parquet(_warehouse("rejected_messages")).height == 0
    assert "consumer" in [e.asset_key.path[-1] for e in result.get_asset_materialization_events()]


def test_corrupted_day_is_blocked_but_nothing_is_lost(amzn_csv_pair, data_dir, instance):
    def cross(line):
        ask, ask_size, _, bid_size = line.strip().split(",")
        return f"{ask},{ask_size},{int(ask) + 100},{bid_size}\n"

    _corrupt(amzn_csv_pair, data_dir, book_edit=_replace_line(4321, cross))
    result = materialize(instance)
    assert not result.success
    failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert [c.check_name for c in failed] == ["book_not_crossed"]
    assert failed[0].metadata["rows_breaking_rule"].value == 1
    assert failed[0].metadata["first_source_rows"].value == "[4321]"
    materialized = [e.asset_key.path[-1] for e in result.get_asset_materialization_events()]
    assert "consumer" not in materialized  # the blocking check stopped downstream
    rejected = pl.read_parquet(_warehouse("rejected_messages"))
    assert rejected.select("rules", "source_row").rows() == [("book_not_crossed", 4321)]
    assert rejected["source_file"][0].endswith("AMZN_2012-06-21_34200000_57600000_message_1.csv")
    assert pl.read_parquet(_warehouse("validated_messages")).height == 57_514
    report = pl.read_parquet(_warehouse("validation_reports")).row(0, named=True)
    assert (report["passed"], report["failed_checks"], report["rejected_rows"]) == (False, "book_not_crossed", 1)


def test_tolerance_lets_a_day_with_few_bad_rows_through(amzn_csv_pair, data_dir, instance):
    def cross(line):
        ask, ask_size, _, bid_size = line.strip().split(",")
        return f"{ask},{ask_size},{int(ask) + 100},{bid_size}\n"

    _corrupt(amzn_csv_pair, data_dir, book_edit=_replace_line(4321, cross))
    config = {"ops": {"lobster_validate": {"config": {"max_rejected_fraction": 0.001}}}}
    result = materialize(instance, run_config=config)
    assert result.success
    assert "consumer" in [e.asset_key.path[-1] for e in result.get_asset_materialization_events()]
    assert pl.read_parquet(_warehouse("rejected_messages")).height == 1


def test_day_without_data_is_skipped_not_failed(amzn_day_dir, instance):
    saturday = dg.MultiPartitionKey({"date": "2012-06-23", "instrument": "AMZN"})
    result = materialize(instance, partition=saturday)
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert not _warehouse("raw_messages", date="2012-06-23").exists()


def test_unregistered_instrument_is_refused(amzn_day_dir, instance):
    with pytest.raises(dg.DagsterUnknownPartitionError, match="NOPE"):
        materialize(instance, partition=dg.MultiPartitionKey({"date": "2012-06-21", "instrument": "NOPE"}))


def test_rerun_gives_identical_partitions(amzn_day_dir, instance):
    materialize(instance)
    first = {t: _warehouse(t).read_bytes() for t in ("raw_messages", "validated_messages", "rejected_messages")}
    materialize(instance)
    assert {t: _warehouse(t).read_bytes() for t in first} == first


def test_sensor_registers_instruments_and_requests_each_new_file_once(amzn_day_dir):
    with dg.instance_for_test() as instance:
        first = new_raw_files(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partitions_def_name for r in first.dynamic_partitions_requests] == ["lobster_instruments"]
        assert list(first.dynamic_partitions_requests[0].partition_keys) == ["AMZN"]
        assert [(r.job_name, r.partition_key) for r in first.run_requests] == [("ingest_lobster", AMZN_DAY)]
        assert first.run_requests[0].run_key.startswith("lobster|AMZN|2012-06-21|")
        again = new_raw_files(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        assert again.run_requests == []
        archive = next((amzn_day_dir / "lobster").glob("*.zip"))
        os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
        redelivered = new_raw_files(dg.build_sensor_context(instance=instance, cursor=again.cursor, definitions=defs))
        assert len(redelivered.run_requests) == 1


def test_pandera_asset_check_passes_and_fails_with_the_failure_cases():
    from lob_platform.validation.schemas import table_schema
    from lob_platform_tests.test_rules import messages

    key = dg.AssetKey(["lobster", "raw_messages"])
    schema = table_schema("messages", 2, 0.01, with_rules=False)
    assert pandera_check(messages(), schema, key).passed
    failed = pandera_check(messages().with_columns(pl.col("order_id").cast(pl.Float64)), schema, key)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert "order_id" in failed.metadata["failures"].value


def test_sensor_skips_days_already_ingested_but_reingests_changed_files(amzn_day_dir):
    from lob_platform.sources.catalog import discover

    days = discover()
    known = {"lobster": {"AMZN"}, "mic": set(), "crypto": set()}
    _, fresh, cursor = plan_new_files(days, {}, known, ingested={"lobster|AMZN|2012-06-21"})
    assert fresh == []  # the main job already ingested it
    _, fresh, _ = plan_new_files(days, {"lobster|AMZN|2012-06-21": cursor["lobster|AMZN|2012-06-21"] - 1}, known,
                                 ingested={"lobster|AMZN|2012-06-21"})
    assert [d.instrument for d in fresh] == ["AMZN"]  # the file changed since


def test_sensor_sees_main_job_ingests(amzn_day_dir, instance):
    from lob_platform.defs.automation import ingested_days

    assert ingested_days(instance) == set()
    materialize(instance)
    assert ingested_days(instance) == {"lobster|AMZN|2012-06-21"}


def test_sensor_skips_venues_declared_after_load(amzn_day_dir):
    from lob_platform_tests.test_venues import CRYPTO_FEED, VENUES_TOML

    (amzn_day_dir / "venues.toml").write_text(VENUES_TOML)
    (amzn_day_dir / "mycoin").mkdir()
    (amzn_day_dir / "mycoin" / "BTCUSD_20200601.csv").write_text(CRYPTO_FEED)
    with dg.instance_for_test() as instance:
        result = new_raw_files(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [r.job_name for r in result.run_requests] == ["ingest_lobster"]  # mycoin waits for a reload
