"""The models as Dagster assets on a small synthetic market: each family's trained_models,
predictions and model_metrics through the real ingest job, lineage to the exact partitions, the
model store and its refusals, run-config overrides, the gpu pool and Kubernetes tags, the
nightly schedule and the retraining sensor."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lob_platform.backtest.direction import STRATEGIES
from lob_platform.core.settings import load_settings
from lob_platform.defs import build_definitions
from lob_platform.defs.automation import next_trading_day, refit_requests
from lob_platform.defs.models import model_key
from lob_platform.deploy.pools import GPU_POOL
from lob_platform.features.training_window import PREVIOUS_DAYS, SAME_DAY_SPLIT
from lob_platform.lineage import Warehouse
from lob_platform.main_job import register_instruments
from lob_platform.models.specs import FAMILIES, MAMBA_TPP as TPP, RandomForestSpec
from lob_platform.sources.catalog import discover
from lob_platform.sources.registry import load_venues, venue_named
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.training import store
from lob_platform.warehouse import query, refresh_views
from lob_platform_tests.helpers import day

pytestmark = pytest.mark.slow

MONDAY, TUESDAY = "2024-03-04", "2024-03-05"
MARKET = MarketConfig(start_date=MONDAY, n_days=2, lobster_tickers=("ACME",), lobster_levels=5, lobster_events_per_day=4_000,
                      mic_products=(), order_feed_products=(), crypto_pairs=())
TABLE_METRICS = {"accuracy", "macro_f1", "mcc", "log_loss", "brier", "ece"}


def partition(date: str) -> str:
    return f"{date}|ACME"


def model_table(root: Path, table: str, family: str, date: str) -> pl.DataFrame:
    return pl.read_parquet(root / table / "venue=lobster" / f"model={family}" / "instrument=ACME" / f"date={date}" / "part-0.parquet")


def latest_metadata(instance, key: dg.AssetKey, date: str) -> dict:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition(date)]), limit=1)
    return records.records[0].asset_materialization.metadata


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Monday and Tuesday through the real ingest job (raw -> ... -> models), once for the module."""
    root = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("LOB_DATA_DIR", str(root / "data"))
        patch.setenv("LOB_WAREHOUSE_DIR", str(root / "warehouse"))
        generate_market(root / "data", MARKET)
        register_instruments(instance, discover())
        defs = build_definitions(load_venues())
        results = {date: defs.resolve_job_def("ingest_lobster").execute_in_process(
            partition_key=day(date), instance=instance, raise_on_error=False) for date in (MONDAY, TUESDAY)}
        yield defs, instance, results, root / "warehouse"


def test_every_family_trains_predicts_and_scores_each_day(market):
    _, _, results, warehouse = market
    assert all(r.success for r in results.values())
    features = pl.read_parquet(warehouse / "features" / "venue=lobster" / "instrument=ACME" / f"date={TUESDAY}" / "part-0.parquet")
    for family in FAMILIES:
        models = model_table(warehouse, "trained_models", family, TUESDAY)
        assert set(models["fit_scope"]) == {PREVIOUS_DAYS} and set(models["fit_dates"]) == {MONDAY}
        assert set(model_table(warehouse, "trained_models", family, MONDAY)["fit_scope"]) == {SAME_DAY_SPLIT}
        predictions = model_table(warehouse, "predictions", family, TUESDAY)
        window = 100 if family == "lstm" else 1
        for label, rows in predictions.group_by("label"):
            # every row of the test day is predicted (the LSTM: every row with a full window of the day)
            assert rows.height == features.height - (window - 1), (family, label)
            assert rows["event_row"].to_list() == features["event_row"].to_list()[window - 1:]
        probabilities = predictions.select(pl.sum_horizontal(pl.col("p_down"), pl.col("p_flat").fill_null(0), pl.col("p_up")))
        assert probabilities.to_series().is_between(0.999, 1.001).all()


