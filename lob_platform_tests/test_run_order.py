"""Fits and panels do not depend on run order: the days of a synthetic market materialized in date
order, in reverse, shuffled, or concurrently by the main job, then brought up to date by the
platform's own sensors (as the daemon does under `dagster dev`; no manual rerun), give
byte-identical warehouses. A late-arriving earlier day and a re-delivered day that now fails its
checks leave a consistent state, and the UI says why."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lob_platform.defs import build_definitions
from lob_platform.lineage import InputsNotReady
from lob_platform.main_job import project_message
from lob_platform.sources.catalog import discover
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform_tests.helpers import cross_book, day, replace_line, warehouse_files, warehouse_table

pytestmark = pytest.mark.slow

MONDAY, TUESDAY, WEDNESDAY = "2024-03-04", "2024-03-05", "2024-03-06"
MARKET = MarketConfig(start_date=MONDAY, n_days=3, lobster_tickers=("ACME",), lobster_levels=5, lobster_events_per_day=2_000,
                      mic_products=(), order_feed_products=(), crypto_pairs=("BTC-USDT",), crypto_exchanges=("binance_perp", "binance_spot"),
                      crypto_hours_per_day=0.25)


MODELS = "lightgbm,lstm"  # a tabular family and a torch one: their bytes too must not depend on run order


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("order") / "data"
    generate_market(root, MARKET)
    return root


@pytest.fixture
def fresh(market, tmp_path, monkeypatch):
    """The market's data root, an empty warehouse and an empty Dagster instance."""
    monkeypatch.setenv("LOB_DATA_DIR", str(market))
    monkeypatch.setenv("LOB_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    monkeypatch.setenv("LOB_MODEL_FAMILIES", MODELS)
    monkeypatch.setenv("LOB_BACKTESTS", "0")  # pure functions of the predictions (test_model_assets runs them)
    with dg.instance_for_test() as instance:
        defs = build_definitions(load_venues(market))
        for venue in ("lobster", "crypto"):
            instance.add_dynamic_partitions(f"{venue}_instruments", sorted({d.instrument for d in discover(market, venue)}))
        yield defs, instance


def execute(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(request.job_name).execute_in_process(
        partition_key=request.partition_key, instance=instance, raise_on_error=False, asset_selection=request.asset_selection)


def materialize_everything(defs, instance, partition) -> dg.ExecuteInProcessResult:
    """What a user runs by hand: every asset of the day's job for one partition."""
    job = "build_crypto_panel" if "|" not in str(partition) else f"ingest_{partition_venue(partition)}"
    return defs.resolve_job_def(job).execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)


def partition_venue(partition) -> str:
    return "crypto" if "." in partition.keys_by_dimension["instrument"] else "lobster"


def settle(defs, instance) -> int:
    """What the daemon does: evaluate the automation sensors and run what they request, until they request nothing."""
    seen, runs = set(), 0
    while True:
        requests = [r for name in ("refit_training_windows", "rebuild_crypto_panels")
                    for r in defs.get_sensor_def(name)(dg.build_sensor_context(instance=instance, definitions=defs)).run_requests
                    if r.run_key not in seen]
        if not requests:
            return runs
        for request in requests:
            seen.add(request.run_key)
            assert execute(defs, instance, request).success, request
            runs += 1


def every_partition(market: Path) -> list:
    days = [(d.date.isoformat(), d.instrument) for d in discover(market)]
    return [day(date, instrument) for date, instrument in days] + sorted({date for date, _ in days})


def materialize_in(order: list, defs, instance) -> list[dg.ExecuteInProcessResult]:
    return [materialize_everything(defs, instance, partition) for partition in order]


@pytest.fixture(scope="module")
def reference(market, tmp_path_factory) -> dict[str, bytes]:
    """The warehouse after materializing in date order and settling."""
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("LOB_DATA_DIR", str(market))
        patch.setenv("LOB_WAREHOUSE_DIR", str(tmp_path_factory.mktemp("reference")))
        patch.setenv("LOB_MODEL_FAMILIES", MODELS)
        patch.setenv("LOB_BACKTESTS", "0")
        defs = build_definitions(load_venues(market))
        for venue in ("lobster", "crypto"):
            instance.add_dynamic_partitions(f"{venue}_instruments", sorted({d.instrument for d in discover(market, venue)}))
        order = sorted(every_partition(market), key=lambda p: (str(p).split("|")[0], "|" not in str(p)))
        assert all(result.success for result in materialize_in(order, defs, instance))
        settle(defs, instance)
        files = warehouse_files()
    assert {"bin_edges", "event_tokens", "labels", "panel_5s"} <= {path.split("/")[0] for path in files}
    return files


def test_reference_fits_learn_from_the_catalogue_days_before(reference, fresh):
    edges = {path: pl.read_parquet(content) for path, content in reference.items() if path.startswith("bin_edges/")}
    scopes = {path.split("date=")[1][:10]: (frame["fit_scope"][0], frame["fit_dates"][0]) for path, frame in edges.items()}
    assert scopes == {MONDAY: ("same_day_split", MONDAY), TUESDAY: ("previous_days", MONDAY),
                      WEDNESDAY: ("previous_days", f"{MONDAY},{TUESDAY}")}


def test_reverse_order_waits_names_what_it_waits_for_and_settles_identically(market, fresh, reference):
    defs, instance = fresh
    results = materialize_in(list(reversed(every_partition(market))), defs, instance)
    waiting = [project_message(e.step_failure_data.error) for r in results for e in r.all_events if e.is_step_failure]
    assert any(f"lobster/validation_reports and features {TUESDAY}|ACME" in m and "not ready" in m for m in waiting)
    assert any("the panel of" in m and "no validation outcome yet" in m for m in waiting)
    assert settle(defs, instance) > 0
    assert warehouse_files() == reference


def test_a_shuffled_order_settles_identically(market, fresh, reference):
    """One shuffle beside date order and reverse order (a second seed added 40 s and no other path)."""
    defs, instance = fresh
    order = every_partition(market)
    random.Random(1).shuffle(order)
    materialize_in(order, defs, instance)
    settle(defs, instance)
    assert warehouse_files() == reference


def test_concurrent_runs_of_the_main_job_settle_identically(market, fresh, reference, tmp_path, monkeypatch):
    from lob_platform.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert main(["run"]) == 0
    assert {k: v for k, v in warehouse_files().items()} == reference


def test_a_late_earlier_day_makes_later_fits_stale_and_they_are_refit(market, fresh, reference, tmp_path):
    defs, instance = fresh
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    monday_files = [p for p in (market / "lobster").iterdir() if MONDAY in p.name]
    for path in monday_files:
        shutil.move(path, hidden / path.name)
    try:
        defs = build_definitions(load_venues(market))
        for date in (TUESDAY, WEDNESDAY):
            assert materialize_everything(defs, instance, day(date)).success
        settle(defs, instance)
        assert warehouse_table("bin_edges", TUESDAY)["fit_scope"][0] == "same_day_split"  # no earlier day known yet
    finally:
        for path in monday_files:
            shutil.move(hidden / path.name, path)
    sensor = defs.get_sensor_def("new_raw_files")
    for request in sensor(dg.build_sensor_context(instance=instance, definitions=defs)).run_requests:
        assert execute(defs, instance, request).success
    for partition in [p for p in every_partition(market) if "|" not in str(p) or partition_venue(p) == "crypto"]:
        materialize_everything(defs, instance, partition)
    settle(defs, instance)
    assert warehouse_table("bin_edges", TUESDAY)["fit_dates"][0] == MONDAY
    assert warehouse_files() == reference


def test_a_redelivered_day_that_fails_leaves_nothing_derived_from_its_old_delivery(market, fresh, tmp_path, monkeypatch):
    defs, instance = fresh
    data = tmp_path / "data"
    shutil.copytree(market, data)
    monkeypatch.setenv("LOB_DATA_DIR", str(data))
    defs = build_definitions(load_venues(data))
    for partition in [p for p in every_partition(data) if "|" in str(p) and partition_venue(p) == "lobster"]:
        materialize_everything(defs, instance, partition)
    settle(defs, instance)
    assert warehouse_table("bin_edges", TUESDAY)["fit_dates"][0] == MONDAY
    sensor = defs.get_sensor_def("new_raw_files")
    cursor = sensor(dg.build_sensor_context(instance=instance, definitions=defs)).cursor  # what the daemon has seen
    book = next((data / "lobster").glob(f"ACME_{MONDAY}_*_orderbook_5.csv"))
    lines = book.read_text().splitlines(keepends=True)
    book.write_text("".join(replace_line(100, cross_book)(lines)))
    os.utime(book, ns=(book.stat().st_atime_ns, book.stat().st_mtime_ns + 10**9))

    requests = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)).run_requests
    assert [str(r.partition_key) for r in requests] == [f"{MONDAY}|ACME"]
    assert not execute(defs, instance, requests[0]).success  # book_not_crossed blocks Monday
    warehouse = Path(os.environ["LOB_WAREHOUSE_DIR"])
    derived = ("features", "bin_edges", "label_thresholds", "event_tokens", "token_sequences", "labels")
    assert not [t for t in derived if (warehouse / t / "venue=lobster" / "instrument=ACME" / f"date={MONDAY}").exists()]
    # the fits of Tuesday and Wednesday learned from the old Monday: gone too; their features stay
    for later in (TUESDAY, WEDNESDAY):
        assert not (warehouse / "bin_edges" / "venue=lobster" / "instrument=ACME" / f"date={later}").exists()
        assert warehouse_table("features", later).height > 0
    features_key = dg.AssetKey(["lobster", "features"])
    observed = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=features_key, asset_partitions=[f"{MONDAY}|ACME"]),
                                           limit=1).records
    assert "failed validation (book_not_crossed, book_follows_messages)" in observed[0].asset_observation.metadata["retracted"].value

    settle(defs, instance)
    tuesday = warehouse_table("bin_edges", TUESDAY)
    assert (tuesday["fit_scope"][0], tuesday["fit_excluded"][0]) == ("same_day_split", MONDAY)
    wednesday = warehouse_table("bin_edges", WEDNESDAY)
    assert (wednesday["fit_dates"][0], wednesday["fit_excluded"][0]) == (TUESDAY, MONDAY)


def test_a_fit_whose_window_is_not_settled_names_the_days_it_waits_for(fresh, market):
    defs, instance = fresh
    result = materialize_everything(defs, instance, day(WEDNESDAY))
    failures = [e for e in result.all_events if e.is_step_failure]
    assert sorted(f.step_key for f in failures) == sorted(
        ["lobster_fit_training_window"] + [f"lobster__{family}__trained_models" for family in MODELS.split(",")])
    for failure in failures:
        error, raised = failure.step_failure_data.error, []
        while error is not None:
            raised, error = raised + [error.cls_name], error.cause
        assert InputsNotReady.__name__ in raised
        assert f"features {TUESDAY}|ACME" in project_message(failure.step_failure_data.error)
    assert warehouse_table("features", WEDNESDAY).height > 0  # the day's own assets were made
