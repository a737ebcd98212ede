"""How far a day's token distribution has moved from a reference (pure functions, no dagster).

The measure is the population stability index (PSI) over token ids, one value per token column:

    PSI = sum over bins of (a - e) * ln(a / e)

where e and a are the reference ("expected") and the day's ("actual") counts turned into shares.
Shares are floored at ``epsilon`` so an empty bin gives a large but finite term instead of
infinity; they are not renormalised after flooring.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

# Usual reading of PSI: below 0.1 the distribution is stable, 0.1 to 0.25 is a moderate shift worth
# a look, above 0.25 is a significant shift (the bins fit on training days no longer describe the
# day well). Above this value a drift check warns.
PSI_WARNING = 0.25


def population_stability_index(expected_counts: np.ndarray, actual_counts: np.ndarray, epsilon: float = 1e-4) -> float:
    """PSI between two count vectors over the same bins (module docstring for the formula).

    Rules: both vectors are normalised to shares, each share is floored at ``epsilon`` (not
    renormalised afterwards), then PSI = sum((a - e) * ln(a / e)). It is 0 for identical
    distributions and never negative. ValueError when the vectors differ in length or either one
    sums to 0.
    """
    expected = np.asarray(expected_counts, dtype=float)
    actual = np.asarray(actual_counts, dtype=float)
    if expected.shape != actual.shape:
        raise ValueError(f"count vectors differ in length: {expected.shape} vs {actual.shape}")
    if expected.sum() == 0 or actual.sum() == 0:
        raise ValueError("count vectors must not sum to 0")
    expected_share = np.maximum(expected / expected.sum(), epsilon)
    actual_share = np.maximum(actual / actual.sum(), epsilon)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))


def token_counts(tokens: pl.DataFrame, column: str, vocabulary_size: int) -> np.ndarray:
    """How often each token id 0 .. vocabulary_size - 1 occurs in ``tokens[column]``.

    Nulls are not counted. An id at or above ``vocabulary_size`` (or below 0) is a ValueError
    naming the column: the tokens were made with a different vocabulary than the reference.
    """
    ids = tokens[column].drop_nulls().to_numpy().astype(np.int64)
    outside = (ids < 0) | (ids >= vocabulary_size)
    if outside.any():
        raise ValueError(
            f"column {column!r}: {int(outside.sum())} token ids outside the vocabulary 0..{vocabulary_size - 1}"
        )
    return np.bincount(ids, minlength=vocabulary_size)


def token_drift(
    tokens: pl.DataFrame, reference_counts: dict[str, Sequence[int]], vocabulary: dict[str, int]
) -> dict[str, float]:
    """PSI of the day's token counts against the reference counts, per column, rounded to 4 decimals.

    Only the columns in ``reference_counts`` are measured; ``vocabulary[column]`` gives the number
    of token ids, and the reference must have one count per id (ValueError otherwise, as for an
    empty day: see ``population_stability_index``).
    """
    return {
        column: round(
            population_stability_index(np.asarray(reference), token_counts(tokens, column, vocabulary[column])), 4
        )
        for column, reference in reference_counts.items()
    }
