"""The panel forecasters: the Jung & Lee transformers and SSM-HiPPO on the crypto panel.

Windows, splits and scaling on hand-made arrays; stacked training against training alone; the
HiPPO SSM against its recurrence; the metrics and structure loss on hand-made books; learning on
the synthetic market (the planted lead-lag between venues found, nothing found where there is
none); and the Dagster assets: all sixteen trained together, SSM-HiPPO, the summary table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch

from lob_platform.core.settings import load_settings
from lob_platform.datasets.panel import (SSM_CHANNELS, PanelRows, PanelScaler, complete_targets, split_rows, ssm_matrix,
                                         target_columns, window_starts)
from lob_platform.defs.automation import panel_forecaster_requests
from lob_platform.deploy.pools import GPU_POOL, GPU_STEP_TAGS
from lob_platform.defs.panel_models import SUMMARY, build_panel_model_assets
from lob_platform.defs.resources import WarehouseIOManager
from lob_platform.errors import TrainingDataError
from lob_platform.features.crypto_panel import PanelConfig, build_panel
from lob_platform.features.training_window import PREVIOUS_DAYS, SAME_DAY_SPLIT
from lob_platform.models.panel_baselines import DLinear
from lob_platform.lineage import PANEL, Warehouse
from lob_platform.models.specs import PANEL_FAMILIES, ModelSpecs, PanelTrainingSpec, PanelTransformerSpec
from lob_platform.models.ssm_hippo import HippoSSM, discretise, hippo_legs
from lob_platform.sources.crypto import read_book_snapshots
from lob_platform.sources.registry import venue_named
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform.storage import write_partition
from lob_platform.training import forecast_metrics as fm
from lob_platform.training import store
from lob_platform.training.panel import ForecastTask, Windows, book_structure_loss, coherence_loss, train_forecasters
from lob_platform.warehouse import query, refresh_views
from lob_platform.training.panel_forecast import build_transformer, fit_ssm, fit_transformers, transformer_name

CPU = torch.device("cpu")
CONFIG = PanelConfig()
MONDAY, TUESDAY = "2024-03-04", "2024-03-05"


# ---- windows, splits, scaling


def rows_of(n_days: int, n: int, columns: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    days = {}
    for d in range(n_days):
        values = np.arange(n * columns, dtype=float).reshape(n, columns) + 1000 * d
        days[f"2024-03-0{4 + d}"] = (values, np.zeros_like(values, dtype=bool), np.arange(n) + d * n)
    return days


def test_previous_days_split_keeps_validation_last_and_the_test_day_apart():
    rows = split_rows(rows_of(3, 100), "2024-03-06", PREVIOUS_DAYS, 0.6, 0.2, np.array([0]))
    assert rows.segments["train"] == [(0, 100), (100, 160)]
    assert rows.segments["validation"] == [(160, 200)]
    assert rows.segments["test"] == [(200, 300)]
    # a window never crosses a split or a day: the 40-row validation segment holds 40 - 10 + 1 windows of 10 rows
    assert len(window_starts(rows.segments["validation"], 10, 1)) == 31
    starts = window_starts(rows.segments["train"], 10, 1)
    assert not np.any((starts < 100) & (starts + 10 > 100))


def test_same_day_split_counts_only_rows_with_data():
    days = rows_of(1, 100)
    values = days["2024-03-04"][0]
    values[50:] = np.nan  # the capture ends at midday: the fractions split its first half
    rows = split_rows(days, "2024-03-04", SAME_DAY_SPLIT, 0.6, 0.2, np.array([0, 1]))
    assert rows.segments == {"train": [(0, 30)], "validation": [(30, 40)], "test": [(40, 100)]}


def test_split_refuses_a_missing_test_day():
    with pytest.raises(TrainingDataError, match="panel of 2024-03-09"):
        split_rows(rows_of(2, 10), "2024-03-09", PREVIOUS_DAYS, 0.6, 0.2, np.array([0]))


def test_scaler_learns_from_training_rows_only_and_round_trips():
    values = np.cumsum(np.random.default_rng(0).normal(size=(200, 2)), axis=0) + [100.0, 0.0]
    values[:, 1] = np.abs(values[:, 1]) + 1  # a volume
    train = np.arange(120)
    scaler = PanelScaler.fit(values, train, np.array([True, False]), context=16)
    changed = values.copy()
    changed[120:] *= 50  # validation and test rows do not move the scaler
    again = PanelScaler.fit(changed, train, np.array([True, False]), context=16)
    assert np.array_equal(scaler.scale, again.scale) and np.array_equal(scaler.center, again.center)
    assert scaler.scale[0] == pytest.approx(np.std(np.diff(values[:120, 0])) * 4)
    z = scaler.standardised(values)
    starts = np.array([0, 50, 100])
    last, future = scaler.window_targets(z, starts, 16, 5, np.array([0, 1]))
    assert np.allclose(last[:, 0], 0)  # a price is relative to the last context step: persistence is 0
    back = scaler.unscale(future.astype(np.float64), values[starts + 15], np.array([0, 1]))
    assert np.allclose(back, values[(starts[:, None] + 16 + np.arange(5))], atol=1e-3)


def test_stale_and_missing_inputs_are_masked_not_trusted():
    values = np.arange(40, dtype=float).reshape(20, 2)
    untrusted = np.zeros_like(values, dtype=bool)
    untrusted[5, 0] = True  # stale
    values[6, 1] = np.nan  # beyond the fill limit
    scaler = PanelScaler(np.array([False, False]), np.zeros(2), np.ones(2))
    x, missing = scaler.window_inputs(scaler.standardised(values), untrusted | np.isnan(values), np.array([4]), 4)
    assert missing[0, 1, 0] and missing[0, 2, 1] and missing.sum() == 2
    assert x[0, 1, 0] == 0 and x[0, 2, 1] == 0 and x[0, 0, 0] == 8


def test_windows_over_a_gap_or_before_a_pair_starts_are_skipped_and_counted():
    values = np.ones((100, 2))
    values[:30, 1] = np.nan  # the pair starts trading at row 30
    values[60:65, 1] = np.nan  # a stale gap longer than the fill limit
    starts = window_starts([(0, 100)], 10, 1)
    ok = complete_targets(values, starts, 6, 4, np.array([1]))
    usable = starts[ok]
    # checked: the last context step (start + 5) and the horizon (start + 6 .. start + 9); inputs may be missing
    assert usable.min() == 25  # the first window whose last context step sees the pair
    assert not np.any((usable + 9 >= 60) & (usable + 5 < 65)) and {50, 60} <= set(usable)
    windows = Windows(PanelRows(values, np.isnan(values), np.arange(100), {"train": [(0, 100)]}),
                      PanelScaler(np.array([False, False]), np.zeros(2), np.ones(2)), 6, 4)
    assert windows.complete(ForecastTask("a", np.array([1]), 4), windows.starts("train", 1)).tolist() == ok.tolist()


def test_ssm_channels_of_a_hand_made_book():
    prefix = "binance_perp.BTCUSDT."
    columns = {f"{prefix}stale": [False, True]}
    for level in range(1, 6):
        columns |= {f"{prefix}bid_price_{level}": [101.0 - level] * 2, f"{prefix}bid_volume_{level}": [float(level)] * 2,
                    f"{prefix}ask_price_{level}": [100.0 + level] * 2, f"{prefix}ask_volume_{level}": [2.0] * 2}
    values, untrusted = ssm_matrix(pl.DataFrame(columns), "binance_perp", "BTCUSDT", CONFIG)
    channel = dict(zip(SSM_CHANNELS, values[0]))
    assert len(SSM_CHANNELS) == 24 and values.shape == (2, 24)
    assert channel["mid"] == 100.5 and channel["spread"] == 1.0
    assert channel["microprice"] == pytest.approx((100 * 2 + 101 * 1) / 3)  # best prices weighted by the opposite volume
    assert channel["depth_weighted_mid"] == pytest.approx(2490 / 25)
    assert channel["imbalance_1"] == pytest.approx(-1 / 3) and channel["depth_imbalance"] == pytest.approx(5 / 25)
    assert (channel["bid_depth"], channel["ask_depth"], channel["bid_span"], channel["ask_span"]) == (15, 10, 4, 4)
    assert not untrusted[0].any() and untrusted[1].all()  # the stale row is not trusted
    with pytest.raises(TrainingDataError, match="okx.BTCUSDT is not in the panel"):
        ssm_matrix(pl.DataFrame(columns), "okx", "BTCUSDT", CONFIG)


def test_target_columns_are_one_instrument_in_panel_order():
    columns = target_columns(CONFIG, "binance_perp", "ETHUSDT")
    assert len(columns) == 20 and np.all(np.diff(columns) == 1)
    with pytest.raises(TrainingDataError, match="okx.BTCUSDT is not in the panel"):
        target_columns(CONFIG, "okx", "BTCUSDT")


# ---- models and training


def random_windows(n: int = 96, columns: int = 8, seed: int = 0) -> Windows:
    values = np.cumsum(np.random.default_rng(seed).normal(size=(n, columns)), axis=0)
    cut = n * 2 // 3
    rows = PanelRows(values, np.zeros_like(values, dtype=bool), np.arange(n), {"train": [(0, cut)], "validation": [(cut, n)]})
    scaler = PanelScaler.fit(values, np.arange(cut), np.zeros(columns, dtype=bool), 8)
    return Windows(rows, scaler, 8, 4)


class Linear(torch.nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(8 * 8, 4 * 2)

    def forward(self, x, missing, last):
        return last.unsqueeze(1) + self.proj(x.flatten(1)).reshape(-1, 4, 2)


def test_models_trained_in_a_stack_end_as_they_do_alone():
    windows = random_windows()
    tasks = [ForecastTask("a", np.array([0, 1]), 4), ForecastTask("b", np.array([2, 3]), 4)]
    spec = PanelTrainingSpec(batch_size=8, learning_rate=1e-2, warmup_steps=3, epochs=3, patience=3)
    loss = coherence_loss(0.1)
    together = train_forecasters([Linear(1), Linear(2)], tasks, [loss, loss], windows, spec, CPU, lambda _: None)
    alone = [train_forecasters([Linear(seed)], [task], [loss], windows, spec, CPU, lambda _: None)[0]
             for seed, task in ((1, tasks[0]), (2, tasks[1]))]
    for stacked, single in zip(together, alone):
        assert stacked.history == pytest.approx(single.history, rel=1e-5)
        for name in single.final:
            assert torch.allclose(stacked.final[name], single.final[name], atol=1e-6)
    # each model's slice of the stacked optimiser loads into Adam over that model alone
    model = Linear(1)
    model.load_state_dict(together[0].final)
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.load_state_dict(together[0].optimizer)
    assert torch.equal(optimizer.state[model.proj.weight]["exp_avg"], together[0].optimizer["state"][0]["exp_avg"])


def test_too_few_windows_is_a_clear_error():
    windows = random_windows(n=20)
    with pytest.raises(TrainingDataError, match="too few complete windows"):
        train_forecasters([Linear(0)], [ForecastTask("a", np.array([0, 1]), 4)], [coherence_loss(0)], windows,
                          PanelTrainingSpec(), CPU, lambda _: None)


def test_untrained_transformer_forecasts_persistence_and_has_the_seed_shape():
    spec = ModelSpecs().panel_transformer
    model = build_transformer(spec, CONFIG, 12)
    x, missing = torch.randn(2, spec.context, 240), torch.zeros(2, spec.context, 240, dtype=torch.bool)
    last = torch.randn(2, 20)
    out = model(x, missing, last)
    assert out.shape == (2, 12, 20) and torch.equal(out, last.unsqueeze(1).expand(-1, 12, -1))
    assert (spec.d_model, spec.n_heads, spec.encoder_layers, spec.decoder_layers) == (126, 3, 3, 3)


def test_hippo_legs_and_the_ssm_kernel_against_its_recurrence():
    a, b = hippo_legs(4)
    assert a[2, 0] == pytest.approx(-np.sqrt(5) * 1) and a[1, 1] == -2 and a[0, 3] == 0 and b[3] == pytest.approx(np.sqrt(7))
    torch.manual_seed(0)
    ssm = HippoSSM(d_model=3, d_state=4)
    u = torch.randn(2, 7, 3)
    y = ssm(u)
    a_d, b_d = discretise(ssm.A, ssm.B, ssm.log_dt.exp())
    state = torch.zeros(2, 3, 4)
    for t in range(7):  # x_t = A_d x_{t-1} + B_d u_t, y_t = C x_t + D u_t
        state = torch.einsum("dnm,bdm->bdn", a_d, state) + b_d * u[:, t, :, None]
        expected = (ssm.C * state).sum(-1) + ssm.D * u[:, t]
        assert torch.allclose(y[:, t], expected, atol=1e-5)


# ---- metrics


def book(bid: float, ask: float, levels: int = 2) -> np.ndarray:
    return np.array([[bid - i, 1.0, ask + i, 1.0] for i in range(levels)]).ravel()


def test_structure_loss_and_invalid_book_shares():
    valid, crossed = book(100, 101), book(101, 100)
    non_monotone = book(100, 101)
    non_monotone[4] = 100.5  # the second bid above the first
    forecasts = np.stack([valid, crossed, non_monotone])[:, None, :]
    assert fm.invalid_books(forecasts, 2) == {"crossed_share": pytest.approx(1 / 3), "non_monotone_share": pytest.approx(1 / 3)}
    as_tensor = lambda b: torch.tensor(b, dtype=torch.float32)[None, None, :]  # noqa: E731
    assert book_structure_loss(as_tensor(valid), 2, 1.0, 1.0) == 0
    assert book_structure_loss(as_tensor(crossed), 2, 1.0, 1.0) == pytest.approx(1.0)
    negative = valid.copy()
    negative[1] = -2.0
    assert book_structure_loss(as_tensor(negative), 2, 1.0, 1.0) == pytest.approx(2.0)


def test_errors_direction_and_verdict_on_hand_made_forecasts():
    last = np.array([[100.0], [100.0]])
    true = np.array([[[101.0], [102.0]], [[99.0], [99.0]]])
    model = np.array([[[101.0], [101.0]], [[100.5], [99.0]]])
    persistence = np.repeat(last[:, None, :], 2, axis=1)
    forecasts = {"model": model, "persistence": persistence, "dlinear": persistence}
    rows = fm.error_rows(true, forecasts, {"mid_ticks": (np.array([0]), 0.5)})
    step1 = {r["stat"]: r for r in rows if r["step"] == 1}
    assert step1["mae"]["model"] == pytest.approx((0 + 3) / 2) and step1["mse"]["persistence"] == pytest.approx((4 + 4) / 2)
    # up and up: right; 100.5 vs 99 from 100: wrong; step 2: up right, down right
    assert fm.direction_accuracy(true[:, :, 0], model[:, :, 0], last[:, 0]) == pytest.approx(3 / 4)


def test_verdict_says_beats_only_beyond_noise():
    rng = np.random.default_rng(1)
    true = rng.normal(size=(400, 3, 1))
    zero = np.zeros_like(true)
    good = true * 0.5
    noisy = zero + rng.normal(scale=0.05, size=true.shape)
    forecasts = lambda m: {"model": m, "persistence": zero, "dlinear": zero}  # noqa: E731
    beats, z, words = fm.verdict(true, forecasts(good), "x", np.array([0]), 1.0, 1)
    assert beats and z < -2 and words.startswith("beats persistence")
    beats, z, words = fm.verdict(true, forecasts(noisy), "x", np.array([0]), 1.0, 1)
    assert not beats and "does NOT beat persistence" in words


def test_dlinear_learns_a_trend_that_persistence_misses():
    rng = np.random.default_rng(2)
    slopes = rng.normal(size=(300, 1, 1))
    context = slopes * np.arange(16)[None, :, None] + rng.normal(scale=0.01, size=(300, 16, 1))
    last = context[:, -1, :]
    future = slopes * np.arange(16, 20)[None, :, None]
    model = DLinear.fit(context[:200], last[:200], future[:200])
    predicted = model.predict(context[200:], last[200:])
    assert np.mean((predicted - future[200:]) ** 2) < 0.01 * np.mean((last[200:, None, :] - future[200:]) ** 2)


def test_a_pair_missing_from_the_target_venue_skips_its_models_and_trains_the_others(tmp_path):
    panels = market_panels(tmp_path, crypto_hours_per_day=1.0)
    wld = [c for c in panels[MONDAY].columns if c.startswith("binance_perp.WLDUSDT.") and c.endswith(tuple("12345"))]
    panels = {d: f.with_columns(pl.lit(None, pl.Float64).alias(c) for c in wld) for d, f in panels.items()}
    spec = dataclasses.replace(ModelSpecs.tiny().panel_transformer,
                               training=dataclasses.replace(ModelSpecs.tiny().panel_transformer.training, epochs=1))
    results, skipped = fit_transformers(panels, TUESDAY, PREVIOUS_DAYS, 0.6, 0.2, spec, CONFIG, [("1min", "btc"), ("1min", "wld")],
                                        CPU, lambda _: None)
    assert [r.name for r in results] == ["transformer_1min_btc"]
    assert list(skipped) == ["transformer_1min_wld"] and "0 training" in skipped["transformer_1min_wld"]
    with pytest.raises(TrainingDataError, match="no selected transformer can be trained"):
        fit_transformers(panels, TUESDAY, PREVIOUS_DAYS, 0.6, 0.2, spec, CONFIG, [("1min", "wld")], CPU, lambda _: None)


# ---- learning on the synthetic market


def market_panels(root: Path, **overrides) -> dict[str, pl.DataFrame]:
    """Two days of the synthetic crypto market as panels (6 hours a day unless overridden)."""
    config = MarketConfig(**{"n_days": 2, "lobster_tickers": (), "mic_products": (), "order_feed_products": (),
                             "crypto_hours_per_day": 6.0, **overrides})
    frames: dict[str, dict[str, pl.DataFrame]] = {}
    for path in generate_market(root, config):
        if "_book_snapshot_" in path.name:
            exchange, rest = path.name.split("_book_snapshot_5_")
            date, symbol = rest.split(".")[0].split("_")
            frames.setdefault(date, {})[f"{exchange}.{symbol}"] = read_book_snapshots(path)
    return {d: build_panel(f, dt.date.fromisoformat(d)).frame for d, f in frames.items()}


LEARNING = dataclasses.replace(ModelSpecs.tiny().panel_transformer, horizons=("1min",), pairs=("btc",),
                               training=dataclasses.replace(ModelSpecs.tiny().panel_transformer.training, train_stride=1,
                                                            epochs=2, max_train_windows=None))


def forecaster(panels, target_exchange: str):
    spec = dataclasses.replace(LEARNING, target_exchange=target_exchange)
    [result], _ = fit_transformers(panels, TUESDAY, PREVIOUS_DAYS, 0.6, 0.2, spec, CONFIG, [("1min", "btc")], CPU, lambda _: None)
    return result.summary


@pytest.mark.slow
def test_transformer_finds_the_planted_lead_lag_and_not_where_there_is_none(tmp_path):
    # binance_perp leads the other venues by 30 s: a follower's next minute is partly known now
    panels = market_panels(tmp_path / "lead", lead_lag_s=30.0)
    follower = forecaster(panels, "bybit_spot")
    assert follower["beats_persistence"] and follower["z_vs_persistence"] < -2, follower["verdict"]
    assert follower["price_bps_mse_model"] < 0.85 * follower["price_bps_mse_persistence"]
    assert follower["price_bps_mse_model"] < follower["price_bps_mse_dlinear"]  # DLinear reads the target alone
    assert follower["direction_accuracy"] > 0.6
    quiet_panels = market_panels(tmp_path / "quiet", lead_lag_s=30.0, lead_lag_strength=0.0)  # no venue leads
    quiet = forecaster(quiet_panels, "bybit_spot")
    assert not quiet["beats_persistence"] and quiet["price_bps_mse_model"] < 1.05 * quiet["price_bps_mse_persistence"], quiet["verdict"]
    # SSM-HiPPO reads one exchange-pair's own channels: its random-walk mid leaves it at persistence, while its
    # depth, drawn afresh around a fixed level at every snapshot, is better forecast by that level than by the last value
    ssm = fit_ssm(quiet_panels, TUESDAY, PREVIOUS_DAYS, 0.6, 0.2, ModelSpecs.tiny().ssm_hippo, CONFIG, CPU, lambda _: None)
    assert not ssm.summary["beats_persistence"] and abs(ssm.summary["z_vs_persistence"]) < 2, ssm.summary["verdict"]
    volume = fm.mean_over_steps(ssm.errors, "volume", "mse")
    assert volume["model"] < 0.8 * volume["persistence"]


# ---- the Dagster assets


@pytest.fixture(scope="module")
def panel_market(tmp_path_factory):
    """Two 3-hour days of panels in a warehouse (written as the panel asset writes them; its own
    tests cover it), the raw files in the data folder, and the platform's definitions."""
    root = tmp_path_factory.mktemp("panel_models")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("LOB_DATA_DIR", str(root / "data"))
        patch.setenv("LOB_WAREHOUSE_DIR", str(root / "warehouse"))
        patch.setenv("LOB_MODEL_FAMILIES", ",".join(PANEL_FAMILIES))
        patch.setenv("LOB_BACKTESTS", "0")
        warehouse = Warehouse(root / "warehouse")
        for date, frame in market_panels(root / "data", crypto_hours_per_day=3.0).items():
            write_partition(frame, warehouse.path(PANEL, "crypto", date))
        settings = load_settings()
        assets = build_panel_model_assets(venue_named("crypto"), settings)
        yield assets, instance, warehouse


