"""Training and forecasting of the panel forecasters (the Jung & Lee transformers, SSM-HiPPO).

**Several models train as one.** The models of one run read the same input windows, so each
batch is gathered once and every model of a forecast horizon runs as one stacked model:
``torch.func.stack_module_state`` stacks their parameters and ``torch.func.vmap`` runs them side
by side (dropout draws differ per model). Models of different horizons are separate stacks fed the
same batch. Adam is elementwise, so one optimiser over the stacked parameters updates each model
as its own optimiser would: with dropout 0, a model trained in a stack ends with the weights it
gets alone (tested). With dropout, its draws depend on the stack it trained in; a rerun of the
same selection gives the same bytes.

**Windows are shared and fixed by the specification, not by the selection**: every model reads
windows whose context and longest configured horizon fit in one segment of the split
(``datasets.panel``) and whose targets of every configured pair are present, so a model sees the
same windows whatever else was selected.

**Schedule**: Adam, the learning rate rising linearly over ``warmup_steps`` optimiser steps, then
constant. Each model keeps its best epoch by validation loss and stops after ``patience`` epochs
without improvement (its final state is the one it stopped with); training ends when every model
has stopped or after ``epochs``. Deterministic for a seed on the CPU (one thread).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from lob_platform.datasets.panel import PanelRows, PanelScaler, complete_targets, window_starts
from lob_platform.errors import TrainingDataError
from lob_platform.models.specs import PanelTrainingSpec
from lob_platform.training.sequence import one_thread

MIN_WINDOWS = 8


@dataclass(frozen=True)
class ForecastTask:
    """One model: its name, target columns (positions in the rows' columns) and horizon in steps."""

    name: str
    columns: np.ndarray
    horizon: int


class Windows:
    """The scaled rows of a window's days, the windows of each split and each model's targets."""

    def __init__(self, rows: PanelRows, scaler: PanelScaler, context: int, span_horizon: int):
        self.rows, self.scaler, self.context, self.span_horizon = rows, scaler, context, span_horizon
        self.z = scaler.standardised(rows.values)

    def starts(self, split: str, stride: int, horizon: int | None = None) -> np.ndarray:
        """Starts of the split's windows (context + ``horizon``, by default the longest configured
        one) inside one segment, every ``stride`` steps."""
        return window_starts(self.rows.segments[split], self.context + (horizon or self.span_horizon), stride)

    def complete(self, task: ForecastTask, starts: np.ndarray) -> np.ndarray:
        """Boolean per window: every target value of ``task`` is there (its last context step and horizon)."""
        return complete_targets(self.rows.values, starts, self.context, task.horizon, task.columns)

    def inputs(self, starts: np.ndarray, columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, missing) of the windows: every column, or only ``columns``."""
        return self.scaler.window_inputs(self.z, self.rows.untrusted, starts, self.context, columns)

    def targets(self, task: ForecastTask, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.scaler.window_targets(self.z, starts, self.context, task.horizon, task.columns)

    def last_raw(self, task: ForecastTask, starts: np.ndarray) -> np.ndarray:
        return self.rows.values[starts + self.context - 1][:, task.columns]

    def future_raw(self, task: ForecastTask, starts: np.ndarray) -> np.ndarray:
        return self.rows.values[(starts[:, None] + self.context + np.arange(task.horizon))[:, :, None], task.columns[None, None, :]]

    def training_windows(self, spec: PanelTrainingSpec) -> tuple[np.ndarray, np.ndarray]:
        """(training, validation) window starts shared by every model of a run."""
        train = self.starts("train", spec.train_stride)
        return (train if spec.max_train_windows is None else train[-spec.max_train_windows:]), self.starts("validation", spec.train_stride)


def untrainable(windows: Windows, tasks: list[ForecastTask], spec: PanelTrainingSpec, eval_stride: int | None) -> dict[str, str]:
    """Why each model that cannot be trained (and, with an ``eval_stride``, scored) cannot: too few
    windows with all its targets (its pair missing from the target venue, or trading only part of
    the window)."""
    train, validation = windows.training_windows(spec)
    reasons = {}
    for task in tasks:
        counts = (int(windows.complete(task, train).sum()), int(windows.complete(task, validation).sum()),
                  int(windows.complete(task, windows.starts("test", eval_stride, task.horizon)).sum()) if eval_stride else 1)
        if counts[0] < MIN_WINDOWS or counts[1] < 1 or counts[2] < 1:
            reasons[task.name] = (f"{counts[0]} training, {counts[1]} validation and {counts[2]} test windows have every "
                                  f"target value (need {MIN_WINDOWS}, 1 and 1): its pair is missing from the target venue "
                                  "on those days, or trades too little of them")
    return reasons


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(forecast, future, last raw values) of one model's batch, scaled -> a scalar loss."""


@dataclass
class TrainedForecaster:
    name: str
    best: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]
    optimizer: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_epoch: int = 0


