"""How the streamed predictions of one model on one instrument-day did (pure logic).

Read from the sink's rows, the day's batch features (for the truth) and the batch predictions of
the same model version (for agreement):

- coverage: events the model should have predicted (every event; for a sequence model every
  event with a full window of its day) against the rows the sink holds: ``missing`` and
  ``duplicated`` must both be 0 (exactly once);
- accuracy, log-loss, Brier score, expected calibration error and the calibration buckets, on the events
  whose label is known and that the model did not learn from (for a model fit on the first part
  of this same day, only the day's test part), with the truth made as the batch evaluation makes
  it (the label parameters recorded in the model's manifest);
- latency (event written to Redis -> prediction ready) p50 / p99 / max in microseconds, and the
  consumer lag (events waiting in the stream when a batch was read) mean and max;
- agreement with the batch predictions on the events both predicted with the same model version:
  the share with the same predicted class and the largest probability difference. Where the
  online features equal the batch ones (they do), this is 100 %, up to the last bits of the LSTM's
  float32 arithmetic in batches of another size.

Calibration is of ``p_up`` against "the label is up" (the Brier score summed over both outcomes,
as ``training.metrics`` defines it), so for three-class labels the Brier score and ECE here are
those of the up-or-not question.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lob_platform.datasets.rows import evaluation_rows, purge_gap
from lob_platform.datasets.targets import UNKNOWN, make_target
from lob_platform.features.training_window import SAME_DAY_SPLIT
from lob_platform.models.specs import TABULAR_FAMILIES, LabelSpec
from lob_platform.training.metrics import probabilistic_metrics, reliability

AGREEMENT_TOLERANCE = 1e-5
"""Probabilities closer than this count as equal (the LSTM's float32 batches)."""


def expected_rows(events: int, manifest: dict) -> np.ndarray:
    """Event rows a model predicts online: all, or those with a full window of the day."""
    first = 0 if manifest["family"] in TABULAR_FAMILIES else manifest["config"]["window"] - 1
    return np.arange(first, events)


def evaluate(streamed: pl.DataFrame, features: pl.DataFrame, manifest: dict, batch: pl.DataFrame | None) -> dict:
    """Metrics of one model's streamed predictions on one instrument-day (module docstring)."""
    expected = expected_rows(features.height, manifest)
    rows = streamed["event_row"].to_numpy()
    unique = np.unique(rows)
    result = {
        "events": features.height, "expected": len(expected), "streamed": len(rows),
        "missing": int(len(np.setdiff1d(expected, unique))), "duplicated": int(len(rows) - len(unique)),
        "unexpected": int(len(np.setdiff1d(unique, expected))),
        "model_versions": ",".join(sorted(streamed["model_version"].unique().to_list())),
    }
    latency = streamed["latency_us"].to_numpy()
    if len(latency):
        result.update({"latency_p50_us": float(np.percentile(latency, 50)), "latency_p99_us": float(np.percentile(latency, 99)),
                       "latency_max_us": float(latency.max()), "lag_mean": float(streamed["lag"].mean()),
                       "lag_max": int(streamed["lag"].max())})
    day = features.with_columns(split=pl.lit("test"), date=pl.lit("day"))  # one day, every row evaluated
    target = make_target(day, manifest["label"], LabelSpec((manifest["label"],), manifest["labelling"]), manifest["label_params"])
    up = list(target.classes).index("up")
    inside = np.clip(rows, 0, max(features.height - 1, 0))  # an unexpected row past the day is counted above
    y = target.y[inside] if len(rows) else np.zeros(0, dtype=np.int64)
    known = (y != UNKNOWN) & (rows < features.height)
    if manifest.get("fit_scope") == SAME_DAY_SPLIT:  # the model learnt from this day's first part: score the rest
        split = evaluation_rows(features, "day", SAME_DAY_SPLIT, manifest["fit_train_fraction"], purge_gap(LabelSpec().labels))
        known &= (split["split"].cast(pl.String) == "test").fill_null(False).to_numpy()[inside]
    result["labelled"] = int(known.sum())
    table = []
    if known.any():
        p_up = streamed["p_up"].to_numpy()[known]
        truth_up = (y[known] == up).astype(np.int64)
        predicted = streamed["pred"].to_numpy()[known]
        binary = np.column_stack((1 - p_up, p_up))
        result.update({"accuracy": float(np.mean(predicted == np.asarray(target.classes)[y[known]])),
                       **probabilistic_metrics(truth_up, binary)})
        table = reliability(truth_up, binary)
    if batch is not None and batch.height:
        result.update(_agreement(streamed, batch))
    result["calibration"] = table
    return result


def _agreement(streamed: pl.DataFrame, batch: pl.DataFrame) -> dict:
    both = streamed.join(batch.select("event_row", "model_version", pl.col("predicted_class").alias("batch_pred"),
                                      pl.col("p_up").alias("batch_p_up")), on=["event_row", "model_version"], how="inner")
    if not both.height:
        return {"compared_with_batch": 0}
    difference = (both["p_up"] - both["batch_p_up"]).abs()
    same = (both["pred"] == both["batch_pred"]) | (difference <= AGREEMENT_TOLERANCE)
    return {"compared_with_batch": both.height, "agreement": float(same.mean()),
            "max_p_up_difference": float(difference.max())}
