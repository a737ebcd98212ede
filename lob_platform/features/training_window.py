"""Which rows a fit for day D learns from, decided by the catalogue of raw files, never by which
partitions happen to be materialized when the fit runs.

The window of D is the last ``train_days`` trading days before D (within ``lookback_days``
calendar days) that have a raw file in the data folder and whose validation passed. Days whose
validation failed are skipped and recorded as excluded. A day with a file whose validation
outcome (or features) is not there yet makes the window *not ready*: the fit names the days it
waits for instead of fitting on fewer days, so the result never depends on run order. With no
earlier passed day, the fit learns from the first ``train_fraction`` of D itself (a
chronological split; D's tokens and labels then carry train / validation / test); otherwise all
of D is ``test``. Never a row of D beyond the training part, never a later day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date as Date, timedelta
from typing import Callable, Literal

import polars as pl

from lob_platform.core.settings import TrainingWindowSpec
from lob_platform.core.splits import Split, chronological_split

PREVIOUS_DAYS = "previous_days"
SAME_DAY_SPLIT = "same_day_split"
DayStatus = Literal["passed", "failed", "pending"]
"""A catalogue day as a window sees it: validated and its features written; validation failed;
or neither known yet (not ingested, or ingested from an older delivery that is being redone)."""


@dataclass(frozen=True)
class WindowPlan:
    """The days a fit for ``date`` learns from, or the days it must wait for."""

    date: str
    scope: str  # PREVIOUS_DAYS or SAME_DAY_SPLIT
    dates: tuple[str, ...]
    excluded: tuple[str, ...] = ()  # catalogue days skipped: their validation failed
    waiting_for: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.waiting_for


def plan_training_window(date: str, catalogue_dates: list[str], status: Callable[[str], DayStatus],
                         train_days: int, lookback_days: int) -> WindowPlan:
    """The window of ``date`` (module docstring) from the instrument's trading dates with a raw file
    (ISO strings) and each day's status."""
    if train_days < 1 or lookback_days < 1:
        raise ValueError(f"train_days and lookback_days must be >= 1, got {train_days}, {lookback_days}")
    first = (Date.fromisoformat(date) - timedelta(days=lookback_days)).isoformat()
    taken, excluded = [], []
    for day in sorted((d for d in set(catalogue_dates) if first <= d < date), reverse=True):
        state = status(day)
        if state == "pending":
            return WindowPlan(date, PREVIOUS_DAYS, (), tuple(excluded), (day,))
        (taken if state == "passed" else excluded).append(day)
        if len(taken) == train_days:
            break
    if taken:
        return WindowPlan(date, PREVIOUS_DAYS, tuple(sorted(taken)), tuple(sorted(excluded)))
    return WindowPlan(date, SAME_DAY_SPLIT, (date,), tuple(sorted(excluded)))


@dataclass(frozen=True)
class TrainingWindow:
    rows: pl.DataFrame
    scope: str  # PREVIOUS_DAYS or SAME_DAY_SPLIT
    dates: list[str]
    train_fraction: float
    excluded: list[str] = field(default_factory=list)

    def describe(self) -> str:
        skipped = f"; skipped (validation failed): {', '.join(self.excluded)}" if self.excluded else ""
        if self.scope == PREVIOUS_DAYS:
            return f"{self.rows.height} rows of {len(self.dates)} earlier days ({', '.join(self.dates)}){skipped}"
        return f"{self.rows.height} rows: the first {self.train_fraction:.0%} of {self.dates[0]} (no earlier day has data){skipped}"

    def split_of(self, day_rows: int) -> pl.Series:
        """Split of each row of the day the fit is for: all test when the fit saw earlier days only."""
        if self.scope == PREVIOUS_DAYS:
            return pl.Series("split", ["test"] * day_rows, Split)
        held_out = (1 - self.train_fraction) / 2
        return chronological_split(day_rows, (self.train_fraction, held_out, held_out))


def window_rows(plan: WindowPlan, features_of: Callable[[list[str]], pl.DataFrame], train_fraction: float) -> TrainingWindow:
    """The training rows of a ready plan; ``features_of`` returns the feature rows of some days, in date order."""
    if not plan.ready:
        raise ValueError(f"the window of {plan.date} is not ready: it waits for {list(plan.waiting_for)}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    window = TrainingWindow(pl.DataFrame(), plan.scope, list(plan.dates), train_fraction, list(plan.excluded))
    if plan.scope == PREVIOUS_DAYS:
        rows = features_of(list(plan.dates))
        return TrainingWindow(rows, plan.scope, list(plan.dates), train_fraction, list(plan.excluded))
    today = features_of([plan.date])
    return TrainingWindow(today.filter(window.split_of(today.height) == "train"), plan.scope, list(plan.dates),
                          train_fraction, list(plan.excluded))


def training_window(features_by_date: dict[str, pl.DataFrame], date: str, train_days: int,
                    train_fraction: float, lookback_days: int | None = None) -> TrainingWindow:
    """The window of ``date`` when ``features_by_date`` (ISO date -> features, ``date`` itself may be
    among them) holds every trading day there is and all of them passed validation."""
    with_rows = [d for d, frame in features_by_date.items() if frame.height or d == date]
    plan = plan_training_window(date, [d for d in with_rows if d != date], lambda d: "passed", train_days,
                                lookback_days or TrainingWindowSpec.lookback_days)
    return window_rows(plan, lambda days: pl.concat([features_by_date.get(d, pl.DataFrame()) for d in days],
                                                    how="diagonal_relaxed"), train_fraction)