class _Stack:
    """The models of one horizon, stacked."""

    def __init__(self, modules: list[nn.Module], members: list[int], where: torch.device):
        self.members = members
        self.params, self.buffers = stack_module_state([modules[i].to(where) for i in members])
        self.base = copy.deepcopy(modules[members[0]]).to("meta")
        self.names = [name for name, _ in modules[members[0]].named_parameters()]
        self.call = vmap(lambda p, b, *args: functional_call(self.base, (p, b), args), in_dims=(0, 0, None, None, 0),
                         randomness="different")

    def __call__(self, x: torch.Tensor, missing: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return self.call(self.params, self.buffers, x, missing, last)

    def state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: self.params[name][k].detach().cpu().clone() for name in self.names}


def train_forecasters(modules: list[nn.Module], tasks: list[ForecastTask], losses: list[Loss], windows: Windows,
                      spec: PanelTrainingSpec, where: torch.device, log: Callable[[str], None]) -> list[TrainedForecaster]:
    """Train the models together (module docstring); returns each one's best and final state,
    its optimiser state and history."""
    with one_thread():
        return _train(modules, tasks, losses, windows, spec, where, log)


def _train(modules, tasks, losses, windows, spec, where, log):
    if max(t.horizon for t in tasks) > windows.span_horizon:  # a target would reach past its window's segment
        raise ValueError(f"windows span {windows.span_horizon} steps after the context; a model forecasts "
                         f"{max(t.horizon for t in tasks)}")
    train, validation = windows.training_windows(spec)
    if too_few := untrainable(windows, tasks, spec, None):
        raise TrainingDataError("too few complete windows to train on: " + "; ".join(f"{k}: {v}" for k, v in too_few.items())
                                + ". Give the window more panel days or shorten the context and horizons.")
    torch.manual_seed(spec.seed)
    stacks = [_Stack(modules, [i for i, t in enumerate(tasks) if t.horizon == h], where)
              for h in sorted({t.horizon for t in tasks})]
    optimizer = torch.optim.Adam([p for s in stacks for p in s.params.values()], lr=spec.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(spec.warmup_steps, 1)))
    order = torch.Generator().manual_seed(spec.seed)
    n = len(tasks)
    results = [TrainedForecaster(t.name, {}, {}, {}) for t in tasks]
    best_loss, stale, active = [float("inf")] * n, [0] * n, [True] * n
    place = {i: (s, k) for s in stacks for k, i in enumerate(s.members)}  # model -> (its stack, its slot)
    log(f"{n} model(s) in {len(stacks)} stack(s): {len(train):,} training and {len(validation):,} validation windows")
    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        for s in stacks:
            s.base.train()
        shuffled = train[torch.randperm(len(train), generator=order).numpy()]
        totals, counts = np.zeros(n), np.zeros(n)
        for begin in range(0, len(shuffled), spec.batch_size):
            optimizer.zero_grad()
            per_model, valid = _batch_losses(stacks, tasks, losses, windows, shuffled[begin:begin + spec.batch_size], where)
            torch.stack(per_model).sum().backward()
            optimizer.step()
            schedule.step()
            totals += np.array([v.item() for v in per_model]) * valid
            counts += valid
        validation_losses = evaluate_losses(stacks, tasks, losses, windows, validation, where)
        seconds = time.perf_counter() - started
        for i in range(n):
            if not active[i]:
                continue
            stack, k = place[i]
            record = {"epoch": epoch, "train_loss": float(totals[i] / counts[i]), "validation_loss": float(validation_losses[i])}
            results[i].history.append(record)
            if record["validation_loss"] < best_loss[i] - 1e-9:
                best_loss[i], stale[i] = record["validation_loss"], 0
                results[i].best, results[i].best_epoch = stack.state(k), epoch
            else:
                stale[i] += 1
            if stale[i] >= spec.patience or epoch == spec.epochs:
                active[i] = False
                results[i].final, results[i].stopped_epoch = stack.state(k), epoch
                results[i].optimizer = _optimizer_state(optimizer, stack, k)
        log(f"epoch {epoch}/{spec.epochs}: validation loss " + ", ".join(
            f"{t.name} {validation_losses[i]:.4f}" for i, t in enumerate(tasks)) + f"; {len(train) * n / seconds:,.0f} model-windows/s")
        if not any(active):
            break
    return results


def _batch_losses(stacks, tasks, losses, windows, starts, where) -> tuple[list[torch.Tensor], np.ndarray]:
    """Each model's loss over the windows of the batch that have all its targets, and their counts."""
    x, missing = (torch.from_numpy(a).to(where) for a in windows.inputs(starts))
    per_model: list[torch.Tensor | None] = [None] * len(tasks)
    valid_counts = np.zeros(len(tasks))
    for s in stacks:
        targets = [windows.targets(tasks[i], starts) for i in s.members]
        last = torch.from_numpy(np.nan_to_num(np.stack([t[0] for t in targets]))).to(where)
        future = torch.from_numpy(np.nan_to_num(np.stack([t[1] for t in targets]))).to(where)
        out = s(x, missing, last)
        for k, i in enumerate(s.members):
            valid = windows.complete(tasks[i], starts)
            valid_counts[i] = valid.sum()
            keep = torch.from_numpy(valid).to(where)
            raw = torch.from_numpy(windows.last_raw(tasks[i], starts)).to(where)
            per_model[i] = losses[i](out[k][keep], future[k][keep], raw[keep]) if valid.any() else out[k].sum() * 0
    return per_model, valid_counts


