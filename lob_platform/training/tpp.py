"""Training and scoring the Mamba TPP on an event stream (pure: no Dagster).

- ``event_stream``: a window's feature rows -> the tokens of ``lob_platform.tokens.bins`` under the
  day's bin edges, the time features, the marks and gaps, and contiguous segments (one per date
  and split: a training window never crosses a day boundary, a split or a purge gap).
- ``fit_tpp``: AdamW, linear warm-up to ``lr_peak`` then cosine decay to a tenth of it, ``steps``
  optimiser steps of ``batch_size`` x ``grad_accumulation`` windows of ``seq_len`` events drawn
  (seeded) from windows starting every ``stride`` events of the training segments; bf16 autocast
  on CUDA; the validation loss every ``validation_every`` steps, and the best state is kept.
- ``score``: every test event once, from the window that gives it the most context inside the
  test part (at least ``seq_len - stride`` earlier events where the part has them); with
  ``context=1``, the same model with its sequence context removed (each event alone).
- ``PoissonMarginal``: the homogeneous Poisson process with the marks' marginal frequencies, fit
  on the training rows.

Deterministic for a seed on the CPU (one thread, as the other sequence models).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import torch

from lob_platform.errors import TrainingDataError
from lob_platform.models.mamba import kernels_available
from lob_platform.models.specs import TPP_MARKS, MambaTPPSpec
from lob_platform.models.tpp import INPUT_TOKENS, MARK_TOKENS, MambaTPP, Vocabulary, fine_per_coarse, median
from lob_platform.tokens.bins import CATEGORICAL_VOCABULARY, BinEdges, compute_token_bins
from lob_platform.training.sequence import one_thread

Log = Callable[[str], None]
FEATURE_COLUMNS = ["event_row", "ts_ns", "source_row", "price_change_ticks", "log_size", "log_inter_arrival_s", "level",
                   "event_type", "side", "inter_arrival_ns"]
"""The feature columns the TPP reads."""
COMPONENTS = ("time", *TPP_MARKS)
COARSE, FINE = TPP_MARKS.index("price_coarse"), TPP_MARKS.index("price_fine")
LABEL = "next_event"  # the TPP's one model per day, and its rows in model_metrics
MIN_TRAIN_WINDOWS = 8
MAX_VALIDATION_WINDOWS = 64
SCORE_BATCH = 64


@dataclass
class EventStream:
    """One row per event, in time order. Event i's inputs predict event i + 1's gap and marks."""

    tokens: np.ndarray  # (n, len(INPUT_TOKENS)) int64
    continuous: np.ndarray  # (n, 2) float32
    marks: np.ndarray  # (n, len(TPP_MARKS)) int64
    gap_s: np.ndarray  # (n,) float64: seconds since the previous event
    segment: np.ndarray  # (n,) int64: contiguous runs of one date and split
    split: np.ndarray  # (n,) str or None
    clock_s: float  # the venue's timestamp resolution, seconds

    def __len__(self) -> int:
        return len(self.gap_s)


def vocabulary(bins: BinEdges, time_scale: float, clock_s: float) -> Vocabulary:
    sizes = bins.vocabulary()
    categorical = {f"{f}_token": n + 1 for f, n in CATEGORICAL_VOCABULARY.items()}  # + a null token (status rows)
    inputs = {name: categorical.get(name, sizes.get(name)) for name in INPUT_TOKENS}
    marks = {mark: categorical.get(column, sizes.get(column)) for mark, column in MARK_TOKENS.items()}
    return Vocabulary(inputs, marks, fine_per_coarse(bins.bins("price_change_ticks"), bins.n_coarse), time_scale, clock_s)


def time_scaling(train: pl.DataFrame) -> dict:
    """What the time features are scaled with, from training rows only."""
    gaps = train["inter_arrival_ns"].cast(pl.Float64) / 1e9
    log_gap = train["log_inter_arrival_s"].cast(pl.Float64)
    if train.height < 2:
        raise TrainingDataError("the training window has fewer than two events: nothing to learn inter-arrival times from")
    return {"mean_gap_s": max(float(gaps.mean()), 1e-6), "log_gap_mean": float(log_gap.mean()),
            "log_gap_std": float(log_gap.std()) or 1.0}


def event_stream(rows: pl.DataFrame, bins: BinEdges, scaling: dict, clock_s: float) -> EventStream:
    """``rows``: feature rows (``FEATURE_COLUMNS``) with ``date`` and ``split``, in time order;
    ``clock_s``: the venue's timestamp resolution."""
    tokens = compute_token_bins(rows, bins)
    for name, n in CATEGORICAL_VOCABULARY.items():
        tokens = tokens.with_columns(pl.col(f"{name}_token").fill_null(n))
    log_gap = (rows["log_inter_arrival_s"].cast(pl.Float64).to_numpy() - scaling["log_gap_mean"]) / scaling["log_gap_std"]
    gap_ns = rows["inter_arrival_ns"].cast(pl.Int64).fill_null(0).to_numpy()
    split = rows["split"].cast(pl.String).to_numpy()
    run = np.r_[True, (rows["date"].to_numpy()[1:] != rows["date"].to_numpy()[:-1]) | (split[1:] != split[:-1])]
    return EventStream(
        tokens=tokens.select(INPUT_TOKENS).to_numpy().astype(np.int64),
        continuous=np.stack([log_gap, (gap_ns == 0)], axis=1).astype(np.float32),
        marks=tokens.select(list(MARK_TOKENS.values())).to_numpy().astype(np.int64),
        gap_s=gap_ns / 1e9, segment=np.cumsum(run) - 1, split=split, clock_s=clock_s)