def test_each_model_records_its_window_partitions_versions_and_images(market):
    _, _, _, warehouse = market
    monday_features = Warehouse(warehouse).version("features", "lobster", MONDAY, "ACME")
    for family in FAMILIES:
        models = model_table(warehouse, "trained_models", family, TUESDAY)
        assert set(models["fit_inputs"]) == {f"features {MONDAY}={monday_features}"}
        for row in models.iter_rows(named=True):
            manifest = json.loads((warehouse / row["store_path"] / "manifest.json").read_text())
            assert manifest["fit_inputs"] == row["fit_inputs"] and manifest["label"] == row["label"]
            assert manifest["libraries"]["torch"] and manifest["config_hash"] == row["config_hash"]
            assert store.version_of(warehouse / row["store_path"]) == row["model_version"]
            assert (warehouse / row["store_path"] / "training_curve.png").stat().st_size > 1000
            assert (warehouse / row["store_path"] / "reliability.png").stat().st_size > 1000


def test_model_metrics_sit_beside_the_baselines_in_sql_and_the_ui(market):
    _, instance, _, warehouse = market
    refresh_views(warehouse)
    columns, rows = query(warehouse, "select model, label, metric, value, majority, persistence, ofi_sign, best_baseline "
                                     f"from model_metrics where date = '{TUESDAY}' and instrument = 'ACME'")
    metrics = pl.DataFrame(rows, schema=columns, orient="row")
    assert set(metrics["model"]) == {*FAMILIES, TPP}
    assert TABLE_METRICS | {"f1_down", "f1_up"} <= set(metrics["metric"])
    accuracy = metrics.filter(pl.col("metric") == "accuracy")
    assert accuracy.select(pl.col("majority", "persistence", "ofi_sign", "best_baseline").is_not_null().all()).row(0) == (True,) * 4
    assert (accuracy["best_baseline"] >= accuracy["majority"]).all()
    lightgbm = metrics.filter(pl.col("model") == "lightgbm")
    assert set(lightgbm["label"]) == {"next_mid_up", "move_10ev", "move_20ev", "move_50ev", "move_100ev"}
    metadata = latest_metadata(instance, model_key(venue_named("lobster"), "lightgbm", "model_metrics"), TUESDAY)
    assert "data:image/png;base64," in metadata["reliability"].value and "accuracy" in metadata["out_of_sample"].value
    curves = latest_metadata(instance, model_key(venue_named("lobster"), "lstm", "trained_models"), TUESDAY)
    assert "data:image/png;base64," in curves["training_curves"].value


def test_the_mamba_tpp_learns_its_window_with_its_days_bin_edges_scores_every_test_event_and_generates(market):
    _, instance, results, warehouse = market
    row = model_table(warehouse, "trained_models", TPP, TUESDAY).row(0, named=True)
    assert (row["fit_scope"], row["fit_dates"], row["kernels"]) == (PREVIOUS_DAYS, MONDAY, "pure PyTorch")
    manifest = json.loads((warehouse / row["store_path"] / "manifest.json").read_text())
    edges = pl.read_parquet(warehouse / "bin_edges" / "venue=lobster" / "instrument=ACME" / f"date={TUESDAY}" / "part-0.parquet")
    assert {r["feature"]: r["edges"] for r in manifest["bin_edges"]} == dict(zip(edges["feature"], edges["edges"].to_list()))
    assert store.version_of(warehouse / row["store_path"]) == row["model_version"]
    features = pl.read_parquet(warehouse / "features" / "venue=lobster" / "instrument=ACME" / f"date={TUESDAY}" / "part-0.parquet")
    predictions = model_table(warehouse, "predictions", TPP, TUESDAY)
    assert predictions["event_row"].to_list() == features["event_row"].to_list()[1:]  # every event after the day's first
    refresh_views(warehouse)
    columns, rows = query(warehouse, "select metric, value, poisson_marginal, context_1 from model_metrics "
                                     f"where model = '{TPP}' and date = '{TUESDAY}'")
    metrics = pl.DataFrame(rows, schema=columns, orient="row")
    assert {"nll_total", "nll_time", "accuracy_price_coarse", "top3_event_type", "mae_log_inter_arrival"} <= set(metrics["metric"])
    assert metrics.null_count().sum_horizontal().item() == 0
    columns, rows = query(warehouse, f"select distribution, model, unconditional from generation where date = '{TUESDAY}'")
    assert {r[0] for r in rows} == {"inter_arrival", "event_type", "side", "size", "price_change"} and all(r[1] is not None for r in rows)
    (check,) = [c for c in results[TUESDAY].get_asset_check_evaluations() if c.check_name == "beats_poisson_baseline"]
    assert check.passed  # the planted market has structure beyond the marginals
    metadata = latest_metadata(instance, model_key(venue_named("lobster"), TPP, "model_metrics"), TUESDAY)
    assert "nll_total" in metadata["out_of_sample"].value