@torch.no_grad()
def evaluate_losses(stacks, tasks, losses, windows, starts, where, batch_size: int = 256) -> np.ndarray:
    for s in stacks:
        s.base.eval()
    totals, counts = np.zeros(len(tasks)), np.zeros(len(tasks))
    for begin in range(0, len(starts), batch_size):
        per_model, valid = _batch_losses(stacks, tasks, losses, windows, starts[begin:begin + batch_size], where)
        totals += np.array([v.item() for v in per_model]) * valid
        counts += valid
    return totals / np.maximum(counts, 1)


def _optimizer_state(optimizer: torch.optim.Adam, stack: _Stack, k: int) -> dict:
    """Model k's slice of the stacked Adam state, in the layout of Adam over that model's parameters."""
    state = {}
    for index, name in enumerate(stack.names):
        slot = optimizer.state.get(stack.params[name], {})
        state[index] = {key: (value[k].detach().cpu().clone() if key != "step" else value.detach().cpu().clone())
                        for key, value in slot.items()}
    group = {key: value for key, value in optimizer.param_groups[0].items() if key != "params"}
    return {"state": state, "param_groups": [{**group, "params": list(range(len(stack.names)))}]}


@torch.no_grad()
def forecast(module: nn.Module, windows: Windows, task: ForecastTask, starts: np.ndarray, where: torch.device,
             batch_size: int = 256) -> np.ndarray:
    """(windows, horizon, targets) forecasts in prices and volumes of one trained model."""
    module = module.to(where).eval()
    parts = []
    with one_thread():
        for begin in range(0, len(starts), batch_size):
            chunk = starts[begin:begin + batch_size]
            x, missing = (torch.from_numpy(a).to(where) for a in windows.inputs(chunk))
            last, _ = windows.targets(task, chunk)
            parts.append(module(x, missing, torch.from_numpy(last).to(where)).double().cpu().numpy())
    scaled = np.concatenate(parts) if parts else np.zeros((0, task.horizon, len(task.columns)))
    return windows.scaler.unscale(scaled, windows.last_raw(task, starts), task.columns)


# ---- losses


def book_structure_loss(forecast_raw: torch.Tensor, levels: int, price_scale: float, volume_scale: float) -> torch.Tensor:
    """How far a forecast book (batch, horizon, levels x [bid price, bid volume, ask price, ask volume])
    is from a valid one: best bid above best ask, bids rising or asks falling with depth (in units
    of ``price_scale``), negative volumes (in units of ``volume_scale``); 0 for a valid book."""
    book = forecast_raw.reshape(*forecast_raw.shape[:-1], levels, 4)
    bid, bid_volume, ask, ask_volume = book.unbind(-1)
    relu = torch.relu
    price = relu(bid[..., 0] - ask[..., 0]) + relu(bid[..., 1:] - bid[..., :-1]).sum(-1) + relu(ask[..., :-1] - ask[..., 1:]).sum(-1)
    volume = (relu(-bid_volume) + relu(-ask_volume)).sum(-1)
    return (price / price_scale + volume / volume_scale).mean()


def transformer_loss(task: ForecastTask, scaler: PanelScaler, levels: int, structural_weight: float, where: torch.device) -> Loss:
    """MSE on the scaled targets + ``structural_weight`` x the book structure loss of the forecast
    mapped back to prices and volumes."""
    relative = torch.from_numpy(scaler.relative[task.columns]).to(where)
    center = torch.from_numpy(scaler.center[task.columns]).float().to(where)
    scale = torch.from_numpy(scaler.scale[task.columns]).float().to(where)
    price_scale = float(scaler.scale[task.columns][scaler.relative[task.columns]].mean())
    volume_scale = float(scaler.scale[task.columns][~scaler.relative[task.columns]].mean())

    def loss(out: torch.Tensor, future: torch.Tensor, last_raw: torch.Tensor) -> torch.Tensor:
        raw = torch.where(relative, last_raw.float().unsqueeze(1), center) + out * scale
        return nn.functional.mse_loss(out, future) + structural_weight * book_structure_loss(raw, levels, price_scale, volume_scale)

    return loss


def coherence_loss(weight: float) -> Loss:
    """MSE + ``weight`` x the MSE of step-to-step changes (SSM-HiPPO's temporal-coherence term)."""

    def loss(out: torch.Tensor, future: torch.Tensor, last_raw: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(out, future) + weight * nn.functional.mse_loss(out.diff(dim=1), future.diff(dim=1))

    return loss