def window_starts_in(stream: EventStream, split: str, length: int, stride: int) -> np.ndarray:
    """Starts of windows of ``length`` inputs (plus the event after the last) inside one segment of ``split``."""
    starts = []
    boundaries = np.flatnonzero(np.r_[True, np.diff(stream.segment) != 0, True])
    for first, end in zip(boundaries[:-1], boundaries[1:]):
        if stream.split[first] != split or end - first < length + 1:
            continue
        starts.append(np.arange(first, end - length, stride))
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def batch(stream: EventStream, starts: np.ndarray, length: int, where: torch.device) -> dict[str, torch.Tensor]:
    """Inputs of events start..start+length-1 and the targets of the event after each."""
    index = starts[:, None] + np.arange(length)[None, :]
    target = index + 1
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(where)  # noqa: E731
    return {"tokens": as_tensor(stream.tokens[index]), "continuous": as_tensor(stream.continuous[index]),
            "marks": as_tensor(stream.marks[target]), "gap_s": as_tensor(stream.gap_s[target])}


def run_model(model: MambaTPP, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    coarse = b["marks"][..., COARSE]
    return model.losses(model(b["tokens"], b["continuous"], coarse), b["gap_s"], b["marks"])


def learning_rate(spec: MambaTPPSpec, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 10% of ``lr_peak`` at ``steps``."""
    if step < spec.warmup_steps:
        return spec.lr_peak * (step + 1) / spec.warmup_steps
    progress = min(1.0, (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps))
    return spec.lr_peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def uses_kernels(spec: MambaTPPSpec, where: torch.device) -> bool:
    """Whether training on ``where`` runs mamba-ssm's kernels: on CUDA, where they are installed."""
    return where.type == "cuda" and spec.backbone == "mamba" and kernels_available()


def fit_tpp(stream: EventStream, vocab: Vocabulary, spec: MambaTPPSpec, where: torch.device, log: Log,
            where_text: str = "") -> tuple[MambaTPP, list[dict]]:
    """Train (module docstring); returns the best model by validation loss, on the CPU, and the history."""
    train_starts = window_starts_in(stream, "train", spec.seq_len, spec.stride)
    validation_starts = window_starts_in(stream, "validation", spec.seq_len, spec.seq_len)
    validation_starts = validation_starts[np.unique(np.linspace(0, len(validation_starts) - 1,
                                                                min(len(validation_starts), MAX_VALIDATION_WINDOWS)).astype(int))]
    if len(train_starts) < MIN_TRAIN_WINDOWS or not len(validation_starts):
        raise TrainingDataError(
            f"{where_text}: {len(train_starts)} training and {len(validation_starts)} validation windows of {spec.seq_len} "
            f"events; at least {MIN_TRAIN_WINDOWS} and 1 are needed. Lower seq_len or widen the training window.")
    with one_thread():
        torch.manual_seed(spec.seed)
        model = MambaTPP(spec, vocab, use_kernels=uses_kernels(spec, where)).to(where)
        decay = [p for p in model.parameters() if p.ndim >= 2 and not getattr(p, "_no_weight_decay", False)]
        rest = [p for p in model.parameters() if p.ndim < 2 or getattr(p, "_no_weight_decay", False)]
        optimiser = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                                       {"params": rest, "weight_decay": 0.0}], lr=spec.lr_peak)
        draw = np.random.default_rng(spec.seed)
        autocast = where.type == "cuda" and spec.mixed_precision
        best, best_loss, history, running = copy.deepcopy(model.state_dict()), math.inf, [], []
        log(f"Mamba TPP ({spec.backbone} backbone, {'mamba-ssm kernels' if uses_kernels(spec, where) else 'pure PyTorch'}, "
            f"{where.type}): "
            f"{len(train_starts):,} training windows, {len(validation_starts)} validation windows, {spec.steps} steps")
        for step in range(spec.steps):
            model.train()
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(spec, step)
            optimiser.zero_grad(set_to_none=True)
            for _ in range(spec.grad_accumulation):
                b = batch(stream, draw.choice(train_starts, spec.batch_size), spec.seq_len, where)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                    loss = model.objective(run_model(model, b)) / spec.grad_accumulation
                loss.backward()
                running.append(loss.item() * spec.grad_accumulation)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            if (step + 1) % spec.validation_every == 0 or step + 1 == spec.steps:
                validation = evaluate_loss(model, stream, validation_starts, spec.seq_len, where, autocast)
                record = {"step": step + 1, "train_loss": float(np.mean(running)), "validation_loss": validation,
                          "learning_rate": learning_rate(spec, step)}
                history.append(record)
                running = []
                log(f"step {step + 1}/{spec.steps}: train loss {record['train_loss']:.4f}, validation loss {validation:.4f}")
                if validation < best_loss - 1e-6:
                    best, best_loss = copy.deepcopy(model.state_dict()), validation
        model.load_state_dict(best)
    pure = MambaTPP(spec, vocab)  # what a stored model loads into: the CPU runs it, whatever trained it
    pure.load_state_dict({name: value.cpu() for name, value in model.state_dict().items()})
    return pure.eval(), history