def test_every_familys_predictions_are_backtested_with_plots_and_one_summary(market):
    defs, instance, results, warehouse = market
    checks = [c for c in results[TUESDAY].get_asset_check_evaluations() if c.check_name == "perfect_foresight_is_upper_bound"]
    assert len(checks) == len(FAMILIES) and all(c.passed for c in checks)
    for family in FAMILIES:
        metrics = model_table(warehouse, "backtest_metrics", family, TUESDAY)
        labels = set(model_table(warehouse, "predictions", family, TUESDAY)["label"])
        assert set(metrics["label"]) == labels and set(metrics["strategy"]) == set(STRATEGIES)
        assert model_table(warehouse, "equity_curves", family, TUESDAY).height > 0
        metadata = latest_metadata(instance, model_key(venue_named("lobster"), family, "backtest_metrics"), TUESDAY)
        assert metadata["plots"].value.count("data:image/png;base64,") == 2 * len(labels)  # equity and calibration
        page = Path(metadata["report"].value)
        assert {f"{label}_equity.png" for label in labels} <= {p.name for p in page.parent.iterdir()}
    for date in (MONDAY, TUESDAY):  # a same-day split, then a window of earlier days
        making = model_table(warehouse, "backtest_metrics", "market_making", date)
        assert making["strategy"].to_list() == ["avellaneda_stoikov", "symmetric"] and (making["bid_fills"] > 0).all()
    refresh_views(warehouse)
    summary = defs.resolve_job_def("refresh_duckdb_catalog").execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey(["warehouse", "backtest_summary"])])
    rows = summary.asset_materializations_for_node("warehouse__backtest_summary")[0].metadata
    assert rows["rows"].value == 2 * (sum(len(set(model_table(warehouse, "predictions", f, TUESDAY)["label"])) for f in FAMILIES) + 1)
    assert "lightgbm/index.html" in (warehouse / "reports" / "index.html").read_text()


def test_a_label_that_cannot_be_trained_warns_and_the_other_labels_go_on(market):
    defs, instance, results, warehouse = market
    passed = [c for c in results[TUESDAY].get_asset_check_evaluations() if c.check_name == "every_label_trained"]
    assert len(passed) == len(FAMILIES) and all(c.passed for c in passed)
    lobster = venue_named("lobster")
    result = defs.resolve_job_def("ingest_lobster").execute_in_process(
        partition_key=day(TUESDAY), instance=instance, asset_selection=[model_key(lobster, "random_forest", t) for t in
                                                                         ("trained_models", "predictions", "model_metrics")],
        run_config={"ops": {"lobster__random_forest__trained_models": {"config": {
            "labels": ["next_mid_up", "move_2500ev"], "labelling": "smoothed"}}}})  # its look-ahead reaches past the window
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "move_2500ev has 0 labelled training rows" in check.metadata["skipped"].value["move_2500ev"]
    models = model_table(warehouse, "trained_models", "random_forest", TUESDAY)
    assert models.select("label", pl.col("model_version").is_null()).rows() == [("next_mid_up", False), ("move_2500ev", True)]
    assert set(model_table(warehouse, "predictions", "random_forest", TUESDAY)["label"]) == {"next_mid_up"}


