"""Labels: the only columns that look ahead, all named ``label_*``.

- ``label_next_mid_up`` (seed 001): direction of the next *change* of the mid after the event:
  true up, false down. Events that leave the mid unchanged are skipped until the mid moves, so
  there are no ties; an event after which the mid never moves again that day (or a day on which
  it never moves) has a null label and is left out of training, never guessed.
- ``label_return_{k}ev``: log mid return from the event to k events later, null when fewer than k
  events follow in the day.
- ``label_move_{k}ev`` (seed 004): -1, 0 or 1, the return beyond a threshold: 1 when the return
  exceeds +threshold, -1 below -threshold, 0 otherwise. The threshold per horizon is fit on
  training rows only (``fit_label_thresholds``) as the quantile of |return| that leaves
  ``flat_share`` of the training rows flat; where more rows than that never move, it is 0 and
  "flat" means exactly unchanged.

The mid is the book feature ``mid`` (carried forward over one-sided or crossed rows).
"""

from __future__ import annotations

import numpy as np
import polars as pl

LABEL_HORIZONS = (10, 20, 50, 100)
FLAT_SHARE = 1 / 3


def next_mid_up(mid: np.ndarray) -> np.ndarray:
    """1.0 if the next change of ``mid`` after each row is up, 0.0 if down, NaN if none."""
    n = len(mid)
    out = np.full(n, np.nan)
    if n < 2:
        return out
    changed = ~np.isnan(mid[1:]) & ~np.isnan(mid[:-1]) & (mid[1:] != mid[:-1])
    changes = np.flatnonzero(changed) + 1
    following = np.searchsorted(changes, np.arange(n), side="right")
    has_next = (following < len(changes)) & ~np.isnan(mid)
    rows = np.flatnonzero(has_next)
    out[rows] = (mid[changes[following[rows]]] > mid[rows]).astype(float)
    return out


def forward_return(mid: np.ndarray, events: int) -> np.ndarray:
    """log(mid[n + events] / mid[n]); NaN where fewer than ``events`` rows follow."""
    out = np.full(len(mid), np.nan)
    if len(mid) > events:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:-events] = np.log(mid[events:] / mid[:-events])
    return out


def compute_labels(mid: pl.Series, horizons: tuple[int, ...] = LABEL_HORIZONS) -> pl.DataFrame:
    """The look-ahead columns of a day, from its ``mid`` feature."""
    values = mid.to_numpy().astype(np.float64)
    up = next_mid_up(values)
    columns = [pl.Series("label_next_mid_up", up, nan_to_null=True).cast(pl.Boolean)]
    columns += [pl.Series(f"label_return_{k}ev", forward_return(values, k), nan_to_null=True) for k in horizons]
    return pl.DataFrame(columns)


def fit_label_thresholds(train: pl.DataFrame, horizons: tuple[int, ...] = LABEL_HORIZONS,
                         flat_share: float = FLAT_SHARE) -> dict[int, float]:
    """Per horizon, the |return| quantile that leaves ``flat_share`` of the training rows flat."""
    if not 0 < flat_share < 1:
        raise ValueError(f"flat_share must be in (0, 1), got {flat_share}")
    thresholds = {}
    for k in horizons:
        returns = train[f"label_return_{k}ev"].drop_nulls().abs().to_numpy()
        thresholds[k] = float(np.quantile(returns, flat_share, method="lower")) if len(returns) else 0.0
    return thresholds


def ternary_labels(features: pl.DataFrame, thresholds: dict[int, float]) -> pl.DataFrame:
    """``label_move_{k}ev`` in {-1, 0, 1} per horizon (null where the return is null)."""
    return features.select(
        pl.when(pl.col(f"label_return_{k}ev") > t).then(1)
        .when(pl.col(f"label_return_{k}ev") < -t).then(-1)
        .when(pl.col(f"label_return_{k}ev").is_not_null()).then(0)
        .cast(pl.Int8).alias(f"label_move_{k}ev")
        for k, t in thresholds.items()
    )