@torch.no_grad()
def evaluate_loss(model: MambaTPP, stream: EventStream, starts: np.ndarray, length: int, where: torch.device,
                  autocast: bool = False) -> float:
    model.eval()
    total = []
    for i in range(0, len(starts), SCORE_BATCH):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            total.append(model.objective(run_model(model, batch(stream, starts[i:i + SCORE_BATCH], length, where))).item())
    return float(np.mean(total))


# ---- scoring the test part


@dataclass
class Scores:
    """Per scored event (``events``: positions in the stream): each component's NLL, each mark's
    predicted probability ranks of the truth, and the predicted median gap."""

    events: np.ndarray
    nll: dict[str, np.ndarray]
    rank: dict[str, np.ndarray]  # 0: the truth was the most probable token
    predicted: dict[str, np.ndarray]  # the most probable token of each mark
    median_gap_s: np.ndarray


def scored_windows(first: int, end: int, length: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, window length, first scored position) covering targets first+1..end-1 once each:
    inputs start..start+length-1 predict the next events; a window scores only the targets the
    previous one did not."""
    inputs = end - 1 - first
    if inputs < 1:
        return []
    length = min(length, inputs)
    starts = list(range(first, end - 1 - length + 1, stride))
    if starts[-1] != end - 1 - length:
        starts.append(end - 1 - length)
    windows, covered = [], first
    for start in starts:
        windows.append((start, length, covered - start))
        covered = start + length
    return windows


@torch.no_grad()
def score(model: MambaTPP, stream: EventStream, split: str, context: int | None = None) -> Scores:
    """Every event of ``split`` after its first, predicted from the events of the same split before
    it: up to ``seq_len`` of them (``context=None``), or only its predecessor (``context=1``)."""
    model.eval()
    spec = model.spec
    boundaries = np.flatnonzero(np.r_[True, np.diff(stream.segment) != 0, True])
    windows = []
    for first, end in zip(boundaries[:-1], boundaries[1:]):
        if stream.split[first] == split:
            length = context or spec.seq_len
            windows += scored_windows(first, end, length, context or spec.stride)
    parts: dict[str, list] = {"events": [], "median": [], **{f"nll_{c}": [] for c in COMPONENTS},
                              **{f"rank_{m}": [] for m in TPP_MARKS}, **{f"pred_{m}": [] for m in TPP_MARKS}}
    with one_thread():
        for length in sorted({w[1] for w in windows}):
            same = [w for w in windows if w[1] == length]
            for i in range(0, len(same), SCORE_BATCH if length > 1 else 4096):
                chunk = same[i:i + (SCORE_BATCH if length > 1 else 4096)]
                b = batch(stream, np.array([w[0] for w in chunk]), length, torch.device("cpu"))
                coarse = b["marks"][..., COARSE]
                out = model(b["tokens"], b["continuous"], coarse)
                losses = model.losses(out, b["gap_s"], b["marks"])
                keep = torch.zeros(len(chunk), length, dtype=torch.bool)
                for row, (_, _, first_scored) in enumerate(chunk):
                    keep[row, first_scored:] = True
                events = torch.tensor([w[0] for w in chunk])[:, None] + torch.arange(length)[None, :] + 1
                parts["events"].append(events[keep].numpy())
                for c in COMPONENTS:
                    parts[f"nll_{c}"].append(losses[c][keep].double().numpy())
                for j, m in enumerate(TPP_MARKS):
                    logits = out[m][keep]
                    truth = b["marks"][..., j][keep]
                    parts[f"rank_{m}"].append((logits > logits.gather(1, truth[:, None])).sum(1).numpy())
                    parts[f"pred_{m}"].append(logits.argmax(1).numpy())
                scale = model.vocabulary.time_scale
                floor = model.vocabulary.clock_s / scale
                parts["median"].append(median(out["time"][keep], spec.time_distribution, floor).numpy() * scale)
    cat = lambda key: np.concatenate(parts[key]) if parts[key] else np.zeros(0)  # noqa: E731
    order = np.argsort(cat("events"), kind="stable")
    return Scores(cat("events").astype(np.int64)[order], {c: cat(f"nll_{c}")[order] for c in COMPONENTS},
                  {m: cat(f"rank_{m}")[order] for m in TPP_MARKS}, {m: cat(f"pred_{m}")[order] for m in TPP_MARKS},
                  cat("median")[order])


# ---- the Poisson baseline


@dataclass
class PoissonMarginal:
    """A homogeneous Poisson process (rate: 1 / the training window's mean gap) whose marks are drawn
    from their training frequencies (add-one smoothed; the fine price bin from its frequency
    within the true coarse group)."""

    rate: float
    frequencies: dict[str, np.ndarray]
    fine_given_coarse: np.ndarray  # (coarse, fine)
    clock_s: float

    @classmethod
    def fit(cls, stream: EventStream, vocab: Vocabulary) -> "PoissonMarginal":
        train = stream.split == "train"
        frequencies = {}
        for j, m in enumerate(TPP_MARKS):
            counts = np.bincount(stream.marks[train, j], minlength=vocab.marks[m]) + 1.0
            frequencies[m] = counts / counts.sum()
        joint = np.ones((vocab.marks["price_coarse"], vocab.marks["price_fine"]))
        np.add.at(joint, (stream.marks[train, COARSE], stream.marks[train, FINE]), 1.0)
        allowed = np.arange(joint.shape[1])[None, :] < np.asarray(vocab.fine_per_coarse)[:, None]
        joint = np.where(allowed, joint, 0.0)
        return cls(1.0 / max(float(stream.gap_s[train].mean()), 1e-9), frequencies, joint / joint.sum(1, keepdims=True),
                   stream.clock_s)

    def as_dict(self) -> dict:
        return {"rate": self.rate, "frequencies": {m: f.tolist() for m, f in self.frequencies.items()},
                "fine_given_coarse": self.fine_given_coarse.tolist(), "clock_s": self.clock_s}

    @classmethod
    def from_dict(cls, values: dict) -> "PoissonMarginal":
        return cls(values["rate"], {m: np.asarray(f) for m, f in values["frequencies"].items()},
                   np.asarray(values["fine_given_coarse"]), values["clock_s"])

    def score(self, stream: EventStream, events: np.ndarray) -> Scores:
        gap = stream.gap_s[events]
        cell = -self.rate * gap + np.log(-np.expm1(-self.rate * self.clock_s))
        nll = {"time": -(cell - np.log(self.clock_s))}
        rank, predicted = {}, {}
        for j, m in enumerate(TPP_MARKS):
            truth = stream.marks[events, j]
            p = self.fine_given_coarse[stream.marks[events, COARSE]] if m == "price_fine" else self.frequencies[m][None, :]
            p = np.broadcast_to(p, (len(events), p.shape[1]))
            chosen = p[np.arange(len(events)), truth]
            nll[m] = -np.log(chosen)
            rank[m] = (p > chosen[:, None]).sum(1)
            predicted[m] = p.argmax(1)
        return Scores(events, nll, rank, predicted, np.full(len(events), max(math.log(2) / self.rate, self.clock_s)))


def summary(scores: Scores, stream: EventStream) -> dict[str, float]:
    """Mean NLL per component and in all (nats per event), each mark's accuracy and top-3
    accuracy, and the mean absolute error of the log inter-arrival time (gaps floored at one clock tick)."""
    out = {f"nll_{c}": float(scores.nll[c].mean()) for c in COMPONENTS}
    out["nll_total"] = float(sum(scores.nll[c] for c in COMPONENTS).mean())
    for m in TPP_MARKS:
        out[f"accuracy_{m}"] = float((scores.rank[m] == 0).mean())
        out[f"top3_{m}"] = float((scores.rank[m] < 3).mean())
    truth = np.log(np.maximum(stream.gap_s[scores.events], stream.clock_s))
    out["mae_log_inter_arrival"] = float(np.abs(np.log(scores.median_gap_s) - truth).mean())
    return out


BASELINES = ("poisson_marginal", "context_1")
"""The TPP's baselines in ``model_metrics``: ``PoissonMarginal`` and the model with context 1."""


def per_event_nll(scores: Scores, metric: str) -> np.ndarray:
    return sum(scores.nll[c] for c in COMPONENTS) if metric == "nll_total" else scores.nll[metric.removeprefix("nll_")]


def paired_standard_errors(model: Scores, baselines: dict[str, Scores]) -> dict[str, float]:
    """Per NLL metric, the standard error of the per-event difference between the model and the
    baseline with the lowest mean (the events are the same)."""
    out = {}
    for metric in (*(f"nll_{c}" for c in COMPONENTS), "nll_total"):
        best = min(baselines.values(), key=lambda b: per_event_nll(b, metric).mean())
        difference = per_event_nll(model, metric) - per_event_nll(best, metric)
        out[metric] = float(difference.std(ddof=1) / np.sqrt(len(difference)))
    return out


def metrics_rows(model: dict, baselines: dict[str, dict], paired_se: dict[str, float]) -> list[dict]:
    """One row per metric: the model's value, each baseline's and the best of them; for the NLLs,
    the standard error of the per-event difference from the best baseline."""
    rows = []
    for metric, value in model.items():
        lower = metric.startswith(("nll_", "mae_"))
        known = {name: baselines[name][metric] for name in BASELINES}
        best = min(known.values()) if lower else max(known.values())
        rows.append({"label": LABEL, "metric": metric, "value": value, **known, "best_baseline": best,
                     "difference_se": paired_se.get(metric)})
    return rows


def beats_baseline(model: np.ndarray, baseline: np.ndarray, z: float = 2.0) -> tuple[bool, str]:
    """Whether the model's NLL per event is below the baseline's on the same events by more than
    ``z`` standard errors of their per-event difference; and a sentence saying by how much."""
    difference = baseline - model
    margin, se = float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))
    return margin > z * se, (f"total NLL {model.mean():.4f} against the baseline's {baseline.mean():.4f}: "
                             f"{margin:.4f} nats per event better, standard error {se:.4f}")
