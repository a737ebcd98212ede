"""The panel forecasters end to end, without Dagster: from the panels of a training window and the
test day to trained models, their forecasts on the test day and their errors beside persistence
and DLinear.

``fit_transformers`` trains any selection of the 16 Jung & Lee transformers (horizon x pair)
together; ``fit_ssm`` trains the SSM-HiPPO forecaster of one exchange-pair. Both return a
``ForecastResult`` per model: the trained state (best and final, optimiser, history), the scaler,
the test day's forecasts and the error rows (``training.forecast_metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import torch

from lob_platform.datasets.panel import (SSM_CHANNELS, SSM_RELATIVE, PanelScaler, column_attributes, panel_matrix,
                                         price_columns, split_rows, ssm_matrix, target_columns)
from lob_platform.errors import TrainingDataError
from lob_platform.features.crypto_panel import PanelConfig
from lob_platform.models.panel_baselines import DLinear
from lob_platform.models.panel_transformer import PanelTransformer
from lob_platform.models.specs import HORIZONS, PANEL_PAIRS, PanelTransformerSpec, SSMHippoSpec
from lob_platform.models.ssm_hippo import SSMHippo
from lob_platform.sources.crypto import CRYPTO_TICKS
from lob_platform.training import forecast_metrics as fm
from lob_platform.training.panel import (ForecastTask, TrainedForecaster, Windows, coherence_loss, forecast,
                                         train_forecasters, transformer_loss, untrainable)

MAX_DLINEAR_WINDOWS = 20_000


def transformer_name(horizon: str, pair: str) -> str:
    """``transformer_1min_btc``: the model (and its asset) of a horizon and a pair."""
    return f"transformer_{horizon}_{pair}"


@dataclass
class ForecastResult:
    name: str
    task: ForecastTask
    trained: TrainedForecaster
    module: torch.nn.Module  # the best epoch's model
    scaler: PanelScaler
    origins_ns: np.ndarray  # grid time of each test window's last context step
    forecast: np.ndarray  # (windows, horizon, targets) prices and volumes
    realised: np.ndarray
    forecast_mid: np.ndarray  # (windows, horizon)
    realised_mid: np.ndarray
    errors: list[dict]
    summary: dict


def build_transformer(spec: PanelTransformerSpec, config: PanelConfig, horizon_steps: int) -> PanelTransformer:
    return PanelTransformer(torch.from_numpy(column_attributes(config)), 4 * config.levels, spec.context, horizon_steps,
                            spec.d_model, spec.n_heads, spec.encoder_layers, spec.decoder_layers, spec.dropout)


def build_ssm(spec: SSMHippoSpec) -> SSMHippo:
    return SSMHippo(len(SSM_CHANNELS), spec.lookback, spec.forecast, spec.patch_len, spec.patch_stride, spec.d_model,
                    spec.d_state, spec.n_layers, spec.n_heads, spec.dropout)


def _seeded(seed: int, name: str, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A model initialised from its own seed (the spec's seed and its name), whatever else trains beside it."""
    torch.manual_seed(seed * 1_000_003 + sum(name.encode()) * 7919 + len(name))
    return build()


