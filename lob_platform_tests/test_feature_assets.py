"""The feature layer as Dagster assets on a small synthetic market: features, the training-window
fit, tokens, labels and the crypto panel, their checks, lineage by date, idempotent reruns, SQL."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from lob_platform.defs import build_definitions
from lob_platform.defs.features import expected_split_shares, fit_checks, fit_window
from lob_platform.features.crypto_panel import has_panel_layout
from lob_platform.features.labels import fit_label_thresholds
from lob_platform.features.panel_quality import MIN_PANEL_COVERAGE, coverage_failures, panel_coverage
from lob_platform.features.training_window import SAME_DAY_SPLIT, TrainingWindow
from lob_platform.lineage import Warehouse
from lob_platform.main_job import register_instruments
from lob_platform.sources.catalog import discover
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.storage import partition_path, write_partition
from lob_platform.tokens.drift import PSI_WARNING, token_drift
from lob_platform.tokens.quality import split_share_deviation, split_shares_within
from lob_platform.tokens.bins import BinEdges, fit_bins
from lob_platform.warehouse import query, refresh_views
from lob_platform_tests.helpers import day, warehouse_table as table

pytestmark = pytest.mark.slow

MONDAY, TUESDAY = "2024-03-04", "2024-03-05"
MARKET = MarketConfig(start_date=MONDAY, n_days=2, lobster_tickers=("ACME",), lobster_levels=5, lobster_events_per_day=3_000,
                      mic_products=(), order_feed_products=(), crypto_pairs=("BTC-USDT",), crypto_exchanges=("binance_perp", "binance_spot"),
                      crypto_hours_per_day=1.0)
FEATURE_CHECKS = ["lobster/bin_edges:edges_monotonic", "lobster/bin_edges:no_empty_bin", "lobster/event_tokens:token_drift",
                  "lobster/features:finite_features", "lobster/features:label_balance", "lobster/token_sequences:split_shares"]


def run(defs, instance, job: str, partition) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Two LOBSTER days and one crypto day through the real jobs, once for the module."""
    root = tmp_path_factory.mktemp("market")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("LOB_DATA_DIR", str(root / "data"))
        patch.setenv("LOB_WAREHOUSE_DIR", str(root / "warehouse"))
        patch.setenv("LOB_MODEL_FAMILIES", "")  # the features alone (test_model_assets trains on them)
        patch.setenv("LOB_BACKTESTS", "0")
        generate_market(root / "data", MARKET)
        register_instruments(instance, discover())
        defs = build_definitions(load_venues())
        results = {date: run(defs, instance, "ingest_lobster", day(date)) for date in (MONDAY, TUESDAY)}
        for instrument in ("binance_perp.BTCUSDT", "binance_spot.BTCUSDT"):
            assert run(defs, instance, "ingest_crypto", day(MONDAY, instrument)).success
        results["panel"] = run(defs, instance, "build_crypto_panel", MONDAY)
        yield results, instance, defs


def test_every_feature_check_runs_and_passes(market):
    results, _, _ = market
    for date in (MONDAY, TUESDAY):
        assert results[date].success
        checks = {c.asset_check_key.to_user_string(): c.passed for c in results[date].get_asset_check_evaluations()}
        assert {name: checks[name] for name in FEATURE_CHECKS} == dict.fromkeys(FEATURE_CHECKS, True)


def test_first_day_fits_on_its_own_training_split_and_later_days_on_earlier_days(market):
    monday_edges, tuesday_edges = table("bin_edges", MONDAY), table("bin_edges", TUESDAY)
    assert set(monday_edges["fit_scope"]) == {SAME_DAY_SPLIT} and set(tuesday_edges["fit_dates"]) == {MONDAY}
    monday = table("features", MONDAY)
    assert BinEdges.from_frame(tuesday_edges) == fit_bins(monday, BinEdges())  # all of Monday, nothing of Tuesday
    first_part = monday.head(int(monday.height * 0.6))
    assert BinEdges.from_frame(monday_edges) == fit_bins(first_part, BinEdges())
    thresholds = table("label_thresholds", TUESDAY)
    assert dict(thresholds.select("horizon_events", "threshold").rows()) == fit_label_thresholds(monday)


def test_tokens_and_sequences_carry_the_split_of_their_fit(market):
    assert set(table("token_sequences", MONDAY)["split"]) == {"train", "validation", "test"}
    assert set(table("token_sequences", TUESDAY)["split"]) == {"test"}  # out of sample: edges fit on Monday
    tokens, features = table("event_tokens", TUESDAY), table("features", TUESDAY)
    assert tokens["source_row"].to_list() == features["source_row"].to_list()
    labels = table("labels", TUESDAY)
    assert labels.columns == ["event_row", "ts_ns", "source_row", "label_next_mid_up", "label_move_10ev", "label_move_20ev",
                              "label_move_50ev", "label_move_100ev", "split"]
    assert set(labels["label_move_50ev"].drop_nulls()) == {-1, 0, 1}


def test_features_metadata_describes_the_day(market):
    results, _, _ = market
    (features,) = [e for e in results[TUESDAY].get_asset_materialization_events() if e.asset_key.path[-1] == "features"]
    metadata = features.materialization.metadata
    assert "| mean |" in metadata["summary"].value and metadata["rows"].value == table("features", TUESDAY).height
    labels = table("features", TUESDAY)["label_next_mid_up"].drop_nulls()
    assert metadata["label_balance"].value["up_share"] == pytest.approx(labels.mean())
    assert metadata["label_balance"].value["labelled_rows"] == labels.len()


