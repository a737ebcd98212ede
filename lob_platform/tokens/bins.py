"""Quantile bin edges fit on training rows, and the tokens they give (seed 000).

``fit_bins(train_features, BinEdges())`` returns a fitted ``BinEdges``; ``compute_token_bins``
turns any day's features into integer tokens with it. The edges come from training rows only, so
the tokens of a later day never depend on that day's own distribution.

Rules:

- Edges are quantiles of the training values (``method="lower"``, so every edge is a value that
  occurs), deduplicated, and without the training minimum. Value v falls in bin
  ``#edges <= v``, so bin 0 holds the minimum and bin j >= 1 holds edge j-1: no bin is empty on
  the training data. A feature with few distinct values (price changes in ticks are mostly 0)
  gets fewer bins than asked for.
- A null value (``level`` where the venue has no book, or a status row) gets its own token, the
  last one: the vocabulary of a binned feature is its bin count + 1.
- Hierarchical mapping: the bins of a feature are cut into ``n_coarse`` contiguous coarse groups
  (coarse = bin * n_coarse // bins) and ``fine`` is the bin's position inside its group; the
  null token is a coarse group of its own. A model predicts the coarse group, then the fine bin.
- ``event_type`` and ``side`` are categorical: their token is the category's index in the
  unified schema's enum.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from lob_platform.features.events import KEY_COLUMNS
from lob_platform.core.columns import EVENT_TYPES

DEFAULT_BIN_COUNTS = {"price_change_ticks": 16, "log_size": 16, "log_inter_arrival_s": 32, "level": 16}
CATEGORICAL_VOCABULARY = {"event_type": len(EVENT_TYPES), "side": 2}


class BinsNotFitted(ValueError):
    """Tokens were asked for with edges that were never fit."""


@dataclass(frozen=True)
class BinEdges:
    """How many bins per feature, and once fit, the inner edges and what they were fit on."""

    bin_counts: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BIN_COUNTS))
    n_coarse: int = 4
    edges: dict[str, tuple[float, ...]] = field(default_factory=dict)
    fit_rows: int = 0

    @property
    def fitted(self) -> bool:
        return set(self.edges) == set(self.bin_counts)

    def bins(self, feature: str) -> int:
        return len(self.edges[feature]) + 1

    def vocabulary(self) -> dict[str, int]:
        """Token count per column that ``compute_token_bins`` writes (null token included)."""
        sizes = {f"{f}_bin": self.bins(f) + 1 for f in self.bin_counts}
        sizes.update({f"{f}_coarse": self._coarse_count(f) + 1 for f in self.bin_counts})
        sizes.update({f"{f}_fine": self._fine_count(f) for f in self.bin_counts})
        sizes.update({f"{f}_token": size for f, size in CATEGORICAL_VOCABULARY.items()})
        return sizes

    def _coarse_count(self, feature: str) -> int:
        return min(self.n_coarse, self.bins(feature))

    def _fine_count(self, feature: str) -> int:
        coarse = coarse_groups(self.bins(feature), self._coarse_count(feature))
        return int(np.bincount(coarse).max())

    def to_frame(self) -> pl.DataFrame:
        """One row per feature, for the warehouse (``from_frame`` reads it back)."""
        return pl.DataFrame({
            "feature": list(self.edges),
            "requested_bins": [self.bin_counts[f] for f in self.edges],
            "bins": [self.bins(f) for f in self.edges],
            "edges": [list(e) for e in self.edges.values()],
            "n_coarse": [self.n_coarse] * len(self.edges),
            "fit_rows": [self.fit_rows] * len(self.edges),
        }, schema={"feature": pl.String, "requested_bins": pl.UInt16, "bins": pl.UInt16, "edges": pl.List(pl.Float64),
                   "n_coarse": pl.UInt16, "fit_rows": pl.UInt64})

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> "BinEdges":
        rows = frame.rows(named=True)
        if not rows:
            raise BinsNotFitted("the bin-edge table is empty: materialize bin_edges for this partition first")
        return cls(bin_counts={r["feature"]: r["requested_bins"] for r in rows}, n_coarse=rows[0]["n_coarse"],
                   edges={r["feature"]: tuple(r["edges"]) for r in rows}, fit_rows=rows[0]["fit_rows"])


def quantile_edges(values: np.ndarray, bins: int) -> tuple[float, ...]:
    """Inner edges of ``bins`` quantile bins of ``values`` (module docstring rules)."""
    values = values[np.isfinite(values)]
    if len(values) == 0 or bins < 2:
        return ()
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins, method="lower"))
    return tuple(float(e) for e in edges[edges > values.min()])


def fit_bins(features: pl.DataFrame, bins: BinEdges = BinEdges()) -> BinEdges:
    """Fit quantile edges per feature on ``features`` (pass training rows only)."""
    missing = [f for f in bins.bin_counts if f not in features.columns]
    if missing:
        raise ValueError(f"features lack {missing}: pass the output of compute_derived_features")
    edges = {f: quantile_edges(features[f].cast(pl.Float64).to_numpy(), n) for f, n in bins.bin_counts.items()}
    return replace(bins, edges=edges, fit_rows=features.height)


def coarse_groups(bins: int, n_coarse: int) -> np.ndarray:
    """The coarse group of each of ``bins`` bins (contiguous groups)."""
    return np.arange(bins) * n_coarse // bins


def bin_index(values: pl.Series, edges: tuple[float, ...]) -> np.ndarray:
    """Bin of each value; the null token (``len(edges) + 1``) for nulls."""
    array = values.cast(pl.Float64).to_numpy()
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), array, side="right")
    return np.where(np.isnan(array), len(edges) + 1, index)


def compute_token_bins(features: pl.DataFrame, bins: BinEdges) -> pl.DataFrame:
    """Tokens of every event: ``{f}_bin``, ``{f}_coarse`` and ``{f}_fine`` per binned feature,
    ``event_type_token`` and ``side_token``, keyed by the event's row, time and source line."""
    if not bins.fitted:
        raise BinsNotFitted("these BinEdges were never fit: call fit_bins(training_features, BinEdges()) first")
    columns = [features[c] for c in KEY_COLUMNS if c in features.columns]
    for feature in bins.bin_counts:
        count = bins.bins(feature)
        n_coarse = min(bins.n_coarse, count)
        coarse_of = np.append(coarse_groups(count, n_coarse), n_coarse)  # the null token is its own group
        first_of_group = np.searchsorted(coarse_of, coarse_of)
        index = bin_index(features[feature], bins.edges[feature])
        columns += [
            pl.Series(f"{feature}_bin", index, pl.UInt16),
            pl.Series(f"{feature}_coarse", coarse_of[index], pl.UInt16),
            pl.Series(f"{feature}_fine", index - first_of_group[index], pl.UInt16),
        ]
    columns += [features[f].to_physical().cast(pl.UInt16).alias(f"{f}_token") for f in CATEGORICAL_VOCABULARY]
    return pl.DataFrame(columns)
