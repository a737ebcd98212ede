"""Windows of the crypto panel for the panel forecasters (pure logic, no Dagster).

A forecaster of date D reads the panels of its training window (``features.training_window``:
the last trading days before D, or the first part of D when there is none) and is scored on D.

- **Rows and splits.** The window's days are laid end to end (``PanelRows``). Validation is the
  last ``validation_fraction`` of the training rows; a same-day split trains on the first
  ``train_fraction`` of D and divides the rest evenly into validation and test, as every other
  fit does. Each split is a list of *segments* (a day, or the part of a day in that split), and a
  window (context plus horizon) lies inside one segment, so no window crosses midnight or a split
  boundary: a training target never reaches a validation row, nor a validation target a test row.
- **Inputs.** Every value column of the panel, as floats, with an *untrusted* flag where the value
  is null or its instrument is stale (no snapshot within the last grid step). Untrusted inputs are
  set to 0 and flagged, so a model masks them instead of reading a carried-over book.
- **Scaling** (``PanelScaler``), fit on the training rows only. Prices (and the SSM's price-like
  channels) are *relative*: a window's values minus the column's value at the window's last
  step, over the column's training standard deviation of one-step changes times sqrt(context).
  Everything else is standardised with its training mean and standard deviation. Targets are
  scaled the same way against the same last step, so "no change" is the persistence forecast.
- **Usable windows**: the target columns' last context value and every horizon value must be
  present (a window over a stale gap longer than the panel's fill limit has nulls there and is
  skipped, and counted); a pair that starts trading in the middle of a day has its first
  windows once its values appear. Inputs may be missing anywhere: they are masked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.features.crypto_panel import PanelConfig, panel_columns
from lob_platform.features.training_window import PREVIOUS_DAYS
from lob_platform.errors import TrainingDataError

SIDES = ("bid", "ask")
FIELDS = ("price", "volume")
SSM_CHANNELS = (
    "mid", "microprice", "depth_weighted_mid", "spread",
    *(f"bid_volume_{level}" for level in range(1, 6)), *(f"ask_volume_{level}" for level in range(1, 6)),
    *(f"imbalance_{level}" for level in range(1, 6)),
    "depth_imbalance", "bid_depth", "ask_depth", "bid_span", "ask_span",
)
"""The SSM-HiPPO's 24 channels of one exchange-pair, from its 5 panel levels: mid, microprice
(best prices weighted by the opposite best volume), depth-weighted mid (every level's prices
weighted by their volumes), spread; the volume at each level on each side; the imbalance
(bid - ask) / (bid + ask) of each level's volumes and of the 5 levels' totals; the total bid and
ask volume; the price distance from the best to the 5th level on each side. The first three are
price-like (scaled relative to the window's last step)."""
SSM_RELATIVE = ("mid", "microprice", "depth_weighted_mid")


def column_attributes(config: PanelConfig) -> np.ndarray:
    """(columns, 5) integer codes of every panel value column: level - 1, side, field, exchange, pair."""
    return np.array([(level, side, fld, exchange, pair)
                     for exchange in range(len(config.exchanges)) for pair in range(len(config.pairs))
                     for level in range(config.levels) for side in range(len(SIDES)) for fld in range(len(FIELDS))],
                    dtype=np.int64)


def target_columns(config: PanelConfig, exchange: str, pair: str) -> np.ndarray:
    """Positions of one exchange-pair's ``levels x 2 x 2`` values among the panel's value columns."""
    if exchange not in config.exchanges or pair not in config.pairs:
        raise TrainingDataError(f"{exchange}.{pair} is not in the panel (exchanges {list(config.exchanges)}, "
                                f"pairs {list(config.pairs)}): choose a target the panel has.")
    names = panel_columns(config)
    return np.array([i for i, name in enumerate(names) if name.startswith(f"{exchange}.{pair}.")], dtype=np.int64)


def price_columns(config: PanelConfig) -> np.ndarray:
    """Boolean per panel value column: a price (scaled relative to the window's last step)."""
    return column_attributes(config)[:, 2] == FIELDS.index("price")


@dataclass
class PanelRows:
    """The window's days end to end: values (rows, columns), untrusted flags, grid times, and the
    row segments of each split (``{"train": [(start, end), ...], "validation": ..., "test": ...}``)."""

    values: np.ndarray
    untrusted: np.ndarray
    ts_ns: np.ndarray
    segments: dict[str, list[tuple[int, int]]]

    def rows_of(self, split: str) -> np.ndarray:
        return np.concatenate([np.arange(a, b) for a, b in self.segments[split]] or [np.zeros(0, np.int64)])


def panel_matrix(frame: pl.DataFrame, config: PanelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(values, untrusted) of a panel frame's value columns: NaN and True where null or stale."""
    columns = panel_columns(config)
    values = frame.select(columns).to_numpy().astype(np.float64)
    stale = np.column_stack([frame[f"{i}.stale"].to_numpy() for i in config.instruments])
    per_instrument = 2 * len(FIELDS) * config.levels
    return values, np.isnan(values) | np.repeat(stale, per_instrument, axis=1)


def ssm_matrix(frame: pl.DataFrame, exchange: str, pair: str, config: PanelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(values, untrusted) of the 24 ``SSM_CHANNELS`` of one exchange-pair (rows of the panel)."""
    if config.levels < 5:
        raise TrainingDataError(f"the SSM-HiPPO channels need 5 panel levels; the panel has {config.levels}")
    prefix = f"{exchange}.{pair}."
    if f"{prefix}stale" not in frame.columns:
        raise TrainingDataError(f"{exchange}.{pair} is not in the panel: choose an exchange and pair it has.")
    get = lambda side, fld, level: frame[f"{prefix}{side}_{fld}_{level}"].to_numpy().astype(np.float64)  # noqa: E731
    bid_p, ask_p = np.column_stack([get("bid", "price", l) for l in range(1, 6)]), np.column_stack([get("ask", "price", l) for l in range(1, 6)])
    bid_v, ask_v = np.column_stack([get("bid", "volume", l) for l in range(1, 6)]), np.column_stack([get("ask", "volume", l) for l in range(1, 6)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = (bid_p[:, 0] + ask_p[:, 0]) / 2
        micro = (bid_p[:, 0] * ask_v[:, 0] + ask_p[:, 0] * bid_v[:, 0]) / (bid_v[:, 0] + ask_v[:, 0])
        weighted = ((bid_p * bid_v).sum(1) + (ask_p * ask_v).sum(1)) / (bid_v.sum(1) + ask_v.sum(1))
        imbalance = (bid_v - ask_v) / (bid_v + ask_v)
        bid_depth, ask_depth = bid_v.sum(1), ask_v.sum(1)
        channels = [mid, micro, weighted, ask_p[:, 0] - bid_p[:, 0], *bid_v.T, *ask_v.T, *imbalance.T,
                    (bid_depth - ask_depth) / (bid_depth + ask_depth), bid_depth, ask_depth,
                    bid_p[:, 0] - bid_p[:, 4], ask_p[:, 4] - ask_p[:, 0]]
    values = np.column_stack(channels)
    return values, ~np.isfinite(values) | frame[f"{prefix}stale"].to_numpy()[:, None]


def split_rows(days: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], date: str, scope: str,
               train_fraction: float, validation_fraction: float, key_columns: np.ndarray) -> PanelRows:
    """Lay the window's days (ISO date -> (values, untrusted, ts_ns)) and ``date`` end to end and
    mark each split's segments (module docstring). Fractions count the rows where some
    ``key_columns`` value is present, so a capture shorter than a day still gets its validation
    and test parts where its data is."""
    if date not in days:
        raise TrainingDataError(f"the panel of {date} is not among the days read: materialize it first.")
    order = sorted(d for d in days if d != date) + [date]
    values = np.concatenate([days[d][0] for d in order])
    present = (~np.isnan(values[:, key_columns])).any(axis=1)
    bounds = np.cumsum([0, *(len(days[d][0]) for d in order)])
    span = {d: (int(bounds[i]), int(bounds[i + 1])) for i, d in enumerate(order)}
    segments: dict[str, list[tuple[int, int]]] = {"train": [], "validation": [], "test": []}
    if scope == PREVIOUS_DAYS:
        end = span[date][0]
        cut = _row_at_share(present[:end], 1 - validation_fraction)
        for a, b in (span[d] for d in order[:-1]):
            segments["train"] += [(a, min(b, cut))] if a < min(b, cut) else []
            segments["validation"] += [(max(a, cut), b)] if max(a, cut) < b else []
        segments["test"] = [span[date]]
    else:
        a, b = span[date]
        train_end = a + _row_at_share(present[a:b], train_fraction)
        validation_end = a + _row_at_share(present[a:b], train_fraction + (1 - train_fraction) / 2)
        segments.update(train=[(a, train_end)], validation=[(train_end, validation_end)], test=[(validation_end, b)])
    return PanelRows(values, np.concatenate([days[d][1] for d in order]), np.concatenate([days[d][2] for d in order]), segments)


def _row_at_share(present: np.ndarray, share: float) -> int:
    """The row before which ``share`` of the present rows lie (all rows count when none is present)."""
    weights = present if present.any() else np.ones(len(present), dtype=bool)
    return int(np.searchsorted(np.cumsum(weights), share * weights.sum(), side="left")) + 1 if len(weights) else 0


def window_starts(segments: list[tuple[int, int]], span: int, stride: int) -> np.ndarray:
    """First rows of every ``span``-row window inside one segment, every ``stride`` rows."""
    return np.concatenate([np.arange(a, b - span + 1, stride) for a, b in segments] or [np.zeros(0, np.int64)]).astype(np.int64)


def complete_targets(values: np.ndarray, starts: np.ndarray, context: int, horizon: int, columns: np.ndarray) -> np.ndarray:
    """Boolean per window: the target columns' last context value and every horizon value are present."""
    offsets = np.arange(context - 1, context + horizon)
    block = values[(starts[:, None] + offsets[None, :])[:, :, None], columns[None, None, :]]
    return ~np.isnan(block).any(axis=(1, 2))


@dataclass(frozen=True)
class PanelScaler:
    """Per column: relative (price-like) or standardised, with its training centre and scale."""

    relative: np.ndarray  # bool (columns,)
    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, train_rows: np.ndarray, relative: np.ndarray, context: int) -> "PanelScaler":
        """Training rows only: a relative column's scale is the standard deviation of its one-step
        changes (within training rows) times sqrt(context); other columns' mean and standard deviation.
        A column with no spread (or no value) gets scale 1."""
        train = values[train_rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-null columns: they get scale 1
            consecutive = np.diff(train_rows) == 1
            steps = np.diff(train, axis=0)[consecutive]
            step_std = np.nanstd(steps, axis=0) * np.sqrt(context)
            center = np.where(relative, 0.0, np.nanmean(train, axis=0))
            scale = np.where(relative, step_std, np.nanstd(train, axis=0))
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return cls(relative.astype(bool), np.nan_to_num(center), scale)

    def standardised(self, values: np.ndarray) -> np.ndarray:
        """Every row scaled (relative columns not yet referenced to a window's last step)."""
        return ((values - self.center) / self.scale).astype(np.float32)

    def window_inputs(self, z: np.ndarray, untrusted: np.ndarray, starts: np.ndarray, context: int,
                      columns: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, missing) of windows starting at ``starts``: (windows, context, columns) each, of
        every column or only ``columns``."""
        relative = self.relative
        if columns is not None:
            z, untrusted, relative = z[:, columns], untrusted[:, columns], relative[columns]
        rows = starts[:, None] + np.arange(context)[None, :]
        x = z[rows]
        x = x - np.where(relative, np.nan_to_num(z[starts + context - 1]), 0.0)[:, None, :]
        missing = untrusted[rows] | np.isnan(x)
        return np.where(missing, 0.0, x).astype(np.float32), missing

    def window_targets(self, z: np.ndarray, starts: np.ndarray, context: int, horizon: int, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(last, future): the target columns' scaled last context step (0 for relative columns) and
        their next ``horizon`` steps, (windows, columns) and (windows, horizon, columns)."""
        last = z[starts + context - 1][:, columns]
        future = z[(starts[:, None] + context + np.arange(horizon)[None, :])[:, :, None], columns[None, None, :]]
        reference = np.where(self.relative[columns], last, 0.0)
        return (last - reference).astype(np.float32), (future - reference[:, None, :]).astype(np.float32)

    def unscale(self, scaled: np.ndarray, last_raw: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Forecasts (windows, horizon, columns) back in prices and volumes; ``last_raw`` the columns'
        raw value at each window's last context step."""
        relative = self.relative[columns]
        base = np.where(relative, last_raw, self.center[columns])
        return base[:, None, :] + scaled * self.scale[columns]

    def as_dict(self) -> dict:
        return {"relative": self.relative.tolist(), "center": self.center.tolist(), "scale": self.scale.tolist()}