def test_crypto_panel_lines_up_every_instrument_and_warns_on_staleness(market):
    results, _, _ = market
    assert results["panel"].success
    checks = {c.check_name: c for c in results["panel"].get_asset_check_evaluations()}
    # the market trades one hour a day: the rest of the grid is stale, a warning that does not block
    assert not checks["staleness"].passed and checks["staleness"].severity == dg.AssetCheckSeverity.WARN
    coverage = checks["panel_coverage"].metadata["coverage"].value
    assert checks["panel_coverage"].passed and 0.03 < coverage["binance_perp.BTCUSDT"] < 0.05  # one hour of 24
    panel = table("panel_5s", MONDAY, venue="crypto", instrument=None)
    assert panel.shape == (17_280, 1 + 240 + 24)
    assert panel["binance_perp.BTCUSDT.bid_price_1"].drop_nulls().len() > 500
    assert panel["bybit_spot.BTCUSDT.bid_price_1"].null_count() == 17_280  # not in the data: null, not invented


def test_rerunning_a_day_rewrites_identical_files(market):
    _, instance, defs = market
    names = ("features", "bin_edges", "event_tokens", "token_sequences", "labels")
    before = {n: table(n, TUESDAY).write_ipc(None).getvalue() for n in names}
    assert run(defs, instance, "ingest_lobster", day(TUESDAY)).success
    assert {n: table(n, TUESDAY).write_ipc(None).getvalue() for n in names} == before


def test_every_feature_table_is_queryable_from_duckdb(market):
    root = Path(os.environ["LOB_WAREHOUSE_DIR"])
    counts = refresh_views(root)
    for name in ("features", "bin_edges", "label_thresholds", "event_tokens", "token_sequences", "labels", "panel_5s"):
        assert counts[name] > 0
    _, rows = query(root, "select date, count(*) from token_sequences where split = 'test' group by all order by all")
    assert [r[0].isoformat() for r in rows] == [MONDAY, TUESDAY]


def test_fit_on_no_training_rows_fails_no_empty_bin():
    window = TrainingWindow(pl.DataFrame(), SAME_DAY_SPLIT, [MONDAY], 0.6)
    bins = BinEdges(edges={f: () for f in BinEdges().bin_counts})
    checks = {c.check_name: c for c in fit_checks(dg.AssetKey(["lobster", "bin_edges"]), bins, window)}
    assert checks["edges_monotonic"].passed and not checks["no_empty_bin"].passed
    assert checks["no_empty_bin"].description == "no training rows: nothing to fit on"


def test_panel_reads_validated_instruments_leaves_out_failed_ones_and_waits_for_pending(tmp_path):
    warehouse = Warehouse(tmp_path)
    for instrument, passed in (("binance_perp.BTCUSDT", True), ("bybit_spot.BTCUSDT", False)):
        keys = {"venue": "crypto", "instrument": instrument, "date": MONDAY}
        write_partition(pl.DataFrame({"passed": [passed]}), partition_path(tmp_path, "validation_reports", keys))
        write_partition(pl.DataFrame({"ts_ns": [1]}), partition_path(tmp_path, "validated_depth_snapshots", keys))
    instruments = ["binance_perp.BTCUSDT", "bybit_spot.BTCUSDT", "binance_spot.BTCUSDT"]
    versions, failed, pending = warehouse.panel_inputs("crypto", MONDAY, instruments, "validated_depth_snapshots")
    assert list(versions) == ["binance_perp.BTCUSDT"] and len(versions["binance_perp.BTCUSDT"]) == 16
    assert (failed, pending) == (["bybit_spot.BTCUSDT"], ["binance_spot.BTCUSDT"])


def test_panel_coverage_check_passes_on_the_market_and_fails_on_a_thin_instrument(market):
    panel = table("panel_5s", MONDAY, venue="crypto", instrument=None)
    assert has_panel_layout(panel)
    included = ["binance_perp.BTCUSDT", "binance_spot.BTCUSDT"]
    assert coverage_failures(panel_coverage(panel, included), included, MIN_PANEL_COVERAGE) == {}
    quotes = [c for c in panel.columns if c.startswith("binance_spot.BTCUSDT.") and "_price_" in c]
    thin = panel.with_columns(pl.when(pl.int_range(pl.len()) >= 100).then(None).otherwise(pl.col(c)).alias(c) for c in quotes)
    assert list(coverage_failures(panel_coverage(thin, included), included, MIN_PANEL_COVERAGE)) == ["binance_spot.BTCUSDT"]


def test_split_shares_check_passes_for_each_fit_and_fails_against_another(market):
    for date in (MONDAY, TUESDAY):
        window = fit_window(table("bin_edges", date))
        splits = table("token_sequences", date)["split"].cast(pl.String)
        assert split_shares_within(split_share_deviation(splits, expected_split_shares(window)), 0.05 + 1 / splits.len())
    tuesday = table("token_sequences", TUESDAY)["split"].cast(pl.String)  # all test: fit on Monday
    monday_fit = expected_split_shares(fit_window(table("bin_edges", MONDAY)))  # 60 / 20 / 20
    assert not split_shares_within(split_share_deviation(tuesday, monday_fit), 0.1)


def test_token_drift_check_is_quiet_on_a_like_day_and_warns_on_a_shifted_one(market):
    results, _, _ = market
    (drift,) = [c for c in results[TUESDAY].get_asset_check_evaluations() if c.check_name == "token_drift"]
    assert drift.passed and max(drift.metadata["psi"].value.values()) < PSI_WARNING
    edges, tokens = table("bin_edges", TUESDAY), table("event_tokens", TUESDAY)
    vocabulary = BinEdges.from_frame(edges).vocabulary()
    shifted = {"log_size_bin": [0] * (vocabulary["log_size_bin"] - 2) + [1, 0]}  # training saw one size bin only
    assert token_drift(tokens, shifted, vocabulary)["log_size_bin"] > PSI_WARNING
