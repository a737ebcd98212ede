"""Training a model family on the rows of a training window, and predicting a test day with a
stored model: the one path every family takes, tabular or sequence.

``train_family`` fits one model per label (``LabelSpec``) and returns, for each, the model and
the manifest fields that describe it (``training.store``). ``predict_day`` applies a stored model
to a test day's rows and returns its probabilities on every test row it can see (tabular: every
row; sequence models: every row with a full window of its own day), with the target and the
naive baselines on the same rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import polars as pl

from lob_platform.core.settings import spec_hash
from lob_platform.datasets.rows import feature_matrix
from lob_platform.datasets.targets import UNKNOWN, make_target, source_columns
from lob_platform.datasets.windows import window_ends
from lob_platform.errors import TrainingDataError
from lob_platform.models.specs import EVENT_FAMILIES, LSTM_FEATURES, TABULAR_FAMILIES, LabelSpec, LSTMSpec, ModelSpecs
from lob_platform.training.metrics import OFI_BASELINE_FEATURE, baseline_predictions, classification_metrics

MIN_TRAIN_ROWS = 200
MIN_VALIDATION_ROWS = 50
Log = Callable[[str], None]


@dataclass
class Trained:
    label: str
    model: object
    manifest: dict
    history: list[dict]


@dataclass
class Prediction:
    """A model's view of a test day: ``rows`` (positions in the day's rows) it predicts, their
    probabilities, targets (UNKNOWN: unlabelled) and each baseline's prediction."""

    rows: np.ndarray
    proba: np.ndarray
    y: np.ndarray
    baselines: dict[str, np.ndarray]
    classes: tuple[str, ...]


def feature_list(family: str, specs: ModelSpecs, columns: list[str]) -> list[str]:
    return specs.tabular_features.select(columns) if family in TABULAR_FAMILIES else list(LSTM_FEATURES)


def config_hash(family: str, specs: ModelSpecs) -> str:
    if family in EVENT_FAMILIES:
        return spec_hash(specs.mamba_tpp, specs.validation_fraction)
    features = specs.tabular_features if family in TABULAR_FAMILIES else LSTM_FEATURES
    return spec_hash(specs.of(family), specs.labels, features, specs.validation_fraction, specs.max_train_rows,
                     specs.max_validation_rows)


def input_columns(family: str, specs: ModelSpecs, available: list[str]) -> list[str]:
    """Every features column a family's training and evaluation read: keys, inputs, label sources
    and the baselines' OFI."""
    keys = ["event_row", "ts_ns", "source_row"]
    wanted = [*keys, *feature_list(family, specs, available), *source_columns(specs.labels_of(family)), OFI_BASELINE_FEATURE]
    return list(dict.fromkeys(c for c in wanted if c in set(available)))


@dataclass
class Skipped:
    """A label no honest model could be trained for on this window, and why."""

    label: str
    reason: str


def train_family(family: str, specs: ModelSpecs, rows: pl.DataFrame, where: str, log: Log,
                 labels: tuple[str, ...] | None = None) -> tuple[list[Trained], list[Skipped]]:
    """One model per label over ``rows`` (``datasets.rows.training_rows``); ``where`` names the
    window in errors (venue, partition). A label whose training rows are too few or lack a class
    is skipped with its reason (the others still train); when every label is skipped, or a feature
    holds NaN or infinity, a ``TrainingDataError`` says why."""
    spec = specs.of(family)
    features = feature_list(family, specs, rows.columns)
    matrix = feature_matrix(rows, features, where)
    split = rows["split"].cast(pl.String).to_numpy()
    scaling = _standardise(matrix, split == "train") if isinstance(spec, LSTMSpec) else None
    trained, skipped = [], []
    for label in labels or specs.labels_of(family):
        try:
            trained.append(_train_label(family, specs, rows, matrix, split, scaling, features, label, where, log))
        except TrainingDataError as problem:
            log(f"{family} {label}: not trained: {problem}")
            skipped.append(Skipped(label, str(problem)))
    if not trained:
        raise TrainingDataError("; ".join(s.reason for s in skipped))
    return trained, skipped


def _train_label(family, specs, rows, matrix, split, scaling, features, label, where, log) -> Trained:
    spec = specs.of(family)
    target = make_target(rows, label, specs.labels)
    train, validation = (split == "train") & (target.y != UNKNOWN), (split == "validation") & (target.y != UNKNOWN)
    for mask, most in ((train, specs.max_train_rows), (validation, specs.max_validation_rows)):
        if most is not None:
            mask[np.flatnonzero(mask)[:-most]] = False  # keep the most recent rows
    _require_rows(where, label, target, train, validation)
    log(f"{family} {label}: {train.sum():,} training rows, {validation.sum():,} validation rows")
    if isinstance(spec, LSTMSpec):
        model, history, extra = _train_lstm(spec, matrix, scaling, rows, target, train, validation, where, log)
    else:
        from lob_platform.models.tabular import preprocessing
        from lob_platform.training.search import search

        model, params, history = search(spec, matrix[train], target.y[train], matrix[validation], target.y[validation],
                                        len(target.classes), log)
        extra = {"best_params": params, "preprocessing": preprocessing(model)}
        val_proba = model.predict_proba(matrix[validation])
        extra["validation_metrics"] = classification_metrics(target.y[validation], val_proba, target.classes)
    shares = np.bincount(target.y[train], minlength=len(target.classes)) / train.sum()
    manifest = {"family": family, "label": label, "classes": list(target.classes), "features": features,
                "config": asdict(spec), "config_hash": config_hash(family, specs), "labelling": specs.labels.labelling,
                "label_params": target.params, "train_class_shares": shares.tolist(),
                "train_rows": int(train.sum()), "validation_rows": int(validation.sum()), **extra}
    return Trained(label, model, manifest, history)