def materialize(panel_market, keys: list[str], date: str) -> dg.ExecuteInProcessResult:
    assets, instance, _ = panel_market
    small = {"epochs": 1, "max_train_windows": 300, "eval_stride": 36}  # the wiring is tested here, learning above
    ops = {op: {"config": small} for op, model in (("crypto_panel_transformers", "transformer"), ("crypto_ssm_hippo", "ssm"))
           if any(model in k for k in keys)}
    run_config = {"ops": ops}
    return dg.materialize(assets, selection=keys, partition_key=date, instance=instance, raise_on_error=False,
                          resources={"io_manager": WarehouseIOManager()}, run_config=run_config)


def test_every_pair_of_a_horizon_trains_in_one_step_and_the_summary_compares_them(panel_market):
    """One of the seed's selections (all sixteen run in CI from the command line, the same code path)."""
    _, instance, warehouse = panel_market
    names = [transformer_name("2min", p) for p in ("btc", "eth", "sol", "wld")]
    result = materialize(panel_market, [f"crypto/{n}/forecast_metrics" for n in names] + ["crypto/ssm_hippo/forecast_metrics",
                         "crypto/ssm_hippo/forecasts", f"crypto/{SUMMARY}"], TUESDAY)
    assert result.success
    steps = [e for e in result.all_events if e.event_type_value == "STEP_START"]
    assert len([e for e in steps if "panel_transformers" in e.step_key]) == 1  # the four in one step
    for name in names:
        metrics = pl.read_parquet(warehouse.path("forecast_metrics", "crypto", TUESDAY, model=name))
        assert {"price_bps_mse", "price_ticks_mae", "volume_mse", "direction_accuracy", "crossed_share"} <= set(metrics["metric"])
        assert metrics.filter(pl.col("metric") == "price_bps_mse").height == metrics["horizon_steps"][0]
        assert set(metrics["fit_scope"]) == {PREVIOUS_DAYS} and set(metrics["fit_dates"]) == {MONDAY}
    assert not warehouse.path("forecast_metrics", "crypto", TUESDAY, model="transformer_1min_btc").exists()
    summary = pl.read_parquet(warehouse.path(SUMMARY, "crypto", TUESDAY))
    assert sorted(summary["model"]) == sorted([*names, "ssm_hippo"])
    record = instance.fetch_materializations(dg.AssetKey(["crypto", SUMMARY]), limit=1).records[0]
    metadata = record.asset_materialization.metadata
    assert all(name in metadata["comparison"].value for name in names)
    assert "data:image/png;base64" in metadata["forecast_vs_realised"].value
    assert "transformer_1min_btc" in metadata["models_not_materialized"].value
    refresh_views(warehouse.root)  # the comparison in DuckDB, beside every other table
    _, rows = query(warehouse.root, "select count(distinct model) from forecast_metrics where metric = 'price_bps_mse'")
    assert rows == [(4,)]
    _, rows = query(warehouse.root, "select count(*) from panel_forecast_summary")
    assert rows == [(5,)]
    forecasts = pl.read_parquet(warehouse.path("forecasts", "crypto", TUESDAY, model="ssm_hippo"))
    assert forecasts["step"].max() == ModelSpecs.tiny().ssm_hippo.forecast and forecasts["mid_forecast"].is_finite().all()
    assert (forecasts["target_ts_ns"] > forecasts["origin_ts_ns"]).all()


