"""Point-in-time crypto panel: every exchange.pair's top-of-book levels on one 5-second UTC grid.

``build_panel(snapshots, date, config)`` turns validated depth snapshots (one frame per instrument,
keyed ``"{exchange}.{SYMBOL}"``) into one wide frame that models can read row by row without
lookahead.

Grid: ``ts_ns`` (Int64, ns UTC) = UTC midnight of ``date`` + k * step_s, k = 0 .. 86400/step_s - 1
(17280 rows at 5 s).

Columns, in this order:

1. ``ts_ns``.
2. Value columns (``panel_columns(config)``; 240 with the default config), nested as
   exchange (config order) -> pair (config order) -> level 1..L -> side (bid, ask) ->
   field (price, volume), named ``f"{exchange}.{pair}.{side}_{field}_{level}"``::

       binance_spot.BTCUSDT.bid_price_1, binance_spot.BTCUSDT.bid_volume_1,
       binance_spot.BTCUSDT.ask_price_1, binance_spot.BTCUSDT.ask_volume_1,
       binance_spot.BTCUSDT.bid_price_2, ... binance_spot.ETHUSDT.bid_price_1, ...

   Volume is the snapshot's ``*_size_*`` column. All Float64.
3. ``f"{exchange}.{pair}.stale"`` (Boolean) for every instrument, exchange -> pair order.
4. ``f"{exchange}.{pair}.age_s"`` (Float64) for every instrument, same order.

Rules (why: the panel must show only what a trader could have acted on at t):

* The row at grid time t shows the newest book received by t: among the snapshots whose RECEIVE time
  ``local_ts_ns <= t``, the one with the latest exchange time ``ts_ns``. Frames are sorted by receive
  time first (receive times jitter), and a snapshot that arrives after a newer book was already
  received is dropped, since a feed handler would not roll its book back.
* ``age_s`` = (t - receive time of that snapshot) / 1e9; null before the day's first snapshot.
  Only snapshots received on ``date`` count: nothing is carried over from the previous day, so the
  first rows are null until each instrument's first snapshot of the day arrives.
* Values are forward-filled only while ``age_s <= max_fill_age_s``; older than that they are null.
* ``stale`` is True when no snapshot was received within the last grid step (``age_s >= step_s``
  or no snapshot yet).
* A snapshot's empty level (null price) stays null; it is never filled from an older snapshot.
* An instrument missing from the input is all null and stale everywhere. Input keys outside the
  config are ignored; a frame with fewer levels than ``config.levels`` gets null extra levels. Both
  are reported in ``Panel.summary()``. Frames may span other dates: only ``date``'s grid is filled.

``Panel.gaps`` lists, per instrument, every stretch longer than ``max_fill_age_s`` without a
received snapshot, measured on receive times and including midnight -> first snapshot and last
snapshot -> last grid time (a missing instrument has one gap over the whole grid).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from lob_platform.core.columns import book_levels

_NS = 1_000_000_000
_DAY_S = 86_400
_SIDES = ("bid", "ask")
_FIELDS = {"price": "price", "volume": "size"}  # panel field -> snapshot column field
GAP_SCHEMA = {"instrument": pl.String, "gap_start_ns": pl.Int64, "gap_end_ns": pl.Int64, "gap_s": pl.Float64}


@dataclass(frozen=True)
class PanelConfig:
    """Which instruments, how many levels, the grid step and how long a value may be carried."""

    exchanges: tuple[str, ...] = ("binance_spot", "binance_perp", "bybit_spot")
    pairs: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "WLDUSDT")
    levels: int = 5
    step_s: int = 5
    max_fill_age_s: float = 60.0

    def __post_init__(self) -> None:
        """A grid step must tile the day, or the last row would not sit step_s before midnight."""
        if self.step_s <= 0 or _DAY_S % self.step_s or self.levels < 1 or self.max_fill_age_s < 0:
            raise ValueError(f"PanelConfig: need step_s dividing 86400, levels >= 1, max_fill_age_s >= 0; got {self}")

    @property
    def instruments(self) -> list[str]:
        """``exchange.pair`` names in panel order (exchange, then pair)."""
        return [f"{exchange}.{pair}" for exchange in self.exchanges for pair in self.pairs]


def panel_columns(config: PanelConfig = PanelConfig()) -> list[str]:
    """The value column names in panel order (see the module docstring)."""
    return [
        _name(instrument, side, fld, level)
        for instrument in config.instruments
        for level in range(1, config.levels + 1)
        for side in _SIDES
        for fld in _FIELDS
    ]


def has_panel_layout(frame: pl.DataFrame, config: PanelConfig = PanelConfig()) -> bool:
    """Whether ``frame`` is a full grid with ``ts_ns`` then the value columns in the documented order."""
    columns = panel_columns(config)
    return frame.columns[: 1 + len(columns)] == ["ts_ns", *columns] and frame.height == _DAY_S // config.step_s


def _name(instrument: str, side: str, fld: str, level: int) -> str:
    return f"{instrument}.{side}_{fld}_{level}"


@dataclass
class Panel:
    """The grid frame, its gap list, and what went into it (for ``summary``)."""

    frame: pl.DataFrame
    gaps: pl.DataFrame
    config: PanelConfig = PanelConfig()
    instruments_present: list[str] = field(default_factory=list)
    instruments_ignored: list[str] = field(default_factory=list)
    levels_short: dict[str, int] = field(default_factory=dict)  # instrument -> levels it had
    longest_gap_s: dict[str, float] = field(default_factory=dict)  # any length, boundaries included

    def summary(self) -> dict:
        """Plain-Python metadata for Dagster: coverage, staleness and gaps per instrument."""
        instruments = self.config.instruments
        return {
            "rows": self.frame.height,
            "value_columns": len(panel_columns(self.config)),
            "instruments_present": list(self.instruments_present),
            "instruments_missing": [i for i in instruments if i not in self.instruments_present],
            "instruments_ignored": list(self.instruments_ignored),
            "instruments_short_levels": dict(self.levels_short),
            "stale_fraction": {i: float(self.frame[f"{i}.stale"].mean()) for i in instruments},
            "gaps_over_max_age": self.gaps.height,
            "longest_gap_s": dict(self.longest_gap_s),
        }


def build_panel(snapshots: dict[str, pl.DataFrame], date: dt.date, config: PanelConfig = PanelConfig()) -> Panel:
    """Sample every configured instrument's book onto ``date``'s grid, point in time (module docstring)."""
    start_ns = int(dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC).timestamp()) * _NS
    grid = start_ns + np.arange(_DAY_S // config.step_s, dtype=np.int64) * config.step_s * _NS
    n = len(grid)
    columns: dict[str, pl.Series] = {"ts_ns": pl.Series("ts_ns", grid, dtype=pl.Int64)}
    stale: dict[str, pl.Series] = {}
    ages: dict[str, pl.Series] = {}
    gaps: list[pl.DataFrame] = []
    longest: dict[str, float] = {}
    short: dict[str, int] = {}
    for instrument in config.instruments:
        book = _received_on(snapshots.get(instrument), start_ns, int(grid[-1]))
        received = book["local_ts_ns"].to_numpy()
        idx = np.searchsorted(received, grid, side="right") - 1  # last snapshot received at or before t
        has = idx >= 0
        last = np.concatenate([[0], received]).astype(np.int64)[idx + 1]  # slot 0: "none yet"
        age = np.where(has, (grid - last) / _NS, np.nan)
        fresh = has & (age <= config.max_fill_age_s)
        rows = pl.Series(np.where(fresh, idx, 0), dtype=pl.Int64).scatter(np.flatnonzero(~fresh), None)  # null -> null value
        levels = book_levels(book.columns)
        if instrument in snapshots and levels < config.levels:
            short[instrument] = levels
        for level in range(1, config.levels + 1):
            for side in _SIDES:
                for fld, source in _FIELDS.items():
                    name = _name(instrument, side, fld, level)
                    column = f"{side}_{source}_{level}"
                    if level <= levels and book.height:
                        columns[name] = book[column].cast(pl.Float64).gather(rows).alias(name)
                    else:
                        columns[name] = pl.Series(name, [None] * n, dtype=pl.Float64)
        ages[f"{instrument}.age_s"] = pl.Series(f"{instrument}.age_s", age, dtype=pl.Float64, nan_to_null=True)
        stale[f"{instrument}.stale"] = pl.Series(f"{instrument}.stale", ~(has & (age < config.step_s)))
        gap_frame, longest[instrument] = _gaps(instrument, received, start_ns, int(grid[-1]), config.max_fill_age_s)
        gaps.append(gap_frame)
    frame = pl.DataFrame([*columns.values(), *stale.values(), *ages.values()])
    return Panel(
        frame=frame,
        gaps=pl.concat(gaps),
        config=config,
        instruments_present=[i for i in config.instruments if i in snapshots],
        instruments_ignored=sorted(k for k in snapshots if k not in config.instruments),
        levels_short=short,
        longest_gap_s=longest,
    )


def _received_on(frame: pl.DataFrame | None, start_ns: int, end_ns: int) -> pl.DataFrame:
    """The snapshots received in [start_ns, end_ns], in receive order, without rolled-back books.

    Sorting by receive time makes searchsorted valid; dropping a snapshot whose exchange time is not
    newer than one already received keeps the panel on the newest book the trader had.
    """
    if frame is None:
        return pl.DataFrame(schema={"ts_ns": pl.Int64, "local_ts_ns": pl.Int64})
    frame = frame.filter(pl.col("local_ts_ns").is_between(start_ns, end_ns)).sort("local_ts_ns", "ts_ns", maintain_order=True)
    newest_before = pl.col("ts_ns").cum_max().shift(1)
    return frame.filter(newest_before.is_null() | (pl.col("ts_ns") > newest_before))


def _gaps(instrument: str, received: np.ndarray, start_ns: int, end_ns: int, max_age_s: float) -> tuple[pl.DataFrame, float]:
    """Stretches without a received snapshot longer than max_age_s (midnight and grid end included),
    and the longest stretch of any length."""
    bounds = np.concatenate([[start_ns], received, [end_ns]]).astype(np.int64)
    lengths = np.diff(bounds) / _NS
    long = np.flatnonzero(lengths > max_age_s)
    frame = pl.DataFrame(
        {"instrument": [instrument] * len(long), "gap_start_ns": bounds[long], "gap_end_ns": bounds[long + 1], "gap_s": lengths[long]},
        schema=GAP_SCHEMA,
    )
    return frame, float(lengths.max())
