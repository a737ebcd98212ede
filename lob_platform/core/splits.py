"""How rows and days are divided into train, validation and test (pure functions, no dagster).

Rules:

- Within one day, ``chronological_split`` assigns splits by position in time, never shuffled: the
  first ``fractions[0]`` of the rows train, the next ``fractions[1]`` validate, the rest test.
- ``chronological_split_with_purge`` does the same but leaves a gap of ``purge_events`` unlabelled
  (null) rows just before the start of validation and just before the start of test, so a label
  that looks ``purge_events`` events ahead from a training row never reads a validation row (and
  likewise validation -> test).
- Across days, ``walk_forward_folds`` tests on one date and trains on the ``train_days`` dates with
  data strictly before it: a model is never trained on its test day or any later day.
- ``purge_rows`` drops the last ``horizon_events`` rows of every training date, so at least the
  label horizon separates the last training row used from the first test row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

SPLITS = ("train", "validation", "test")
TRAIN_VALIDATION_TEST = (0.6, 0.2, 0.2)
Split = pl.Enum(list(SPLITS))


def chronological_split(n_rows: int, fractions: tuple[float, float, float] = TRAIN_VALIDATION_TEST) -> pl.Series:
    """Train, validation, test by position in time (no shuffling): the first rows train.

    Row i is train when i < int(n_rows * f_train), validation when below
    int(n_rows * (f_train + f_validation)), test otherwise. ``fractions`` must be three
    non-negative shares summing to 1 (ValueError otherwise).
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions}")
    train_end = int(n_rows * fractions[0])
    validation_end = int(n_rows * (fractions[0] + fractions[1]))
    codes = np.searchsorted([train_end, validation_end], np.arange(n_rows), side="right")
    return pl.Series("split", np.array(SPLITS)[codes], Split) if n_rows else pl.Series("split", [], Split)


def chronological_split_with_purge(
    n_rows: int,
    fractions: tuple[float, float, float] = TRAIN_VALIDATION_TEST,
    purge_events: int = 0,
) -> pl.Series:
    """``chronological_split`` with ``purge_events`` null rows before each later split starts.

    The ``purge_events`` rows just before the first validation row and just before the first test
    row get a null split (they belong to no split), so a label looking ``purge_events`` events ahead
    from a training row never reaches a validation row, and likewise validation -> test. Rules:

    - Only rows that were already before the boundary are nulled; no row changes split otherwise.
    - A boundary with no rows after it (an empty test part at the end of the day) purges nothing:
      there is nothing to leak into.
    - The gap is clipped at the start of the day; it may swallow a whole short split.
    - ``purge_events=0`` gives exactly ``chronological_split``; a negative purge is a ValueError.
    """
    if purge_events < 0:
        raise ValueError(f"purge_events must be >= 0, got {purge_events}")
    split = chronological_split(n_rows, fractions)
    if purge_events == 0 or n_rows == 0:
        return split
    train_end = int(n_rows * fractions[0])
    validation_end = int(n_rows * (fractions[0] + fractions[1]))
    purged = np.zeros(n_rows, dtype=bool)
    for boundary in (train_end, validation_end):
        if boundary < n_rows:
            purged[max(boundary - purge_events, 0):boundary] = True
    return split.scatter(np.flatnonzero(purged), None)


@dataclass(frozen=True)
class WalkForwardFold:
    """One walk-forward fold: test on ``test_date``, train on ``train_dates`` (all earlier)."""

    test_date: str  # ISO date
    train_dates: tuple[str, ...]


def walk_forward_folds(dates: Sequence[str], train_days: int, min_train_days: int = 1) -> list[WalkForwardFold]:
    """Folds that each test on one trading date and train on the dates just before it.

    Rules:

    - ``dates`` are the trading dates with data, ISO strings (``YYYY-MM-DD``) in any order;
      duplicates are removed. Calendar gaps (weekends, holidays) do not matter: "before" means the
      previous dates in the list, not previous calendar days.
    - A fold's training dates are the ``train_days`` dates strictly before its test date (fewer at
      the start of the list), oldest first. A date with fewer than ``min_train_days`` earlier
      dates gets no fold.
    - Folds are returned in date order.
    - ``train_days < 1`` or ``min_train_days < 1`` is a ValueError, as is a string that is not an
      ISO date.
    """
    if train_days < 1 or min_train_days < 1:
        raise ValueError(f"train_days and min_train_days must be >= 1, got {train_days} and {min_train_days}")
    ordered = [d.isoformat() for d in sorted({dt.date.fromisoformat(date) for date in dates})]
    folds = []
    for position, test_date in enumerate(ordered):
        train_dates = tuple(ordered[max(position - train_days, 0):position])
        if len(train_dates) >= min_train_days:
            folds.append(WalkForwardFold(test_date=test_date, train_dates=train_dates))
    return folds


def purge_rows(train: pl.DataFrame, horizon_events: int) -> pl.DataFrame:
    """The training table without the last ``horizon_events`` rows of every date.

    ``train`` spans one or more days and has a ``date`` column; within a date its rows are in event
    order. Why every date and not only the last one before the test day: by rule a label at
    horizon k events never crosses its day's end (it is null past it), but it is the rows at the
    end of a day that sit next to the following period, and in walk-forward folds any training
    day may be followed by a validation or test day. Dropping the tail of every date guarantees a
    purge gap of at least the label horizon, in events, between the last training row used and
    the first test row, whichever day that test row is on.

    Rows keep their order; a date with ``horizon_events`` rows or fewer is dropped entirely.
    ``horizon_events < 0`` is a ValueError, and so is a table without a ``date`` column.
    """
    if horizon_events < 0:
        raise ValueError(f"horizon_events must be >= 0, got {horizon_events}")
    if "date" not in train.columns:
        raise ValueError(f"purge_rows needs a 'date' column, got columns {train.columns}")
    if horizon_events == 0:
        return train
    position_in_date = pl.int_range(pl.len(), dtype=pl.Int64).over("date")
    rows_in_date = pl.len().cast(pl.Int64).over("date")  # signed: a date shorter than the horizon must not wrap
    return train.filter(position_in_date < rows_in_date - horizon_events)