def test_checkpoints_hold_the_seed_layout_and_reload_to_the_same_forecasts(panel_market):
    _, _, warehouse = panel_market
    folder = next((warehouse.root / "models" / "venue=crypto" / "model=transformer_2min_eth").rglob(f"date={TUESDAY}/*"))
    manifest, module, _ = store.load(folder, {"family": "transformer_2min_eth"},
                                     lambda m: build_transformer(panel_spec(m["config"]), CONFIG, 24))
    best = torch.load(folder / "best_model.pt", weights_only=False)
    final = torch.load(folder / "final_model.pt", weights_only=False)
    for checkpoint in (best, final):
        assert {"state_dict", "optimizer", "target_indices", "config", "history", "scaler"} <= set(checkpoint)
    assert best["target_indices"] == target_columns(CONFIG, "binance_perp", "ETHUSDT").tolist() == manifest["target_indices"]
    again = build_transformer(panel_spec(best["config"]), CONFIG, 24)
    again.load_state_dict(best["state_dict"])
    again.eval()
    x, missing, last = torch.randn(3, 24, 240), torch.zeros(3, 24, 240, dtype=torch.bool), torch.randn(3, 20)
    assert torch.equal(module(x, missing, last), again(x, missing, last))


def test_one_model_alone_on_a_same_day_split(panel_market):
    _, _, warehouse = panel_market
    result = materialize(panel_market, ["crypto/transformer_1min_sol/forecast_metrics"], MONDAY)
    assert result.success
    assert set(pl.read_parquet(warehouse.path("forecast_metrics", "crypto", MONDAY, model="transformer_1min_sol"))["fit_scope"]) == {SAME_DAY_SPLIT}
    assert not warehouse.path("forecast_metrics", "crypto", MONDAY, model="transformer_1min_btc").exists()