def _require_rows(where: str, label: str, target, train: np.ndarray, validation: np.ndarray) -> None:
    if train.sum() < MIN_TRAIN_ROWS or validation.sum() < MIN_VALIDATION_ROWS:
        raise TrainingDataError(
            f"{where}: {label} has {train.sum()} labelled training rows and {validation.sum()} validation rows; at least "
            f"{MIN_TRAIN_ROWS} and {MIN_VALIDATION_ROWS} are needed. Widen the training window (train_days) or wait for more days.")
    present = np.bincount(target.y[train], minlength=len(target.classes))
    absent = [name for name, count in zip(target.classes, present) if count == 0]
    if absent:
        raise TrainingDataError(f"{where}: class {absent} of {label} never occurs in the training rows, so no model can "
                                "learn it; widen the training window or change the labelling (flat_share).")


def _standardise(matrix: np.ndarray, train: np.ndarray) -> dict:
    mean = np.nanmean(matrix[train], axis=0)
    std = np.nanstd(matrix[train], axis=0)
    return {"mean": mean.tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def scaled(matrix: np.ndarray, scaling: dict) -> np.ndarray:
    """Standardised float32 features; a missing value becomes 0, the training mean."""
    out = (matrix - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def _train_lstm(spec: LSTMSpec, matrix, scaling, rows, target, train, validation, where, log):
    import torch

    from lob_platform.models.lstm import LSTMClassifier
    from lob_platform.training.sequence import device, fit_sequence_model, predict_proba

    inputs, y, label = scaled(matrix, scaling), target.y, target.label
    full = window_ends(rows["date"].to_numpy(), spec.window)
    train_ends = np.flatnonzero(train & full)[::spec.train_stride]
    val_ends = np.flatnonzero(validation & full)
    if len(train_ends) < MIN_TRAIN_ROWS or len(val_ends) < MIN_VALIDATION_ROWS:
        raise TrainingDataError(f"{where}: {label} has {len(train_ends)} training and {len(val_ends)} validation windows of "
                                f"{spec.window} events; at least {MIN_TRAIN_ROWS} and {MIN_VALIDATION_ROWS} are needed.")
    torch.manual_seed(spec.seed)
    where_to = device(log)
    model, history = fit_sequence_model(LSTMClassifier(inputs.shape[1], spec, len(target.classes)), inputs, y, train_ends, val_ends,
                                        spec.window, spec, where_to, log)
    model = model.cpu()
    val_proba = predict_proba(model, inputs, val_ends, spec.window, spec.batch_size, torch.device("cpu"))
    return model, history, {"preprocessing": {"standardise": scaling}, "training_windows": len(train_ends),
                            "validation_metrics": classification_metrics(y[val_ends], val_proba, target.classes)}


def build_module(manifest: dict):
    """The empty torch module a stored sequence model's state dict loads into."""
    from lob_platform.models.lstm import LSTMClassifier

    return LSTMClassifier(len(manifest["features"]), LSTMSpec(**manifest["config"]), len(manifest["classes"]))


def predict_day(manifest: dict, model, rows: pl.DataFrame, where: str) -> Prediction:
    """The stored model's probabilities on the test rows of ``rows`` (``datasets.rows.evaluation_rows``),
    the targets under the label parameters it was trained with, and the baselines."""
    matrix = feature_matrix(rows, manifest["features"], where)
    test = (rows["split"].cast(pl.String) == "test").fill_null(False).to_numpy()
    labels = LabelSpec((manifest["label"],), manifest["labelling"])
    target = make_target(rows, manifest["label"], labels, manifest["label_params"])
    if manifest["family"] in TABULAR_FAMILIES:
        positions = np.flatnonzero(test)
        proba = model.predict_proba(matrix[positions]) if len(positions) else np.zeros((0, len(manifest["classes"])))
    else:
        import torch

        from lob_platform.training.sequence import predict_proba

        window = manifest["config"]["window"]
        positions = np.flatnonzero(test & window_ends(rows["date"].to_numpy(), window))
        inputs = scaled(matrix, manifest["preprocessing"]["standardise"])
        proba = predict_proba(model, inputs, positions, window, manifest["config"]["batch_size"], torch.device("cpu"))
    majority = int(np.argmax(manifest["train_class_shares"]))
    ofi = rows[OFI_BASELINE_FEATURE].cast(pl.Float64).fill_null(np.nan).to_numpy()[positions]
    baselines = baseline_predictions(target.classes, majority, target.persistence[positions], ofi)
    return Prediction(positions, proba, target.y[positions], baselines, target.classes)
