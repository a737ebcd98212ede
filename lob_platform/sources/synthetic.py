"""Seeded, deterministic synthetic market: raw LOBSTER, MIC and crypto depth files with planted,
documented and tunable structure that later models should find.

Everything here is pure logic (numpy, polars, stdlib). ``generate_market(data_dir, config)`` writes
every raw file for every day and instrument and returns the sorted paths. Each (venue, instrument,
date) gets its own ``numpy.random.Generator`` from ``SeedSequence([seed, blake2b(venue|instrument|
date)])``, so a rerun with the same config rewrites byte-identical files, and one file does not depend
on which other instruments or days are generated. Every file is written to a temporary file in its
folder and moved into place with ``os.replace``.

Days: ``n_days`` calendar days from ``start_date``. LOBSTER and MIC trade on weekdays only (no file
on Saturday/Sunday); crypto trades every day.

Raw formats
-----------
LOBSTER, ``lobster/{TICKER}_{date}_34200000_57600000_{message|orderbook}_{L}.csv``, no header:
  message: time (seconds after New York midnight, 9 decimals, 09:30-16:00), type (1 submit,
  2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution), order id (0 for hidden),
  size, price (dollars x 10000), direction (1 resting bid, -1 resting ask). Orderbook row k is the
  book after message k: per level ask price, ask size, bid price, bid size; empty levels are
  9999999999 / -9999999999 with size 0. Tick $0.01. Hidden executions print at the mid (possibly a
  half tick) and leave the visible book unchanged. Several messages share a timestamp when one
  incoming order fills several resting orders. The session opens with L-1 occupied levels per side
  that are not in the message file (as in LOBSTER, the opening book is implied), so row 0 minus
  message 0 is the complete opening book.
MIC, ``mic/{date}__RTSX_FUT__{PRODUCT}.parquet``: tst (Int64 ns UTC, 07:00-15:45 UTC), event_code
  (Int8: 1 add, 0 cancel/delete incl. partial cancels, 2 trade), vol (Int64), prc (Float64, tick
  10.0), is_buy (Boolean, resting order is a bid), order_id (Int64). The opening book is logged as
  adds at exactly 07:00:00 UTC, so replaying the log from an empty book rebuilds every state.
An order-by-order crypto feed, venue ``crypto_orders`` declared in ``venues.toml`` (the generator
  adds its table there, leaving any other table alone), ``crypto_orders/{PRODUCT}_{YYYYMMDD}.csv.gz``
  in the layout of a live-orders capture: microtimestamp (us UTC, 24 h a day), event (created,
  changed, deleted), id, amount (coins, 4 decimals), price (tick 1.0), side (bid/ask of the resting
  order). No trades and no book: a fill shows as ``changed`` to the amount left, or as ``deleted``
  with amount 0 when nothing is left; a partial cancel as ``changed``; a cancel as ``deleted`` with
  the amount cancelled. The opening book is a burst of ``created`` at midnight, as real feeds
  deliver their snapshot.
Crypto, ``crypto/{exchange}_book_snapshot_5_{date}_{SYMBOL}.csv.gz``: tardis ``book_snapshot_5``
  layout (exchange, symbol, timestamp, local_timestamp, then per level i=0..4 asks[i].price,
  asks[i].amount, bids[i].price, bids[i].amount); timestamps in microseconds UTC, strictly
  increasing, exponential gaps with mean ``crypto_snapshot_interval_s``; local_timestamp adds a
  positive receive latency. Prices on the pair's tick in the venue registry (BTC and ETH 0.01, SOL 0.001,
  WLD 0.0001),
  written as exact decimals; gzip with mtime 0.

Planted structure
-----------------
1. Order-flow imbalance leads the next mid move (LOBSTER and MIC). The per-message OFI increment
   is Cont-Kukanov-Stoikov's best-level imbalance
       e_n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1
             - 1{Pa_n <= Pa_n-1} qa_n + 1{Pa_n >= Pa_n-1} qa_n-1
   (Pb/qb, Pa/qa best bid/ask price and size after message n) and OFI_k = e_k-49 + ... + e_k
   (K = 50 messages). Only "move" actions change the mid: depleting one side's best queue by
   executions (one message per resting order filled, all at one timestamp) or improving one side
   inside the spread; every other action (passive submissions, cancels that leave a best level
   non-empty, fills smaller than the best queue, hidden prints) cannot. A move goes up when
   OFI > 0 (down when < 0) with probability min(1, 0.5 + 1.2 * ofi_signal_strength / 2), a fair
   coin when OFI = 0. A persistent latent buy/sell pressure (flips with probability 1/200 per
   action) sends submissions at the best to the pressured side and fills smaller than the queue
   to the opposite side with probability 0.5 + ofi_signal_strength / 2, which keeps OFI's sign
   persistent. The gain 1.2 compensates for OFI drifting between moves; the result, measured at
   the last message of each timestamp k with OFI_k != 0 as P(sign(OFI_k) = direction of the first
   later mid change), is 0.5 + ofi_signal_strength / 2 (measured per ticker-day: 0.80 +- 0.015
   at the default 0.6, 0.64 at 0.3; above 0.83 the follow probability saturates at 1, e.g. 0.94
   at 1.0). Messages in the middle of a multi-fill sweep are excluded because they already
   show part of the move. With strength 0 each move direction is a fresh fair coin, independent
   of the past: hit rate 0.5.
2. Self-exciting arrivals. Action times (distinct message timestamps) are an exact Hawkes process
   with exponential kernel, intensity mu + hawkes_branching * hawkes_decay_per_s *
   sum exp(-hawkes_decay_per_s (t - t_i)), simulated by its cluster representation (each event
   spawns Poisson(branching) children after Exp(decay) delays). mu is set so that the expected
   number of messages per session is about ``*_events_per_day`` (one action emits 1.1 messages on
   average). Branching 0 gives Poisson arrivals; branching 0.6 gives 1-second counts whose
   variance/mean ratio is well above 1.
3. Crypto lead-lag. Per (pair, date) a latent log-price random walk x(t) on a 0.1 s grid
   (Gaussian increments, the pair's annual volatility). binance_perp's log mid is x(t); every
   other venue's log mid is w * x(t - lead_lag_s) + sqrt(1 - w^2) * y(t) with w =
   lead_lag_strength and y the venue's own independent random walk of the same volatility, so
   binance_perp's returns lead the other venues' returns by lead_lag_s. w = 0 makes the venues
   independent.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import random
import tempfile
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from lob_platform.core.columns import book_columns
from lob_platform.errors import ConfigError
from lob_platform.sources.crypto import CRYPTO_TICKS
from lob_platform.sources.lobster import PRICE_SCALE as LOBSTER_PRICE_SCALE
from lob_platform.sources.registry import VENUES_FILE, built_in_venues
from lob_platform.sources.venues import LOBSTER_TICK, MIC

OFI_WINDOW = 50
LOBSTER_EMPTY_ASK = 9_999_999_999
LOBSTER_EMPTY_BID = -9_999_999_999
LOBSTER_SESSION_S = (34_200, 57_600)
MIC_TICK = MIC.tick_size  # the registry's ticks: the market quotes on the grid the platform validates
LOBSTER_UNITS_PER_TICK = round(LOBSTER_TICK / LOBSTER_PRICE_SCALE)  # LOBSTER prices are 1e-4 dollars
MIC_BASE_PRICE = 110_000.0
MIC_SESSION_UTC_S = (7 * 3600, 15 * 3600 + 45 * 60)
MIC_SIMULATED_LEVELS = 10  # depth the MIC simulator keeps per side (the log has no book columns)
ORDER_FEED = "crypto_orders"  # the declared order-by-order venue's name
ORDER_FEED_TICK = 1.0
ORDER_FEED_LOT = 0.0001  # coins per simulated size unit
ORDER_FEED_BASE_PRICE = 65_000.0
ORDER_FEED_LEVELS = 10
ORDER_FEED_DECLARATION = f"""
[{ORDER_FEED}]  # the synthetic market's order-by-order crypto feed (lob_platform.sources.synthetic)
filename_template = "{{product}}_{{date}}.csv.gz"
date_format = "%Y%m%d"
time_unit = "us"
trading_days = "all"
tick_size = {ORDER_FEED_TICK}
book_levels = {ORDER_FEED_LEVELS}

