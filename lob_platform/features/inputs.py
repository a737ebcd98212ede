"""The one gate every feature function passes its input through.

Feature code assumes time order and finite numbers; rather than letting a NaN or an unsorted
row surface later as a silent NaN inside a model, the input is checked here and the user is
told which column and which source rows to fix (validation would have rejected them).
"""

from __future__ import annotations

import math

import polars as pl

from lob_platform.errors import LobDataError
from lob_platform.core.columns import SOURCE_ROW


class FeatureInputError(LobDataError, ValueError):
    """The frame handed to a feature function cannot be turned into features as it is."""


def _where(frame: pl.DataFrame, mask: pl.Series) -> str:
    rows = frame.filter(mask)
    if SOURCE_ROW in frame.columns:
        return f"source rows {rows[SOURCE_ROW].head(5).to_list()}"
    return f"row positions {mask.arg_true().head(5).to_list()}"


def check_feature_input(frame: pl.DataFrame, required: list[str]) -> None:
    """Raise FeatureInputError on missing columns, unsorted ``ts_ns`` or NaN/inf numbers.

    Nulls are allowed (an empty book level has a null price); NaN and infinity are not, because
    no venue writes them and every rule downstream would turn them into NaN features.
    """
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise FeatureInputError(f"the frame lacks columns {missing}: pass validated messages (lob_platform.load_messages).")
    if frame.is_empty():
        return
    floats = [c for c, dtype in frame.schema.items() if dtype.is_float()]
    # One cheap pass: a column's sum is NaN or infinite exactly when it holds NaN or infinity
    # (nulls are skipped); the offending rows are located only on failure.
    sums = frame.select(pl.col(floats).sum()).row(0, named=True) if floats else {}
    found = {"ts_ns": not frame["ts_ns"].is_sorted()} | {c: not math.isfinite(v) for c, v in sums.items()}
    if found["ts_ns"]:
        unsorted = (frame["ts_ns"].diff() < 0).fill_null(False)
        raise FeatureInputError(
            f"ts_ns goes backwards at {_where(frame, unsorted)}: features need events in time "
            "order; run validate_messages and drop or fix the rows it reports."
        )
    for column in (c for c in floats if found[c]):
        not_finite = ~frame[column].is_finite().fill_null(True)
        raise FeatureInputError(
            f"column {column} holds NaN or infinity at {_where(frame, not_finite)}: no venue writes these; "
            "fix or drop those rows (validate_messages reports them) before computing features."
        )
