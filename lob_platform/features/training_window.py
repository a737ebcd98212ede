"""Which rows a fit for day D may learn from: the features of the last ``train_days`` days before
D that have data, or, when there are none (a single day of data), the training part of a
chronological split of D itself. Never a row of D beyond that part, never a later day."""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from lob_platform.tokens.sequences import Split, chronological_split

PREVIOUS_DAYS = "previous_days"
SAME_DAY_SPLIT = "same_day_split"


@dataclass(frozen=True)
class TrainingWindow:
    rows: pl.DataFrame
    scope: str  # PREVIOUS_DAYS or SAME_DAY_SPLIT
    dates: list[str]
    train_fraction: float

    def describe(self) -> str:
        if self.scope == PREVIOUS_DAYS:
            return f"{self.rows.height} rows of {len(self.dates)} earlier days ({', '.join(self.dates)})"
        return f"{self.rows.height} rows: the first {self.train_fraction:.0%} of {self.dates[0]} (no earlier day has data)"

    def split_of(self, day_rows: int) -> pl.Series:
        """Split of each row of the day the fit is for: all test when the fit saw earlier days only."""
        if self.scope == PREVIOUS_DAYS:
            return pl.Series("split", ["test"] * day_rows, Split)
        held_out = (1 - self.train_fraction) / 2
        return chronological_split(day_rows, (self.train_fraction, held_out, held_out))


def training_window(features_by_date: dict[str, pl.DataFrame], date: str, train_days: int,
                    train_fraction: float) -> TrainingWindow:
    """The rows a fit for ``date`` learns from (module docstring); ``features_by_date`` maps ISO
    dates to feature tables and may hold ``date`` itself and days without rows."""
    if train_days < 1 or not 0 < train_fraction < 1:
        raise ValueError(f"train_days must be >= 1 and train_fraction in (0, 1), got {train_days}, {train_fraction}")
    earlier = sorted(d for d, frame in features_by_date.items() if d < date and frame.height)[-train_days:]
    if earlier:
        rows = pl.concat([features_by_date[d] for d in earlier], how="diagonal_relaxed")
        return TrainingWindow(rows, PREVIOUS_DAYS, earlier, train_fraction)
    today = features_by_date.get(date, pl.DataFrame())
    same_day = TrainingWindow(today, SAME_DAY_SPLIT, [date], train_fraction)
    return replace(same_day, rows=today.filter(same_day.split_of(today.height) == "train")) if today.height else same_day