[{ORDER_FEED}.column_mapping]
timestamp = "microtimestamp"
event_type = "event"
volume = "amount"
price = "price"
side = "side"
order_id = "id"

[{ORDER_FEED}.event_code_map]
created = "submit"
changed = "modify"
deleted = "delete"
"""
CRYPTO_LEVELS = 5
LEADER_VENUE = "binance_perp"

# Mean messages emitted per action (measured on the default config): converts the message target
# into a Hawkes action rate.
_MESSAGES_PER_ACTION = 1.1
_NO_LEVEL = -1  # price marker of an empty level inside the simulator's book views


@dataclass(frozen=True)
class _CryptoSpec:
    """Per-base-asset constants: price level, lot decimals, annual volatility; prices on the venue's tick."""

    base: str
    base_price: float
    amount_decimals: int
    annual_vol: float

    @property
    def price_decimals(self) -> int:
        return round(-math.log10(CRYPTO_TICKS[f"{self.base}USDT"]))


_CRYPTO_SPECS = {
    "BTC": _CryptoSpec("BTC", 60_000.0, 4, 0.6),
    "ETH": _CryptoSpec("ETH", 3_000.0, 3, 0.7),
    "SOL": _CryptoSpec("SOL", 150.0, 2, 0.9),
    "WLD": _CryptoSpec("WLD", 2.0, 1, 1.2),
}

@dataclass(frozen=True)
class MarketConfig:
    """What to generate and how strong each planted effect is (see the module docstring)."""

    seed: int = 7
    start_date: str = "2024-03-04"
    n_days: int = 3
    lobster_tickers: tuple[str, ...] = ("ACME", "BOLT")
    lobster_levels: int = 10
    lobster_events_per_day: int = 20_000
    mic_products: tuple[str, ...] = ("RIH4",)
    mic_events_per_day: int = 10_000
    order_feed_products: tuple[str, ...] = ("BTCUSD",)
    order_feed_events_per_day: int = 10_000
    crypto_exchanges: tuple[str, ...] = ("binance_spot", "binance_perp", "bybit_spot")
    crypto_pairs: tuple[str, ...] = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "WLD-USDT")
    crypto_snapshot_interval_s: float = 2.0
    crypto_hours_per_day: float = 24.0
    ofi_signal_strength: float = 0.6
    hawkes_branching: float = 0.6
    hawkes_decay_per_s: float = 2.0
    lead_lag_s: float = 10.0
    lead_lag_strength: float = 0.8

    def __post_init__(self) -> None:
        """Reject values the generator cannot honour, before any file is written."""
        checks = [
            (self.seed >= 0, "seed must be >= 0"),
            (self.n_days >= 1, "n_days must be >= 1"),
            (self.lobster_levels >= 1, "lobster_levels must be >= 1"),
            (min(self.lobster_events_per_day, self.mic_events_per_day, self.order_feed_events_per_day) >= 1,
             "events_per_day must be >= 1"),
            (self.crypto_snapshot_interval_s > 0, "crypto_snapshot_interval_s must be > 0"),
            (0 < self.crypto_hours_per_day <= 24, "crypto_hours_per_day must be in (0, 24]"),
            (0 <= self.ofi_signal_strength <= 1, "ofi_signal_strength must be in [0, 1]"),
            (0 <= self.hawkes_branching < 1, "hawkes_branching must be in [0, 1)"),
            (self.hawkes_decay_per_s > 0, "hawkes_decay_per_s must be > 0"),
            (self.lead_lag_s >= 0, "lead_lag_s must be >= 0"),
            (0 <= self.lead_lag_strength <= 1, "lead_lag_strength must be in [0, 1]"),
        ]
        problems = [message for ok, message in checks if not ok]
        unknown = [pair for pair in self.crypto_pairs if pair.split("-")[0] not in _CRYPTO_SPECS]
        if unknown:
            problems.append(f"unknown crypto pairs {unknown}; known bases are {sorted(_CRYPTO_SPECS)}")
        try:
            date.fromisoformat(self.start_date)
        except ValueError:
            problems.append(f"start_date {self.start_date!r} is not YYYY-MM-DD")
        if problems:
            raise ConfigError("MarketConfig: " + "; ".join(problems) + ".")

    @classmethod
    def no_signal(cls, **overrides) -> "MarketConfig":
        """The same market with every planted effect off: the null case for tests and baselines."""
        return cls(**{"ofi_signal_strength": 0.0, "hawkes_branching": 0.0, "lead_lag_strength": 0.0, **overrides})