def test_a_date_without_its_panel_waits_and_says_for_what(panel_market):
    result = materialize(panel_market, ["crypto/ssm_hippo/forecast_metrics", "crypto/ssm_hippo/forecasts"], "2024-03-06")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.event_specific_data.error
    messages = [error.message] + [c.message for c in (error.cause, error.cause and error.cause.cause) if c]
    assert any("wait for the panel of 2024-03-06: materialize crypto/panel_5s" in m for m in messages), messages


def test_training_steps_are_in_the_gpu_pool_with_gpu_tags(panel_market):
    assets, _, _ = panel_market
    for asset in assets[:2]:
        assert asset.op.pool == GPU_POOL
        assert json.loads(asset.op.tags["dagster-k8s/config"]) == GPU_STEP_TAGS["dagster-k8s/config"]


def panel_spec(config: dict):
    training = PanelTrainingSpec(**config.pop("training"))
    return PanelTransformerSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}, training=training)


def test_nightly_schedule_asks_for_yesterdays_forecasters_once_its_panel_is_built(panel_market):
    crypto = venue_named("crypto")
    [request] = panel_forecaster_requests([crypto], datetime(2024, 3, 6, 3, tzinfo=timezone.utc))
    assert request.partition_key == TUESDAY and request.job_name is None  # the schedule's own job
    skipped = panel_forecaster_requests([crypto], datetime(2024, 3, 8, 3, tzinfo=timezone.utc))
    assert isinstance(skipped, dg.SkipReason) and "2024-03-07" in skipped.skip_message
