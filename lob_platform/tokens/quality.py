"""What the bin-edge and token asset checks measure (pure functions)."""

from __future__ import annotations

import numpy as np
import polars as pl

from lob_platform.tokens.bins import BinEdges, bin_index


def non_monotonic_edges(bins: BinEdges) -> list[str]:
    """Features whose edges are not strictly increasing and finite."""
    return [f for f, edges in bins.edges.items()
            if not np.all(np.isfinite(edges)) or np.any(np.diff(np.asarray(edges, dtype=float)) <= 0)]


def empty_bins(train: pl.DataFrame, bins: BinEdges) -> dict[str, list[int]]:
    """Per feature, the bins (nulls aside) no training row falls in. A feature that is null on
    every training row (``level`` where the venue has no book) has only its null token: skipped."""
    empty = {}
    for feature, edges in bins.edges.items():
        if train[feature].null_count() == train.height:
            continue
        index = bin_index(train[feature], edges)
        counts = np.bincount(index[index <= len(edges)], minlength=len(edges) + 1)
        if (counts == 0).any():
            empty[feature] = np.flatnonzero(counts == 0).tolist()
    return empty


def split_share_deviation(splits: pl.Series, fractions: dict[str, float]) -> dict[str, dict]:
    """Per split in ``fractions``, the observed share of ``splits`` next to the expected fraction.

    ``splits`` holds one split name per sequence. The share is that split's count over all
    sequences (purged sequences with a null split count in the total but in no split). Returns
    ``{split: {"share", "expected", "deviation"}}`` with deviation = |share - expected|; an empty
    series gives share 0 for every split.
    """
    total = splits.len()
    names = splits.cast(pl.String)
    deviations = {}
    for split, expected in fractions.items():
        share = int((names == split).sum()) / total if total else 0.0
        deviations[split] = {"share": share, "expected": expected, "deviation": abs(share - expected)}
    return deviations


def split_shares_within(deviations: dict[str, dict], tolerance: float) -> bool:
    """Whether every split's deviation (from ``split_share_deviation``) is at most ``tolerance``."""
    return all(d["deviation"] <= tolerance for d in deviations.values())