def generate_market(data_dir: str | Path, config: MarketConfig = MarketConfig()) -> list[Path]:
    """Write every raw file for every day and instrument; return the written paths (sorted)."""
    root = Path(data_dir)
    written: list[Path] = []
    for day in _calendar_days(config):
        if day.weekday() < 5:
            for ticker in config.lobster_tickers:
                written += _write_lobster_day(root, ticker, day, config)
            for product in config.mic_products:
                written.append(_write_mic_day(root, product, day, config))
        for pair in config.crypto_pairs:
            written += _write_crypto_day(root, pair, day, config)
        for product in config.order_feed_products:
            written.append(_write_order_feed_day(root, product, day, config))
    if config.order_feed_products:
        written.append(_declare_order_feed(root))
    return sorted(written)


# --------------------------------------------------------------------------- shared helpers


def _calendar_days(config: MarketConfig) -> list[date]:
    """The n_days calendar days starting at start_date."""
    first = date.fromisoformat(config.start_date)
    return [first + timedelta(days=offset) for offset in range(config.n_days)]


def _utc_midnight_s(day: date) -> int:
    """Seconds since the Unix epoch at 00:00 UTC of ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def _venue_folder(root: Path, venue: str) -> Path:
    """Where the registry's built-in venue reads its files under the data root."""
    return next(v.folder for v in built_in_venues(root) if v.name == venue)


def _rng(seed: int, *key: str) -> np.random.Generator:
    """One generator per (venue, instrument, date): stable across processes, unlike ``hash()``."""
    digest = hashlib.blake2b("|".join(key).encode(), digest_size=8).digest()
    return np.random.default_rng(np.random.SeedSequence([seed, int.from_bytes(digest, "little")]))


