"""Training throughput of the panel forecasters through the platform's training loop
(``lob_platform.training.panel.train_forecasters``), and the baseline in the same run: the same
sixteen transformers trained one after another, as the seed's scripts do.

Data: a panel-shaped random walk (240 columns, every value present), so throughput depends only on
the model and the loop; each measurement trains one epoch on ``--windows`` training windows and
scores the validation windows, as a real epoch does. Figures, per configuration (``tiny``: CI and
the main job; ``seed``: the seeds' values) and device (the CPU, and CUDA when there is one):

- one transformer (``transformer_1min_btc``);
- all sixteen stacked in one process (one batch read, vmap per horizon);
- all sixteen one after another (the baseline);
- SSM-HiPPO.

Throughput is training samples per second: windows x models per second of the epoch (the
validation pass included). From the sixteen-stacked rate it projects the time of the seed's
budget for one day of panel (17,280 windows, 50 epochs, sixteen models) on that device.

    python benchmarks/train_panel.py [--sizes tiny,seed] [--windows 512] [--seed-windows 48]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from features import machine  # noqa: E402

from lob_platform.datasets.panel import SSM_CHANNELS, PanelRows, PanelScaler, price_columns, target_columns  # noqa: E402
from lob_platform.features.crypto_panel import PanelConfig  # noqa: E402
from lob_platform.models.specs import HORIZONS, PANEL_PAIRS, ModelSpecs  # noqa: E402
from lob_platform.training.panel import ForecastTask, Windows, coherence_loss, train_forecasters, transformer_loss  # noqa: E402
from lob_platform.training.panel_forecast import build_ssm, build_transformer, transformer_name  # noqa: E402

CONFIG = PanelConfig()
DAY_WINDOWS, SEED_EPOCHS = 17_280, 50


def panel_rows(n_windows: int, span: int, columns: int, price: np.ndarray, seed: int = 0) -> PanelRows:
    """Rows for ``n_windows`` training windows of ``span`` rows and an eighth as many validation windows."""
    cut = n_windows + span - 1
    n_rows = cut + max(n_windows // 8, 1) + span - 1
    rng = np.random.default_rng(seed)
    values = np.where(price, 100.0 + np.cumsum(rng.normal(0, 0.01, (n_rows, columns)), axis=0),
                      rng.lognormal(0, 1, (n_rows, columns)))
    return PanelRows(values, np.zeros_like(values, dtype=bool), np.arange(n_rows) * 5_000_000_000,
                     {"train": [(0, cut)], "validation": [(cut, n_rows)], "test": []})


def transformer_run(spec, names: list[tuple[str, str]], windows: Windows, where: torch.device) -> float:
    tasks = [ForecastTask(transformer_name(h, p), target_columns(CONFIG, spec.target_exchange, PANEL_PAIRS[p]), HORIZONS[h])
             for h, p in names]
    modules = [build_transformer(spec, CONFIG, t.horizon) for t in tasks]
    losses = [transformer_loss(t, windows.scaler, CONFIG.levels, spec.structural_weight, where) for t in tasks]
    return _timed(lambda: train_forecasters(modules, tasks, losses, windows, spec.training, where, lambda _: None),
                  windows, len(tasks), spec.training)


def _timed(train, windows: Windows, n_models: int, training) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    trained = len(windows.training_windows(training)[0])
    return trained * n_models / seconds


def measure(size: str, n_windows: int, where: torch.device) -> list[tuple[str, float]]:
    specs = ModelSpecs.tiny() if size == "tiny" else ModelSpecs()
    training = dataclasses.replace(specs.panel_transformer.training, epochs=1, train_stride=1, max_train_windows=n_windows)
    spec = dataclasses.replace(specs.panel_transformer, training=training)
    span = spec.context + max(HORIZONS.values())
    rows = panel_rows(n_windows, span, len(price_columns(CONFIG)), price_columns(CONFIG))
    scaler = PanelScaler.fit(rows.values, rows.rows_of("train"), price_columns(CONFIG), spec.context)
    windows = Windows(rows, scaler, spec.context, max(HORIZONS.values()))
    sixteen = [(h, p) for h in HORIZONS for p in PANEL_PAIRS]
    transformer_run(spec, sixteen[:1], windows, where)  # warm-up, untimed: first-call allocations and dispatch
    figures = [("one transformer", transformer_run(spec, sixteen[:1], windows, where)),
               ("sixteen stacked", transformer_run(spec, sixteen, windows, where))]
    one_by_one = [1 / transformer_run(spec, [name], windows, where) for name in sixteen]
    figures.append(("sixteen one after another (baseline)", 16 / sum(one_by_one)))
    ssm_spec = specs.ssm_hippo
    ssm_training = dataclasses.replace(ssm_spec.training, epochs=1, train_stride=1, max_train_windows=n_windows)
    relative = np.arange(len(SSM_CHANNELS)) < 3
    ssm_rows = panel_rows(n_windows, ssm_spec.lookback + ssm_spec.forecast, len(SSM_CHANNELS), relative)
    ssm_windows = Windows(ssm_rows, PanelScaler.fit(ssm_rows.values, ssm_rows.rows_of("train"), relative, ssm_spec.lookback),
                          ssm_spec.lookback, ssm_spec.forecast)
    task = ForecastTask("ssm_hippo", np.arange(len(SSM_CHANNELS)), ssm_spec.forecast)
    figures.append(("SSM-HiPPO", _timed(lambda: train_forecasters([build_ssm(ssm_spec)], [task], [coherence_loss(ssm_spec.coherence_weight)],
                                                                   ssm_windows, ssm_training, where, lambda _: None),
                                        ssm_windows, 1, ssm_training)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,seed")
    parser.add_argument("--windows", type=int, default=512, help="training windows per measurement (tiny)")
    parser.add_argument("--seed-windows", type=int, default=48, help="training windows per measurement (seed settings)")
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"machine: {machine()}; torch {torch.__version__}; CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none (CPU only)'}")
    print(f"{'device':6} {'size':5} {'what':38} {'samples/s':>10}")
    for where in devices:
        for size in args.sizes.split(","):
            figures = measure(size, args.windows if size == "tiny" else args.seed_windows, where)
            for what, rate in figures:
                print(f"{where.type:6} {size:5} {what:38} {rate:10,.0f}")
            stacked = dict(figures)["sixteen stacked"]
            baseline = dict(figures)["sixteen one after another (baseline)"]
            budget_h = DAY_WINDOWS * SEED_EPOCHS * 16 / stacked / 3600
            print(f"{where.type:6} {size:5} stacked / one after another: {stacked / baseline:.2f}x; the seed's budget for a day "
                  f"(16 models x {DAY_WINDOWS:,} windows x {SEED_EPOCHS} epochs) would take {budget_h:,.1f} h at this rate")


if __name__ == "__main__":
    main()
