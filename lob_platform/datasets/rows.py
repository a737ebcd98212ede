"""The rows a model of day D learns from and is tested on, with their split.

- Walk-forward (earlier days in the window): the window's days, in time order, are train then
  validation: the last ``validation_fraction`` of their rows validate (early stopping, the search),
  with a purge gap before the boundary; every row of D is test. D is never trained on.
- Same-day split (no earlier day): D's rows split chronologically into train, validation and test
  (``train_fraction``, the rest in halves), with the purge gap before each boundary.

The purge gap is ``purge_events`` rows (at least the longest fixed label horizon) that belong to
no split; labels whose look-ahead still crosses a boundary (the next mid change can lie further)
are dropped per label by ``datasets.targets``. Labels never cross a day: they are computed per day.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lob_platform.core.splits import Split, chronological_split_with_purge
from lob_platform.errors import TrainingDataError
from lob_platform.features.training_window import PREVIOUS_DAYS, SAME_DAY_SPLIT
from lob_platform.models.specs import horizon_of

def purge_gap(labels: tuple[str, ...]) -> int:
    """Rows of the purge gap: the longest fixed horizon among ``labels`` (at least 1)."""
    return max([horizon_of(label) or 1 for label in labels])


def training_rows(window: dict[str, pl.DataFrame], day: pl.DataFrame | None, date: str, scope: str,
                  train_fraction: float, validation_fraction: float, purge_events: int) -> pl.DataFrame:
    """The rows a model of ``date`` learns from, in time order, with ``date`` and ``split`` (null
    inside a purge gap): the window's days (date -> features) split into train and validation, or,
    for a same-day split, the day itself (``day``) split into train, validation and test."""
    if scope == SAME_DAY_SPLIT:
        if day is None or not day.height:
            raise TrainingDataError(f"{date} has no earlier day in its window and no rows of its own: nothing to train on.")
        return evaluation_rows(day, date, scope, train_fraction, purge_events)
    if scope != PREVIOUS_DAYS:
        raise ValueError(f"unknown window scope {scope!r}")
    days = [frame.with_columns(pl.lit(d).alias("date")) for d, frame in sorted(window.items())]
    train = pl.concat(days, how="diagonal_relaxed") if days else pl.DataFrame()
    if not train.height:
        raise TrainingDataError(f"the training window of {date} ({', '.join(sorted(window)) or 'no day'}) has no rows.")
    return train.with_columns(_train_validation(train["date"].to_numpy(), validation_fraction, purge_events))


def evaluation_rows(day: pl.DataFrame, date: str, scope: str, train_fraction: float, purge_events: int) -> pl.DataFrame:
    """The rows of the day a model is tested on, with ``split``: all ``test`` when the model learnt
    from earlier days; the chronological train / validation / test split with purge gaps when it
    learnt from the first part of this day."""
    day = day.with_columns(pl.lit(date).alias("date"))
    if scope == PREVIOUS_DAYS:
        return day.with_columns(pl.lit("test").cast(Split).alias("split"))
    held_out = (1 - train_fraction) / 2
    return day.with_columns(chronological_split_with_purge(day.height, (train_fraction, held_out, held_out), purge_events))


def _train_validation(dates: np.ndarray, validation_fraction: float, purge_events: int) -> pl.Series:
    n = len(dates)
    boundary = int(round(n * (1 - validation_fraction)))
    codes = np.where(np.arange(n) < boundary, "train", "validation").astype(object)
    if 0 < boundary < n:
        start = max(boundary - purge_events, 0)
        same_day = dates[start:boundary] == dates[boundary]  # labels never cross a day: only the boundary's day needs a gap
        codes[start:boundary][same_day] = None
    return pl.Series("split", codes.tolist(), pl.String).cast(Split)


def feature_matrix(rows: pl.DataFrame, columns: list[str], where: str) -> np.ndarray:
    """float64 (rows x columns), NaN where a feature is null (documented as missing); NaN or
    infinity stored as a value is a ``TrainingDataError`` naming column, date and row."""
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise TrainingDataError(f"{where}: features {missing} are missing (the model was made for them); "
                                "rebuild the features with the settings the model used.")
    bad = rows.select(pl.col(c).cast(pl.Float64).is_nan().sum() + pl.col(c).cast(pl.Float64).is_infinite().sum()
                      for c in columns).row(0)
    broken = {c: n for c, n in zip(columns, bad) if n}
    if broken:
        column = next(iter(broken))
        first = rows.filter(~pl.col(column).cast(pl.Float64).is_finite() & pl.col(column).is_not_null()).row(0, named=True)
        raise TrainingDataError(f"{where}: NaN or infinity in features {broken} (first: {column} on {first.get('date')} "
                                f"event_row {first.get('event_row')}, source line {first.get('source_row')}); the "
                                "features' finite_features check should have blocked this partition: rebuild it.")
    return rows.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