def _stable_fraction(*key: str) -> float:
    """A fixed number in [0, 1) per key, for per-instrument constants such as base prices."""
    digest = hashlib.blake2b("|".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temp file in the same folder, then ``os.replace``: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _hawkes_times(rng: np.random.Generator, duration_s: float, expected_count: float, config: MarketConfig) -> np.ndarray:
    """Exact exponential-kernel Hawkes sample on [0, duration_s), sorted, starting from no history.

    Cluster representation: immigrants are Poisson(mu) and each event has Poisson(branching)
    children at Exp(decay) delays; mu = expected_count * (1 - branching) / duration_s.
    """
    branching, decay = config.hawkes_branching, config.hawkes_decay_per_s
    base_rate = expected_count * (1.0 - branching) / duration_s
    generation = rng.uniform(0.0, duration_s, rng.poisson(base_rate * duration_s))
    everything = [generation]
    while generation.size:
        parents = np.repeat(generation, rng.poisson(branching, generation.size))
        generation = parents + rng.exponential(1.0 / decay, parents.size)
        generation = generation[generation < duration_s]
        everything.append(generation)
    return np.sort(np.concatenate(everything))


# --------------------------------------------------------------------------- order-level simulator


@dataclass(frozen=True)
class _FlowSpec:
    """Venue-specific knobs of the shared order-flow simulator."""

    levels: int  # depth the venue publishes; the simulator keeps about this many levels per side
    hidden_weight: float  # relative rate of hidden executions (0 where the venue has none)
    sample_size: Callable[[random.Random], int]


@dataclass(frozen=True)
class _OrderFlow:
    """The simulator's output: one entry per message, plus the opening book."""

    action: np.ndarray  # index of the arrival (timestamp) that emitted the message
    kind: np.ndarray  # LOBSTER event type 1..5
    order_id: np.ndarray
    size: np.ndarray
    price_half_ticks: np.ndarray  # 2 x price in ticks: hidden executions may print at a half tick
    direction: np.ndarray  # 1 resting bid, -1 resting ask
    ask_view: np.ndarray | None  # (messages, 2L): price ticks / size per ask level after each message
    bid_view: np.ndarray | None
    opening: list[tuple[int, int, int, int]]  # (order_id, direction, price ticks, size)


# Action rates relative to one passive submission; cancellations scale with the number of live
# orders so the book size settles near 5 orders per published level and side.
_SUBMIT_WEIGHT = 1.0
_EXECUTE_WEIGHT = 0.22
_MOVE_WEIGHT = 0.2
_CANCEL_PER_ORDER_PER_LEVEL = 0.15
_SUBMIT_AT_BEST = 0.3
_PRESSURE_FLIP = 1 / 200  # per action: latent buy/sell pressure persists ~200 actions
# A move follows sign(OFI) with probability 0.5 + _FOLLOW_GAIN * strength / 2; the gain was
# calibrated so the hit rate measured at every timestamp is 0.5 + strength / 2 (module docstring).
_FOLLOW_GAIN = 1.2
_PARTIAL_CANCEL = 0.2
_REFILL_THINNER = 0.7
_IMPROVE_WHEN_SPREAD_2 = 0.75


class _OrderFlowSimulator:
    """An order-level book (price -> FIFO queue of [order_id, size]) driven one action at a time.

    Side index 0 is bids, 1 is asks; prices are integer ticks. Only ``_move`` may change the best
    prices, which is what lets the OFI signal (module docstring, item 1) be planted exactly.
    """

    def __init__(self, rnd: random.Random, spec: _FlowSpec, open_bid_tick: int, signal_strength: float, track_views: bool):
        self.rnd, self.spec, self.track_views = rnd, spec, track_views
        self.follow_ofi = min(1.0, 0.5 + _FOLLOW_GAIN * signal_strength / 2)
        self.tilt = 0.5 + signal_strength / 2
        self.pressure = 1
        self.cancel_rate = _CANCEL_PER_ORDER_PER_LEVEL / (spec.levels + 2)
        self.actions = (
            (_SUBMIT_WEIGHT, self._submit_passive),
            (_EXECUTE_WEIGHT, self._execute_inside_queue),
            (_MOVE_WEIGHT, self._move),
            (spec.hidden_weight, self._hidden_execution),
        )
        self.fixed_weight = sum(weight for weight, _ in self.actions)
        self.queues: tuple[dict[int, deque], dict[int, deque]] = ({}, {})
        self.depth: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.orders: dict[int, tuple[int, int, list[int]]] = {}  # id -> (side, price, [id, size])
        self.live: list[int] = []
        self.live_pos: dict[int, int] = {}
        self.best = [open_bid_tick, open_bid_tick + 1]
        self.next_id = 10_000_000 + int(rnd.random() * 1_000_000)
        self.views: list[tuple[int, ...]] = [(), ()]
        self.view_edge: list[int | None] = [None, None]
        self.dirty = [True, True]
        self.messages: list[list[int]] = [[] for _ in range(6)]
        self.view_log: tuple[list, list] = ([], [])
        self.action = 0
        self.opening = self._open_book()
        self.prev_top = self._top()
        self.ofi_window: deque[int] = deque(maxlen=OFI_WINDOW)
        self.ofi = 0

    def run(self, n_actions: int) -> _OrderFlow:
        """Play n_actions arrivals and return every message (and book views when tracked)."""
        for action in range(n_actions):
            self.action = action
            self._step()
        columns = [np.array(values, dtype=np.int64) for values in self.messages]
        views = [np.array(log, dtype=np.int64).reshape(len(log), -1) if self.track_views else None for log in self.view_log]
        return _OrderFlow(*columns, ask_view=views[1], bid_view=views[0], opening=self.opening)

    # ---- actions

    def _step(self) -> None:
        """Draw one action (rates from the class constants); fall back to a submission when it cannot apply."""
        rnd = self.rnd
        if rnd.random() < _PRESSURE_FLIP:
            self.pressure = -self.pressure
        draw = rnd.random() * (self.fixed_weight + self.cancel_rate * len(self.live))
        for weight, action in self.actions:
            if draw < weight:
                break
            draw -= weight
        else:
            action = self._cancel
        if not action():
            self._submit_passive()

    def _pressured_side(self, buy_side: int) -> int:
        """``buy_side`` (the side a buyer would use) with probability ``tilt`` under buy pressure, else the other."""
        favoured = buy_side if self.pressure > 0 else 1 - buy_side
        return favoured if self.rnd.random() < self.tilt else 1 - favoured

    def _thinner_side(self) -> int:
        """The side with fewer price levels with probability _REFILL_THINNER (a coin when equal): keeps both sides deep."""
        bids, asks = len(self.depth[0]), len(self.depth[1])
        if bids == asks:
            return 0 if self.rnd.random() < 0.5 else 1
        thinner = 0 if bids < asks else 1
        return thinner if self.rnd.random() < _REFILL_THINNER else 1 - thinner

    def _submit_passive(self) -> bool:
        """A new order that never moves the mid: at the best (pressure-tilted side), behind it, or,
        when a side shows fewer than L levels, just past its deepest level (refill)."""
        rnd = self.rnd
        if rnd.random() < _SUBMIT_AT_BEST:
            side = self._pressured_side(0)
            self._submit(side, self.best[side])
            return True
        side = self._thinner_side()
        depth, sign = self.depth[side], (-1 if side == 0 else 1)
        if len(depth) < self.spec.levels:
            deepest = min(depth) if side == 0 else max(depth)
            self._submit(side, deepest + sign * (1 + int(rnd.random() * 2)))
        else:
            self._submit(side, self.best[side] + sign * (1 + int(rnd.random() * self.spec.levels)))
        return True

    def _execute_inside_queue(self) -> bool:
        """A marketable order smaller than the best queue (pressure-tilted side): fills, but no price change."""
        side = self._pressured_side(1)
        queue_size = self.depth[side][self.best[side]]
        if queue_size < 2:
            return False
        self._fill(side, min(self.spec.sample_size(self.rnd), queue_size - 1))
        return True

    def _move(self) -> bool:
        """The only mid-changing action; its direction follows the sign of recent OFI (planted signal)."""
        rnd = self.rnd
        if self.ofi == 0:
            up = rnd.random() < 0.5
        else:
            up = (self.ofi > 0) == (rnd.random() < self.follow_ofi)
        bid, ask = self.best
        spread = ask - bid
        if spread >= 3 or (spread == 2 and rnd.random() < _IMPROVE_WHEN_SPREAD_2):
            if up:
                self._submit(0, bid + 1)
            else:
                self._submit(1, ask - 1)
            return True
        side = 1 if up else 0
        if len(self.depth[side]) < 2:  # depleting the only level would empty the side
            return False
        self._fill(side, self.depth[side][self.best[side]])
        return True

    def _hidden_execution(self) -> bool:
        """A fill against a hidden order at the mid: a print with no visible book change."""
        bid, ask = self.best
        direction = 1 if self.rnd.random() < 0.5 else -1
        self._emit(5, 0, self.spec.sample_size(self.rnd), bid + ask, direction)
        return True

    def _cancel(self) -> bool:
        """Cancel (fully or partly) a uniformly chosen live order, never emptying a best level."""
        rnd = self.rnd
        order_id = self.live[int(rnd.random() * len(self.live))]
        side, price, entry = self.orders[order_id]
        size = entry[1]
        sole_at_best = price == self.best[side] and len(self.queues[side][price]) == 1
        if sole_at_best or rnd.random() < _PARTIAL_CANCEL:
            if size < 2:
                return False
            amount, kind = 1 + int(rnd.random() * (size - 1)), 2
        else:
            amount, kind = size, 3
        self._reduce(side, price, entry, amount)
        self._emit(kind, order_id, amount, 2 * price, 1 - 2 * side)
        return True

    # ---- book mechanics

    def _open_book(self) -> list[tuple[int, int, int, int]]:
        """L-1 contiguous levels per side around a one-tick spread, 1-3 orders each."""
        opening = []
        for side in (0, 1):
            for level in range(max(self.spec.levels - 1, 1)):
                price = self.best[side] - level if side == 0 else self.best[side] + level
                for _ in range(1 + int(self.rnd.random() * 3)):
                    size = self.spec.sample_size(self.rnd)
                    opening.append((self._add(side, price, size), 1 - 2 * side, price, size))
        return opening

    def _submit(self, side: int, price: int) -> None:
        """Add a new limit order and log it."""
        size = self.spec.sample_size(self.rnd)
        order_id = self._add(side, price, size)
        self._emit(1, order_id, size, 2 * price, 1 - 2 * side)

    def _fill(self, side: int, amount: int) -> None:
        """Execute ``amount`` against the best queue of ``side`` in time priority, one message per order touched."""
        price = self.best[side]
        queue = self.queues[side][price]
        while amount > 0:
            entry = queue[0]
            order_id, take = entry[0], min(amount, entry[1])
            self._reduce(side, price, entry, take)
            self._emit(4, order_id, take, 2 * price, 1 - 2 * side)
            amount -= take

    def _add(self, side: int, price: int, size: int) -> int:
        """Insert an order at the back of its price queue; returns its new id."""
        order_id = self.next_id
        self.next_id += 1 + int(self.rnd.random() * 4)
        entry = [order_id, size]
        queue = self.queues[side].get(price)
        if queue is None:
            queue = self.queues[side][price] = deque()
        queue.append(entry)
        self.depth[side][price] = self.depth[side].get(price, 0) + size
        self.orders[order_id] = (side, price, entry)
        self.live_pos[order_id] = len(self.live)
        self.live.append(order_id)
        if (side == 0 and price > self.best[0]) or (side == 1 and price < self.best[1]):
            self.best[side] = price
        self._touch(side, price)
        return order_id

    def _reduce(self, side: int, price: int, entry: list[int], amount: int) -> None:
        """Take ``amount`` off an order; drop the order, and its level, when nothing is left."""
        entry[1] -= amount
        depth = self.depth[side]
        depth[price] -= amount
        if entry[1] == 0:
            queue = self.queues[side][price]
            queue.remove(entry)
            self._forget(entry[0])
            if not queue:
                del self.queues[side][price]
                del depth[price]
                if price == self.best[side]:
                    self.best[side] = max(depth) if side == 0 else min(depth)
        self._touch(side, price)

    def _forget(self, order_id: int) -> None:
        """Remove a finished order from the id index and the live list (swap-remove keeps it O(1))."""
        del self.orders[order_id]
        position = self.live_pos.pop(order_id)
        last = self.live.pop()
        if last != order_id:
            self.live[position] = last
            self.live_pos[last] = position

    # ---- logging

    def _top(self) -> tuple[int, int, int, int]:
        """Best bid price/size and best ask price/size, the inputs of the OFI increment."""
        bid, ask = self.best
        return bid, self.depth[0][bid], ask, self.depth[1][ask]

    def _emit(self, kind: int, order_id: int, size: int, price_half_ticks: int, direction: int) -> None:
        """Log a message (after its book change) and update the running 50-message OFI."""
        for column, value in zip(self.messages, (self.action, kind, order_id, size, price_half_ticks, direction)):
            column.append(value)
        bid, bid_size, ask, ask_size = top = self._top()
        old_bid, old_bid_size, old_ask, old_ask_size = self.prev_top
        increment = 0
        if bid >= old_bid:
            increment += bid_size
        if bid <= old_bid:
            increment -= old_bid_size
        if ask <= old_ask:
            increment -= ask_size
        if ask >= old_ask:
            increment += old_ask_size
        self.prev_top = top
        if len(self.ofi_window) == OFI_WINDOW:
            self.ofi -= self.ofi_window[0]
        self.ofi_window.append(increment)
        self.ofi += increment
        if self.track_views:
            self.view_log[0].append(self._view(0))
            self.view_log[1].append(self._view(1))

    def _touch(self, side: int, price: int) -> None:
        """Mark a side's published view stale when a change lands inside its top L levels."""
        edge = self.view_edge[side]
        if edge is None or (price >= edge if side == 0 else price <= edge):
            self.dirty[side] = True

    def _view(self, side: int) -> tuple[int, ...]:
        """Top L (price, size) pairs of a side, padded with empty levels; cached until touched."""
        if self.dirty[side]:
            depth, levels = self.depth[side], self.spec.levels
            prices = sorted(depth, reverse=side == 0)[:levels]
            flat: list[int] = []
            for price in prices:
                flat += (price, depth[price])
            flat += (_NO_LEVEL, 0) * (levels - len(prices))
            self.views[side] = tuple(flat)
            self.view_edge[side] = prices[-1] if len(prices) == levels else None
            self.dirty[side] = False
        return self.views[side]


def _lobster_size(rnd: random.Random) -> int:
    """Mostly round lots of 100-500 shares, sometimes an odd lot."""
    if rnd.random() < 0.85:
        return 100 * (1 + int(rnd.random() * 5))
    return 1 + int(rnd.random() * 99)


def _futures_size(rnd: random.Random) -> int:
    """Geometric-like contract counts with mean about 3."""
    return 1 + int(-math.log(1.0 - rnd.random()) * 2.5)


def _simulate_day(rng: np.random.Generator, spec: _FlowSpec, open_bid_tick: int, times: np.ndarray, config: MarketConfig, track_views: bool) -> _OrderFlow:
    """Run the order-flow simulator for one session; its stdlib RNG is seeded from the day's generator."""
    rnd = random.Random(int(rng.integers(2**63)))
    simulator = _OrderFlowSimulator(rnd, spec, open_bid_tick, config.ofi_signal_strength, track_views)
    return simulator.run(len(times))


def _session_times(rng: np.random.Generator, session_s: tuple[int, int], events_per_day: int, config: MarketConfig) -> np.ndarray:
    """Hawkes action times in integer ns after the session open."""
    duration = session_s[1] - session_s[0]
    times = _hawkes_times(rng, duration, events_per_day / _MESSAGES_PER_ACTION, config)
    return np.rint(times * 1e9).astype(np.int64)


# --------------------------------------------------------------------------- LOBSTER


def _write_lobster_day(root: Path, ticker: str, day: date, config: MarketConfig) -> list[Path]:
    """Simulate one ticker-day and write its message and orderbook CSVs."""
    rng = _rng(config.seed, "lobster", ticker, day.isoformat())
    levels = config.lobster_levels
    base_dollars = 50.0 + 150.0 * _stable_fraction("lobster-base-price", ticker)
    open_bid_tick = int(round(base_dollars * math.exp(rng.normal(0.0, 0.02)) / LOBSTER_TICK))
    times_ns = _session_times(rng, LOBSTER_SESSION_S, config.lobster_events_per_day, config)
    spec = _FlowSpec(levels=levels, hidden_weight=0.05, sample_size=_lobster_size)
    flow = _simulate_day(rng, spec, open_bid_tick, times_ns, config, track_views=True)

    stamp_ns = LOBSTER_SESSION_S[0] * 10**9 + times_ns[flow.action]
    messages = pl.DataFrame(
        {
            "seconds": stamp_ns // 10**9,
            "nanos": stamp_ns % 10**9,
            "kind": flow.kind,
            "order_id": flow.order_id,
            "size": flow.size,
            "price": flow.price_half_ticks * (LOBSTER_UNITS_PER_TICK // 2),
            "direction": flow.direction,
        }
    ).select(
        pl.format("{}.{}", "seconds", pl.col("nanos").cast(pl.String).str.zfill(9)).alias("time"),
        "kind", "order_id", "size", "price", "direction",
    )
    stem = f"{ticker}_{day.isoformat()}_{LOBSTER_SESSION_S[0] * 1000}_{LOBSTER_SESSION_S[1] * 1000}"
    folder = _venue_folder(root, "lobster")
    message_path = folder / f"{stem}_message_{levels}.csv"
    book_path = folder / f"{stem}_orderbook_{levels}.csv"
    _atomic_write(message_path, lambda temp: messages.write_csv(temp, include_header=False))
    book = _lobster_book_frame(flow, levels)
    _atomic_write(book_path, lambda temp: book.write_csv(temp, include_header=False))
    return [message_path, book_path]


def _lobster_book_frame(flow: _OrderFlow, levels: int) -> pl.DataFrame:
    """Interleave the simulator's side views into LOBSTER's ask/bid price/size columns."""
    table = np.empty((len(flow.kind), 4 * levels), dtype=np.int64)
    for offset, view, empty in ((0, flow.ask_view, LOBSTER_EMPTY_ASK), (2, flow.bid_view, LOBSTER_EMPTY_BID)):
        prices, sizes = view[:, 0::2], view[:, 1::2]
        table[:, offset::4] = np.where(prices == _NO_LEVEL, empty, prices * LOBSTER_UNITS_PER_TICK)
        table[:, offset + 1 :: 4] = sizes
    return pl.DataFrame(table, schema=[f"c{i}" for i in range(4 * levels)], orient="row")


# --------------------------------------------------------------------------- MIC


def _simulate_mic_day(product: str, day: date, config: MarketConfig, track_views: bool) -> tuple[_OrderFlow, np.ndarray]:
    """One futures session: the simulator's flow and its action times (ns after the open)."""
    rng = _rng(config.seed, "mic", product, day.isoformat())
    open_bid_tick = int(round(MIC_BASE_PRICE * math.exp(rng.normal(0.0, 0.01)) / MIC_TICK))
    times_ns = _session_times(rng, MIC_SESSION_UTC_S, config.mic_events_per_day, config)
    spec = _FlowSpec(levels=MIC_SIMULATED_LEVELS, hidden_weight=0.0, sample_size=_futures_size)
    return _simulate_day(rng, spec, open_bid_tick, times_ns, config, track_views), times_ns


def mic_simulated_book(product: str, day: date, config: MarketConfig = MarketConfig()) -> pl.DataFrame:
    """The simulator's own book after each message of the MIC log that ``generate_market`` writes
    for ``product`` on ``day`` (opening adds left out): what a book rebuilt from the log must be."""
    flow, _ = _simulate_mic_day(product, day, config, track_views=True)
    return _simulated_book(flow, MIC_SIMULATED_LEVELS, MIC_TICK, 1.0)


def _simulated_book(flow: _OrderFlow, levels: int, tick: float, size_unit: float) -> pl.DataFrame:
    """The simulator's views after each message in unified book columns (prices in currency
    units, sizes in ``size_unit``, empty levels null with size 0)."""
    columns = {}
    for level in range(levels):
        for side, view in (("ask", flow.ask_view), ("bid", flow.bid_view)):
            prices, sizes = view[:, 2 * level], view[:, 2 * level + 1]
            columns[f"{side}_price_{level + 1}"] = pl.Series(np.where(prices == _NO_LEVEL, np.nan, prices * tick)).fill_nan(None)
            columns[f"{side}_size_{level + 1}"] = pl.Series(sizes * size_unit)
    return pl.DataFrame(columns).select(book_columns(levels))


def _write_mic_day(root: Path, product: str, day: date, config: MarketConfig) -> Path:
    """Simulate one futures session and write its order log (opening book first, as adds at the open)."""
    flow, times_ns = _simulate_mic_day(product, day, config, track_views=False)
    open_ns = (_utc_midnight_s(day) + MIC_SESSION_UTC_S[0]) * 10**9
    opening = np.array(flow.opening, dtype=np.int64).reshape(-1, 4)
    event_code = np.select([flow.kind == 1, flow.kind == 4], [1, 2], default=0)
    frame = pl.DataFrame(
        {
            "tst": np.concatenate([np.full(len(opening), open_ns), open_ns + times_ns[flow.action]]),
            "event_code": np.concatenate([np.ones(len(opening), dtype=np.int64), event_code]),
            "vol": np.concatenate([opening[:, 3], flow.size]),
            "prc": np.concatenate([opening[:, 2] * MIC_TICK, flow.price_half_ticks * (MIC_TICK / 2)]),
            "is_buy": np.concatenate([opening[:, 1], flow.direction]) == 1,
            "order_id": np.concatenate([opening[:, 0], flow.order_id]),
        },
        schema={"tst": pl.Int64, "event_code": pl.Int8, "vol": pl.Int64, "prc": pl.Float64, "is_buy": pl.Boolean, "order_id": pl.Int64},
    )
    path = _venue_folder(root, "mic") / MIC.filename_template.format(product=product, date=day.strftime(MIC.date_format))
    return _atomic_write(path, lambda temp: frame.write_parquet(temp))


# --------------------------------------------------------------------------- order-by-order crypto feed


def _simulate_order_feed_day(product: str, day: date, config: MarketConfig, track_views: bool) -> tuple[_OrderFlow, np.ndarray]:
    rng = _rng(config.seed, ORDER_FEED, product, day.isoformat())
    open_bid_tick = int(round(ORDER_FEED_BASE_PRICE * math.exp(rng.normal(0.0, 0.01)) / ORDER_FEED_TICK))
    times_ns = _session_times(rng, (0, 86_400), config.order_feed_events_per_day, config)
    spec = _FlowSpec(levels=ORDER_FEED_LEVELS, hidden_weight=0.0, sample_size=_coin_lots)
    return _simulate_day(rng, spec, open_bid_tick, times_ns, config, track_views), times_ns


def order_feed_simulated_book(product: str, day: date, config: MarketConfig = MarketConfig()) -> pl.DataFrame:
    """The simulator's own book after each event of the order feed that ``generate_market``
    writes for ``product`` on ``day`` (the opening burst left out)."""
    flow, _ = _simulate_order_feed_day(product, day, config, track_views=True)
    return _simulated_book(flow, ORDER_FEED_LEVELS, ORDER_FEED_TICK, ORDER_FEED_LOT)


def _coin_lots(rnd: random.Random) -> int:
    """Order amounts in lots of ORDER_FEED_LOT coins: mostly small, now and then large."""
    return 1 + int(-math.log(1.0 - rnd.random()) * 500)


def _write_order_feed_day(root: Path, product: str, day: date, config: MarketConfig) -> Path:
    """Simulate one day and write it as created / changed / deleted events (module docstring)."""
    flow, times_ns = _simulate_order_feed_day(product, day, config, track_views=False)
    left = {order_id: size for order_id, _, _, size in flow.opening}
    events, amounts = [], []
    for kind, order_id, size in zip(flow.kind.tolist(), flow.order_id.tolist(), flow.size.tolist()):
        if kind == 1:
            left[order_id] = size
            events.append("created")
        elif kind == 3:
            del left[order_id]
            events.append("deleted")
        else:  # a partial cancel or a fill: what is left, or a delete with 0 when nothing is
            left[order_id] -= size
            size = left[order_id]
            events.append("changed" if size else "deleted")
            if not size:
                del left[order_id]
        amounts.append(size)
    opening = np.array(flow.opening, dtype=np.int64).reshape(-1, 4)
    midnight_us = _utc_midnight_s(day) * 10**6
    frame = pl.DataFrame({
        "microtimestamp": np.concatenate([np.full(len(opening), midnight_us), midnight_us + times_ns[flow.action] // 1000]),
        "event": ["created"] * len(opening) + events,
        "id": np.concatenate([opening[:, 0], flow.order_id]),
        "amount": _decimal_text(np.concatenate([opening[:, 3], np.array(amounts, dtype=np.int64)]), 4),
        "price": np.concatenate([opening[:, 2], flow.price_half_ticks // 2]) * ORDER_FEED_TICK,
        "side": np.where(np.concatenate([opening[:, 1], flow.direction]) == 1, "bid", "ask"),
    })
    path = root / ORDER_FEED / f"{product}_{day.strftime('%Y%m%d')}.csv.gz"
    payload = gzip.compress(frame.write_csv().encode(), mtime=0)
    return _atomic_write(path, lambda temp: temp.write_bytes(payload))


def _declare_order_feed(root: Path) -> Path:
    """Add the order feed's table to ``venues.toml`` unless the file declares it already."""
    path = root / VENUES_FILE
    text = path.read_text() if path.exists() else ""
    if f"[{ORDER_FEED}]" not in text:
        _atomic_write(path, lambda temp: temp.write_text(text + ORDER_FEED_DECLARATION))
    return path


# --------------------------------------------------------------------------- crypto


_LATENT_STEP_S = 0.1
_SECONDS_PER_YEAR = 365.0 * 86_400.0


@dataclass(frozen=True)
class _LatentPath:
    """A zero-based log-price random walk sampled every _LATENT_STEP_S from ``start_s`` (seconds after midnight)."""

    start_s: float
    values: np.ndarray

    def at(self, seconds: np.ndarray) -> np.ndarray:
        """Value at each time (last grid point at or before it)."""
        index = np.floor((seconds - self.start_s) / _LATENT_STEP_S).astype(np.int64)
        return self.values[np.clip(index, 0, len(self.values) - 1)]


def _random_walk(rng: np.random.Generator, start_s: float, end_s: float, annual_vol: float) -> _LatentPath:
    """Gaussian log-price walk with the given annualised volatility, zero at ``start_s``."""
    steps = int(math.ceil((end_s - start_s) / _LATENT_STEP_S)) + 1
    scale = annual_vol * math.sqrt(_LATENT_STEP_S / _SECONDS_PER_YEAR)
    values = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, scale, steps - 1))])
    return _LatentPath(start_s, values)


def _write_crypto_day(root: Path, pair: str, day: date, config: MarketConfig) -> list[Path]:
    """One pair-day on every venue: a shared latent path that the leader shows now and followers later."""
    spec = _CRYPTO_SPECS[pair.split("-")[0]]
    end_s = config.crypto_hours_per_day * 3600.0
    latent_rng = _rng(config.seed, "crypto-latent", pair, day.isoformat())
    log_open = math.log(spec.base_price) + latent_rng.normal(0.0, 0.02)
    leader = _random_walk(latent_rng, -config.lead_lag_s - 1.0, end_s, spec.annual_vol)
    written = []
    for exchange in config.crypto_exchanges:
        rng = _rng(config.seed, "crypto", exchange, pair, day.isoformat())
        stamps_us = _snapshot_times_us(rng, end_s, config.crypto_snapshot_interval_s)
        seconds = stamps_us / 1e6
        if exchange == LEADER_VENUE:
            log_mid = log_open + leader.at(seconds)
        else:
            own = _random_walk(rng, 0.0, end_s, spec.annual_vol)
            weight = config.lead_lag_strength
            log_mid = log_open + weight * leader.at(seconds - config.lead_lag_s) + math.sqrt(1 - weight**2) * own.at(seconds)
        frame = _snapshot_frame(rng, exchange, pair, spec, day, stamps_us, np.exp(log_mid))
        path = _venue_folder(root, "crypto") / f"{exchange}_book_snapshot_{CRYPTO_LEVELS}_{day.isoformat()}_{pair.replace('-', '')}.csv.gz"
        payload = gzip.compress(frame.write_csv().encode(), compresslevel=3, mtime=0)
        written.append(_atomic_write(path, lambda temp: temp.write_bytes(payload)))
    return written


def _snapshot_times_us(rng: np.random.Generator, end_s: float, mean_interval_s: float) -> np.ndarray:
    """Strictly increasing microsecond offsets from midnight with exponential gaps."""
    expected = int(end_s / mean_interval_s)
    gaps = np.maximum(np.rint(rng.exponential(mean_interval_s * 1e6, expected + 10 * int(math.sqrt(expected)) + 10)), 1)
    stamps = np.cumsum(gaps).astype(np.int64)
    return stamps[stamps < int(end_s * 1e6)]


def _snapshot_frame(rng: np.random.Generator, exchange: str, pair: str, spec: _CryptoSpec, day: date, stamps_us: np.ndarray, mid: np.ndarray) -> pl.DataFrame:
    """Five levels per side around each mid: 1-3 tick spread, 1-3 tick gaps, lognormal amounts."""
    n = len(stamps_us)
    tick = 10.0**-spec.price_decimals
    spread = rng.choice([1, 2, 3], size=n, p=[0.6, 0.3, 0.1])
    best_bid = np.floor(mid / tick - spread / 2).astype(np.int64)
    gaps = rng.choice([1, 2, 3], size=(2, n, CRYPTO_LEVELS - 1), p=[0.7, 0.2, 0.1])
    asks = (best_bid + spread)[:, None] + np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(gaps[0], axis=1)], axis=1)
    bids = best_bid[:, None] - np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(gaps[1], axis=1)], axis=1)
    notional_lots = 2_000.0 / mid * 10.0**spec.amount_decimals  # about $2k a level
    amounts = np.maximum(np.rint(notional_lots[None, :, None] * rng.lognormal(0.0, 1.0, (2, n, CRYPTO_LEVELS))), 1).astype(np.int64)
    timestamp = _utc_midnight_s(day) * 10**6 + stamps_us
    columns: dict[str, object] = {
        "exchange": pl.repeat(exchange, n, eager=True),
        "symbol": pl.repeat(pair.replace("-", ""), n, eager=True),
        "timestamp": timestamp,
        "local_timestamp": timestamp + 500 + np.rint(rng.exponential(2_000.0, n)).astype(np.int64),
    }
    for level in range(CRYPTO_LEVELS):
        columns[f"asks[{level}].price"] = _decimal_text(asks[:, level], spec.price_decimals)
        columns[f"asks[{level}].amount"] = _decimal_text(amounts[0, :, level], spec.amount_decimals)
        columns[f"bids[{level}].price"] = _decimal_text(bids[:, level], spec.price_decimals)
        columns[f"bids[{level}].amount"] = _decimal_text(amounts[1, :, level], spec.amount_decimals)
    return pl.DataFrame(columns)


def _decimal_text(units: np.ndarray, decimals: int) -> pl.Series:
    """Exact decimal text of positive integer multiples of 10**-decimals (no float noise)."""
    units = pl.Series(units)
    scale = 10**decimals
    whole, fraction = (units // scale).cast(pl.String), (units % scale).cast(pl.String).str.zfill(decimals)
    return whole + "." + fraction
