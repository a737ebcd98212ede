"""Targets per label, their parameters fit on training rows only, and the persistence baseline.

Labels (``LabelSpec``):

- ``next_mid_up``: classes (down, up) from the features' ``label_next_mid_up`` (the direction of
  the next mid change). Persistence: the direction of the last mid change at or before the event.
- ``move_{k}ev``: classes (down, flat, up) of the mid's move k events ahead.
  - ``threshold`` labelling: the k-event log return beyond +-threshold, the threshold being the
    |return| quantile of the training rows that leaves ``flat_share`` flat (as the
    ``label_thresholds`` asset). Persistence: the past k-event return under the same threshold.
  - ``smoothed`` labelling, as in the published LOB benchmarks (DeepLOB, TLOB):
    l = (mean(mid[t+1..t+k]) - mid[t]) / mid[t], up above +alpha, down below -alpha, with
    alpha = mean |l| over the training rows / 2. Persistence: the same quantity looking back,
    (mid[t] - mean(mid[t-k..t-1])) / mean(mid[t-k..t-1]), under the same alpha.

Each target knows each row's *reach*, the last row its label reads; a row whose reach lies in
another split (or in a purge gap) gets no target there (``UNKNOWN``), so no label of one split
reads another split. Every computation is per day: nothing crosses midnight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.models.specs import NEXT_MID_UP, LabelSpec, horizon_of

UNKNOWN = -1
BINARY = ("down", "up")
TERNARY = ("down", "flat", "up")


@dataclass(frozen=True)
class Target:
    label: str
    classes: tuple[str, ...]
    y: np.ndarray  # class index per row, UNKNOWN where there is no (usable) label
    persistence: np.ndarray  # the persistence baseline's class per row, UNKNOWN where it has no view
    params: dict  # what was fit on the training rows (threshold / alpha)


def source_columns(labels: tuple[str, ...]) -> list[str]:
    """Feature columns the targets of ``labels`` read."""
    needed = {"mid"}
    for label in labels:
        needed.add("label_next_mid_up" if label == NEXT_MID_UP else f"label_return_{horizon_of(label)}ev")
    return sorted(needed)


def make_target(rows: pl.DataFrame, label: str, spec: LabelSpec, fitted: dict | None = None) -> Target:
    """The target of ``label`` over ``rows`` (``datasets.rows``: date, split, features), its
    threshold / alpha fit on the rows of split ``train``, or ``fitted`` (a model's recorded ones)."""
    split = rows["split"].cast(pl.String).to_numpy()
    train = split == "train"
    if label == NEXT_MID_UP:
        up = rows["label_next_mid_up"]
        y = np.where(up.is_null().to_numpy(), UNKNOWN, up.fill_null(False).cast(pl.Int8).to_numpy()).astype(np.int64)
        reach, last_direction = _mid_changes(rows)
        target = Target(label, BINARY, y, last_direction, {})
    else:
        k = horizon_of(label)
        if spec.labelling == "threshold":
            ahead = rows[f"label_return_{k}ev"].to_numpy().astype(np.float64)
            behind = rows.select((pl.col("mid") / pl.col("mid").shift(k)).log().over("date")).to_series()
            known = ahead[train & ~np.isnan(ahead)]
            cut = fitted["threshold"] if fitted else (
                float(np.quantile(np.abs(known), spec.flat_share, method="lower")) if len(known) else 0.0)
            params = {"threshold": cut}
        else:
            mid = pl.col("mid")
            frames = rows.select(((mid.rolling_mean(k).shift(-k) - mid) / mid).over("date").alias("ahead"),
                                 ((mid - mid.rolling_mean(k).shift(1)) / mid.rolling_mean(k).shift(1)).over("date").alias("behind"))
            ahead, behind = frames["ahead"].to_numpy().astype(np.float64), frames["behind"]
            known = ahead[train & ~np.isnan(ahead)]
            cut = fitted["alpha"] if fitted else (float(np.mean(np.abs(known)) / 2) if len(known) else 0.0)
            params = {"alpha": cut}
        y = _three_classes(ahead, cut)
        persistence = _three_classes(behind.to_numpy().astype(np.float64), cut)
        reach = np.arange(rows.height) + k
        target = Target(label, TERNARY, y, persistence, params)
    return _purged(target, split, reach)


def _three_classes(values: np.ndarray, cut: float) -> np.ndarray:
    classes = np.where(values > cut, 2, np.where(values < -cut, 0, 1)).astype(np.int64)
    return np.where(np.isnan(values), UNKNOWN, classes)


def _mid_changes(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(row of the next mid change after each row, direction of the last change at or before it:
    0 down, 1 up, UNKNOWN none yet that day), per day."""
    mid = rows["mid"].to_numpy().astype(np.float64)
    date = rows["date"].to_numpy()
    n = len(mid)
    changed = np.zeros(n, dtype=bool)
    changed[1:] = (date[1:] == date[:-1]) & (mid[1:] != mid[:-1]) & ~np.isnan(mid[1:]) & ~np.isnan(mid[:-1])
    changes = np.flatnonzero(changed)
    if not len(changes):
        return np.full(n, n), np.full(n, UNKNOWN)
    following = np.searchsorted(changes, np.arange(n), side="right")
    reach = np.where(following < len(changes), changes[np.minimum(following, len(changes) - 1)], n)
    last_row = changes[np.maximum(following - 1, 0)]
    same_day = (following > 0) & (date[last_row] == date)
    up = (mid[last_row] > mid[last_row - 1]).astype(np.int64)  # a change is never on a day's first row
    return reach, np.where(same_day, up, UNKNOWN)


def _purged(target: Target, split: np.ndarray, reach: np.ndarray) -> Target:
    """No target on rows outside every split, or whose label reads a row of another split."""
    n = len(split)
    inside = reach < n
    reached = np.where(inside, split[np.minimum(reach, n - 1)], None)
    usable = (split != None) & (~inside | (reached == split))  # noqa: E711 (object array)
    return Target(target.label, target.classes, np.where(usable, target.y, UNKNOWN), target.persistence, target.params)