def fit_transformers(panels: dict[str, pl.DataFrame], date: str, scope: str, train_fraction: float,
                     validation_fraction: float, spec: PanelTransformerSpec, config: PanelConfig,
                     selected: list[tuple[str, str]], where: torch.device,
                     log: Callable[[str], None]) -> tuple[list[ForecastResult], dict[str, str]]:
    """Train the (horizon, pair) transformers of ``selected`` on the window's panels (ISO date ->
    panel frame, ``date`` included) and score them on ``date``'s test rows. Returns the results and,
    for each selected model that cannot be trained and scored (its pair missing from the target
    venue in the window or on ``date``), why; the others train. None trainable is an error."""
    every_target = np.concatenate([target_columns(config, spec.target_exchange, PANEL_PAIRS[p]) for p in spec.pairs])
    rows = split_rows({d: (*panel_matrix(f, config), f["ts_ns"].to_numpy()) for d, f in panels.items()}, date, scope,
                      train_fraction, validation_fraction, every_target)
    scaler = PanelScaler.fit(rows.values, rows.rows_of("train"), price_columns(config), spec.context)
    # every window spans the longest configured (or selected) horizon: one set of windows whatever is selected
    windows = Windows(rows, scaler, spec.context, max(HORIZONS[h] for h in {*spec.horizons, *(h for h, _ in selected)}))
    every_task = [ForecastTask(transformer_name(h, p), target_columns(config, spec.target_exchange, PANEL_PAIRS[p]), HORIZONS[h])
                  for h, p in selected]
    skipped = untrainable(windows, every_task, spec.training, spec.training.eval_stride)
    if len(skipped) == len(every_task):
        raise TrainingDataError("no selected transformer can be trained on this window: "
                                + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    tasks = [t for t in every_task if t.name not in skipped]
    pairs = {transformer_name(h, p): p for h, p in selected}
    modules = [_seeded(spec.training.seed, t.name, lambda t=t: build_transformer(spec, config, t.horizon)) for t in tasks]
    losses = [transformer_loss(t, scaler, config.levels, spec.structural_weight, where) for t in tasks]
    trained = train_forecasters(modules, tasks, losses, windows, spec.training, where, log)
    results = []
    for task, state in zip(tasks, trained):
        module = build_transformer(spec, config, task.horizon)
        module.load_state_dict(state.best)
        tick = CRYPTO_TICKS.get(PANEL_PAIRS[pairs[task.name]])
        results.append(_evaluate(task, state, module, windows, spec.training.eval_stride, where,
                                 lambda last: fm.book_quantities(config.levels, tick, fm.book_mid(last)),
                                 fm.book_mid, config.levels))
    return results, skipped


def fit_ssm(panels: dict[str, pl.DataFrame], date: str, scope: str, train_fraction: float, validation_fraction: float,
            spec: SSMHippoSpec, config: PanelConfig, where: torch.device, log: Callable[[str], None]) -> ForecastResult:
    """Train the SSM-HiPPO forecaster of ``spec.exchange``.``spec.pair`` and score it on ``date``."""
    channels = np.arange(len(SSM_CHANNELS))
    rows = split_rows({d: (*ssm_matrix(f, spec.exchange, spec.pair, config), f["ts_ns"].to_numpy()) for d, f in panels.items()},
                      date, scope, train_fraction, validation_fraction, channels[[0]])
    relative = np.isin(np.array(SSM_CHANNELS), SSM_RELATIVE)
    scaler = PanelScaler.fit(rows.values, rows.rows_of("train"), relative, spec.lookback)
    windows = Windows(rows, scaler, spec.lookback, spec.forecast)
    task = ForecastTask("ssm_hippo", channels, spec.forecast)
    module = _seeded(spec.training.seed, task.name, lambda: build_ssm(spec))
    [state] = train_forecasters([module], [task], [coherence_loss(spec.coherence_weight)], windows, spec.training, where, log)
    best = build_ssm(spec)
    best.load_state_dict(state.best)
    tick = CRYPTO_TICKS.get(spec.pair)
    index = {name: i for i, name in enumerate(SSM_CHANNELS)}
    volumes = np.array([i for name, i in index.items() if "_volume_" in name or name in ("bid_depth", "ask_depth")])

    def quantities(last: np.ndarray) -> dict:
        in_ticks = {"mid_ticks": (channels[[0]], tick), "spread_ticks": (channels[[index["spread"]]], tick)} if tick else {}
        return {"mid_bps": (channels[[0]], last[:, 0] / 1e4), **in_ticks, "volume": (volumes, 1.0),
                "imbalance": (np.array([i for name, i in index.items() if "imbalance" in name]), 1.0)}

    return _evaluate(task, state, best, windows, spec.training.eval_stride, where, quantities, lambda f: f[..., 0], None)


def _evaluate(task: ForecastTask, state: TrainedForecaster, module: torch.nn.Module, windows: Windows, stride: int,
              where: torch.device, quantities: Callable[[np.ndarray], dict], mid_of: Callable[[np.ndarray], np.ndarray],
              book_levels: int | None) -> ForecastResult:
    """The model, persistence and DLinear on every test window of the day (a forecast origin every ``stride`` steps)."""
    test = windows.starts("test", stride, task.horizon)
    complete = windows.complete(task, test)
    test, skipped = test[complete], int((~complete).sum())
    if not len(test):
        raise TrainingDataError(f"{task.name}: the test day has no complete window ({skipped} skipped for missing "
                                "targets): nothing to score.")
    predicted = forecast(module, windows, task, test, where)
    realised = windows.future_raw(task, test)
    last = windows.last_raw(task, test)
    persistence = np.repeat(last[:, None, :], task.horizon, axis=1)
    train = windows.starts("train", stride, task.horizon)
    train = train[windows.complete(task, train)][-MAX_DLINEAR_WINDOWS:]
    linear = DLinear.fit(windows.inputs(train, task.columns)[0], *windows.targets(task, train))
    last_test, _ = windows.targets(task, test)
    dlinear = windows.scaler.unscale(linear.predict(windows.inputs(test, task.columns)[0], last_test), last, task.columns)
    forecasts = {"model": predicted, "persistence": persistence, "dlinear": dlinear}
    measured = quantities(last)
    errors = fm.error_rows(realised, forecasts, measured)
    first_quantity = next(iter(measured))  # the headline: prices (or the mid) in basis points
    beats, z, words = fm.verdict(realised, forecasts, first_quantity, *measured[first_quantity],
                                 spacing=-(-task.horizon // stride))
    true_mid, last_mid = mid_of(realised), mid_of(last)
    summary = {
        "model": task.name, "horizon_steps": task.horizon, "test_windows": len(test),
        "test_windows_skipped": skipped,  # a target missing: a stale gap beyond the fill limit, a pair not trading yet
        **{f"{first_quantity}_mse_{k}": v for k, v in fm.mean_over_steps(errors, first_quantity, "mse").items()},
        **{f"{first_quantity}_mae_{k}": v for k, v in fm.mean_over_steps(errors, first_quantity, "mae").items()},
        "direction_accuracy": fm.direction_accuracy(true_mid, mid_of(predicted), last_mid),
        "direction_accuracy_dlinear": fm.direction_accuracy(true_mid, mid_of(dlinear), last_mid),
        "beats_persistence": beats, "z_vs_persistence": z, "verdict": words,
        "best_epoch": state.best_epoch, "stopped_epoch": state.stopped_epoch,
    }
    if book_levels:
        summary |= fm.invalid_books(predicted, book_levels)
    origins = windows.rows.ts_ns[test + windows.context - 1]
    return ForecastResult(task.name, task, state, module, windows.scaler, origins, predicted, realised, mid_of(predicted),
                          true_mid, errors, summary)


def checkpoint(result: ForecastResult, config: dict, which: str) -> dict:
    """The seed's checkpoint layout: state dict, optimiser state, target indices, configuration, history."""
    state = result.trained.best if which == "best" else result.trained.final
    return {"state_dict": state, "optimizer": result.trained.optimizer, "target_indices": result.task.columns.tolist(),
            "horizon": result.task.horizon, "config": config, "history": result.trained.history,
            "epoch": result.trained.best_epoch if which == "best" else result.trained.stopped_epoch,
            "scaler": result.scaler.as_dict()}

