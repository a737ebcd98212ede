"""The sequence-model training loop (the LSTM, and later sequence models with the same
interface): mini-batches of windows gathered on the fly, Adam, cross-entropy, early stopping on
validation loss (the best epoch's weights are kept), progress per epoch.

Deterministic for a seed on the CPU: training and prediction run on one CPU thread
(``one_thread``), because torch's CPU kernels sum in a thread-count-dependent order, so the same
seed would give different bytes on a worker with another thread count."""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from lob_platform.datasets.windows import gather


def device(log: Callable[[str], None]) -> torch.device:
    if torch.cuda.is_available():
        log(f"training on CUDA ({torch.cuda.get_device_name(0)})")
        return torch.device("cuda")
    log("no CUDA device: training on the CPU")
    return torch.device("cpu")


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batches(matrix: np.ndarray, ends: np.ndarray, length: int, batch_size: int, where: torch.device):
    """Windows ending at ``ends`` in order, every one of them (the last batch may be smaller)."""
    for start in range(0, len(ends), batch_size):
        chunk = ends[start:start + batch_size]
        yield chunk, torch.from_numpy(gather(matrix, chunk, length)).to(where)


def fit_sequence_model(model: nn.Module, matrix: np.ndarray, y: np.ndarray, train_ends: np.ndarray,
                       val_ends: np.ndarray, length: int, spec, where: torch.device,
                       log: Callable[[str], None]) -> tuple[nn.Module, list[dict]]:
    """Train ``model`` on windows ending at ``train_ends`` (targets ``y[end]``); returns the best
    epoch's model (by validation loss) and the history, one dict per epoch."""
    with one_thread():
        return _fit(model, matrix, y, train_ends, val_ends, length, spec, where, log)


def _fit(model, matrix, y, train_ends, val_ends, length, spec, where, log):
    torch.manual_seed(spec.seed)
    order = torch.Generator().manual_seed(spec.seed)
    model = model.to(where)
    optimiser = torch.optim.Adam(model.parameters(), lr=spec.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    targets = torch.from_numpy(y).to(where)
    best, best_loss, stale, history = copy.deepcopy(model.state_dict()), float("inf"), 0, []
    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        model.train()
        shuffled = train_ends[torch.randperm(len(train_ends), generator=order).numpy()]
        total = 0.0
        for chunk, windows in batches(matrix, shuffled, length, spec.batch_size, where):
            optimiser.zero_grad()
            loss = loss_fn(model(windows), targets[chunk])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(chunk)
        val_proba = predict_proba(model, matrix, val_ends, length, spec.batch_size, where)
        val_loss = float(-np.mean(np.log(np.clip(val_proba[np.arange(len(val_ends)), y[val_ends]], 1e-15, 1))))
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, "train_loss": total / len(train_ends), "validation_loss": val_loss,
                  "validation_accuracy": float(np.mean(val_proba.argmax(axis=1) == y[val_ends]))}
        history.append(record)  # no timings: a rerun writes the same manifest
        log(f"epoch {epoch}/{spec.epochs}: train loss {record['train_loss']:.4f}, validation loss {val_loss:.4f}, "
            f"accuracy {record['validation_accuracy']:.4f}, {len(train_ends) / seconds:,.0f} windows/s")
        if val_loss < best_loss - 1e-6:
            best, best_loss, stale = copy.deepcopy(model.state_dict()), val_loss, 0
        else:
            stale += 1
            if stale >= spec.patience:
                log(f"early stop: no better validation loss for {spec.patience} epochs; keeping epoch {epoch - stale}")
                break
    model.load_state_dict(best)
    return model, history


@torch.no_grad()
def predict_proba(model: nn.Module, matrix: np.ndarray, ends: np.ndarray, length: int, batch_size: int,
                  where: torch.device) -> np.ndarray:
    model.eval()
    with one_thread():
        parts = [torch.softmax(model(windows), dim=1).double().cpu().numpy()
                 for _, windows in batches(matrix, ends, length, max(batch_size, 1024), where)]
    n_classes = model.head.out_features
    return np.concatenate(parts) if parts else np.zeros((0, n_classes))
