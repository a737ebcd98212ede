"""Out-of-sample metrics of a classifier and of the naive baselines on the same rows.

Metrics (``METRICS``): accuracy, macro-F1, Matthews correlation (MCC), log-loss, Brier score
(mean over rows of the squared distance between the probability vector and the one-hot truth),
expected calibration error (ECE: |accuracy - mean confidence| per confidence bucket, weighted by
the bucket's share of rows, 10 equal-width buckets) and the F1 of each class.

Baselines (``BASELINES``), on the same rows:
- ``majority``: the training rows' most frequent class; its probabilities are the training class
  shares, so it has every metric;
- ``persistence``: the last move persists (``datasets.targets``); hard predictions only;
- ``ofi_sign``: the sign of the 50-event best-level order-flow imbalance says up or down (0: flat,
  or the majority class for two classes); hard predictions only.
Where a baseline has no view (no earlier move today), it predicts the majority class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, log_loss, matthews_corrcoef

BASELINES = ("majority", "persistence", "ofi_sign")
OFI_BASELINE_FEATURE = "ofi_l1_50ev"
PROBABILISTIC = ("log_loss", "brier", "ece")
LOWER_IS_BETTER = set(PROBABILISTIC)
BUCKETS = 10


def hard_metrics(y: np.ndarray, pred: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    labels = list(range(len(classes)))
    per_class = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    return {"accuracy": float(np.mean(y == pred)) if len(y) else float("nan"),
            "macro_f1": float(np.mean(per_class)),
            "mcc": float(matthews_corrcoef(y, pred)) if len(y) else float("nan"),
            **{f"f1_{name}": float(v) for name, v in zip(classes, per_class)}}


def probabilistic_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    n_classes = proba.shape[1]
    onehot = np.eye(n_classes)[y]
    return {"log_loss": float(log_loss(y, proba / proba.sum(axis=1, keepdims=True), labels=list(range(n_classes)))),
            "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1))),
            "ece": expected_calibration_error(y, proba)}


def classification_metrics(y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    return {**hard_metrics(y, proba.argmax(axis=1), classes), **probabilistic_metrics(y, proba)}


def reliability(y: np.ndarray, proba: np.ndarray, buckets: int = BUCKETS) -> list[dict]:
    """Per confidence bucket (of the predicted class's probability): rows, mean confidence, accuracy."""
    confidence, pred = proba.max(axis=1), proba.argmax(axis=1)
    index = np.minimum((confidence * buckets).astype(int), buckets - 1)
    table = []
    for b in range(buckets):
        inside = index == b
        if inside.any():
            table.append({"bucket": f"{b / buckets:.1f}-{(b + 1) / buckets:.1f}", "rows": int(inside.sum()),
                          "confidence": float(confidence[inside].mean()), "accuracy": float((pred[inside] == y[inside]).mean())})
    return table


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, buckets: int = BUCKETS) -> float:
    table = reliability(y, proba, buckets)
    return float(sum(r["rows"] * abs(r["accuracy"] - r["confidence"]) for r in table) / max(len(y), 1))


def baseline_predictions(classes: tuple[str, ...], majority: int, persistence: np.ndarray, ofi: np.ndarray) -> dict[str, np.ndarray]:
    """Hard predictions of every baseline (module docstring) for the rows given."""
    up, down = len(classes) - 1, 0
    zero = 1 if len(classes) == 3 else majority
    ofi_sign = np.where(ofi > 0, up, np.where(ofi < 0, down, zero))
    ofi_sign = np.where(np.isnan(ofi), majority, ofi_sign)
    return {"majority": np.full(len(persistence), majority), "persistence": np.where(persistence < 0, majority, persistence),
            "ofi_sign": ofi_sign.astype(np.int64)}


def compare(y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...], prior: np.ndarray,
            baselines: dict[str, np.ndarray]) -> list[dict]:
    """One row per metric: the model's value, each baseline's (None where it has no probabilities),
    and the best baseline's."""
    model = classification_metrics(y, proba, classes)
    values = {name: hard_metrics(y, pred, classes) for name, pred in baselines.items()}
    values["majority"].update(probabilistic_metrics(y, np.tile(prior, (len(y), 1))))
    rows = []
    for metric, value in model.items():
        row = {"metric": metric, "value": value, **{name: values[name].get(metric) for name in BASELINES}}
        known = [v for v in (row[name] for name in BASELINES) if v is not None and not np.isnan(v)]
        row["best_baseline"] = (min(known) if metric in LOWER_IS_BETTER else max(known)) if known else None
        rows.append(row)
    return rows