def test_training_steps_run_in_the_gpu_pool_and_ask_kubernetes_for_a_gpu(market):
    defs, *_ = market
    for family in (*FAMILIES, TPP):
        node = defs.resolve_assets_def(model_key(venue_named("lobster"), family, "trained_models")).node_def
        assert node.pool == GPU_POOL
        resources = node.tags["dagster-k8s/config"]
        resources = json.loads(resources) if isinstance(resources, str) else resources
        assert resources["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_run_config_overrides_the_spec_and_predictions_refuse_a_model_changed_behind_their_back(market):
    defs, instance, _, warehouse = market
    lobster = venue_named("lobster")
    job = defs.resolve_job_def("ingest_lobster")
    result = job.execute_in_process(
        partition_key=day(TUESDAY), instance=instance, asset_selection=[model_key(lobster, "lightgbm", "trained_models")],
        run_config={"ops": {"lobster__lightgbm__trained_models": {"config": {
            "labels": ["next_mid_up"], "n_trials": 3, "n_estimators": 20}}}})
    assert result.success
    models = model_table(warehouse, "trained_models", "lightgbm", TUESDAY)
    assert models["label"].to_list() == ["next_mid_up"]
    folder = warehouse / models["store_path"][0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"]["n_estimators"] == 20 and len(manifest["history"]) == 3  # every trial recorded
    # a model written into the store by something else (another manifest): the predictions refuse it
    _, model, _ = store.load(folder, {})
    store.save(folder, {**manifest, "note": "retrained elsewhere"}, model)
    outcome = job.execute_in_process(partition_key=day(TUESDAY), instance=instance, raise_on_error=False, asset_selection=[
        model_key(lobster, "lightgbm", "predictions"), model_key(lobster, "lightgbm", "model_metrics")])
    assert not outcome.success
    failure = outcome.get_step_failure_events()[0].event_specific_data.error.message
    assert f"recorded {models['model_version'][0]}" in failure and "retrained or changed" in failure


def test_nightly_schedule_ingests_what_arrived_and_trains_the_next_trading_days_models(market):
    defs, *_ = market
    schedule = defs.get_schedule_def("nightly_retraining_lobster")
    with dg.instance_for_test() as fresh:  # an instance that has ingested nothing yet
        register_instruments(fresh, discover())  # as the new_raw_files sensor does
        tuesday_night = datetime(2024, 3, 6, 2, 0, tzinfo=timezone.utc)  # 21:00 Tuesday in New York
        context = dg.build_schedule_context(instance=fresh, scheduled_execution_time=tuesday_night,
                                            repository_def=defs.get_repository_def())
        requests = schedule.evaluate_tick(context).run_requests
    ingest = sorted(str(r.partition_key) for r in requests if r.tags["lob/what"].startswith("ingest"))
    ahead = [r for r in requests if r.tags["lob/what"] == "train ahead"]
    assert ingest == [partition(MONDAY), partition(TUESDAY)]
    assert [str(r.partition_key) for r in ahead] == ["2024-03-06|ACME"]
    assert set(ahead[0].asset_selection) == {model_key(venue_named("lobster"), f, "trained_models") for f in (*FAMILIES, TPP)}


def test_next_trading_day_skips_the_weekend_in_the_venues_time_zone():
    lobster = venue_named("lobster")
    friday_evening_new_york = datetime(2024, 3, 9, 1, 0, tzinfo=timezone.utc)  # Friday 20:00 in New York
    assert next_trading_day(lobster, friday_evening_new_york).isoformat() == "2024-03-11"
    assert next_trading_day(lobster, datetime(2024, 3, 5, 12, 0, tzinfo=timezone.utc)).isoformat() == "2024-03-06"


def test_changed_model_settings_retrain_only_the_models_they_change(market):
    _, instance, _, _ = market
    settings = load_settings()

    def families_requested(settings) -> dict[str, set[str]]:
        requests = refit_requests(load_venues(), settings, instance)
        assert all(r.tags["lob/what"] == "train" for r in requests)  # the fits are up to date: models only
        return {str(r.partition_key): {k.path[1] for k in r.asset_selection} for r in requests}

    before = families_requested(settings)  # (some may be stale here: other tests retrained them with overrides)
    changed = type(settings)(**{**settings.__dict__, "models": settings.models.with_family(
        "random_forest", RandomForestSpec(n_estimators=7))})
    after = families_requested(changed)
    assert set(after) == {partition(MONDAY), partition(TUESDAY)}
    assert all("random_forest" in after[p] and after[p] - before.get(p, set()) <= {"random_forest"} for p in after)
    tpp = families_requested(type(settings)(**{**settings.__dict__, "models": dataclasses.replace(
        settings.models, mamba_tpp=dataclasses.replace(settings.models.mamba_tpp, steps=7))}))
    assert all(TPP in tpp[p] and tpp[p] - before.get(p, set()) <= {TPP} for p in (partition(MONDAY), partition(TUESDAY)))
