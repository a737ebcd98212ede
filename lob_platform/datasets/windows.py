"""Fixed-length windows of consecutive events that never cross a day boundary.

A window ending at row t holds rows t-length+1 .. t, all of t's day; the first length-1 rows of a
day have none. Windows are gathered batch by batch from the (rows x features) matrix, so a day
of windows never sits in memory as (windows x length x features).
"""

from __future__ import annotations

import numpy as np


def window_ends(dates: np.ndarray, length: int) -> np.ndarray:
    """Boolean per row: a full window of ``length`` rows of its own day ends there."""
    n = len(dates)
    if n == 0:
        return np.zeros(0, dtype=bool)
    starts = np.r_[0, np.flatnonzero(dates[1:] != dates[:-1]) + 1]
    day_start = starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
    return np.arange(n) - day_start >= length - 1


def gather(matrix: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """(len(ends), length, features) windows ending at ``ends`` (each must be a valid end)."""
    return matrix[ends[:, None] + np.arange(-length + 1, 1)[None, :]]
