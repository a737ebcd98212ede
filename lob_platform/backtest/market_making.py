"""Avellaneda–Stoikov market making: the paper's model, its parameters estimated from messages,
and a market maker replayed against a day's real message flow (pure numpy / polars, no Dagster).

**The model** (Avellaneda & Stoikov 2008, "High-frequency trading in a limit order book"). The
mid s follows a driftless random walk of volatility σ; a quote at distance δ from the mid is hit
by market orders at the Poisson intensity λ(δ) = A·exp(−k·δ); the dealer has exponential utility
of risk aversion γ and holds q units with T − t left. To first order in q the optimal quotes are
centred on the *reservation price* r = s − q·γ·σ²·(T − t), with the total spread
δ_a + δ_b = γ·σ²·(T − t) + (2/γ)·ln(1 + γ/k) (``reservation_price_and_spread``). The *symmetric*
benchmark quotes the same total spread centred on the mid.

**The paper's simulation** (``simulate_paper``): s0 = 100, T = 1, σ = 2, dt = 0.005 (200 steps),
A = 140, k = 1.5, one unit per fill. Each step the quotes are set from the current mid,
inventory and time left; the ask (bid) is hit with probability A·exp(−k·δ_a)·dt (clipped to
[0, 1]); then the mid moves ±σ√dt with probability ½ each (the paper's binomial step). Final PnL
is cash + q·S_T. For γ = 0.1 the paper reports mean PnL 62.94 (std 5.89) for the inventory
strategy against 67.21 (13.43) for the symmetric one, and a final inventory std of 2.80 vs 8.66.

**Parameters from messages** (``estimate_parameters``), pooled over the training days:

- σ is the sample standard deviation of the one-second changes of the mid, the mid sampled on a
  one-second clock from the day's first two-sided book (the mid of the last event at or before
  each tick; one-sided and crossed books keep the last two-sided mid). Units: price per √second.
- Market orders are the execution messages (``execute_visible`` and ``execute_hidden``);
  consecutive execution messages with the same time stamp and side are one market order sweeping
  the book. Its depth is δ = max |execution price − mid before its first message| (the mid of the
  previous event's book). λ(δ) is the number of market orders of depth ≥ δ per second of the
  days' message spans (first to last message), evaluated on a grid of ``INTENSITY_GRID_POINTS``
  quantiles of the observed depths (observed values, so discrete real depths are evaluated at
  their atoms) up to the depth that ``MIN_ORDERS_PER_GRID_POINT`` orders still reach, and
  log λ(δ) = log A − k·δ is fitted by ordinary least squares on that grid. A day with fewer than
  ``MIN_EXECUTIONS_PER_DAY`` execution messages is an error, as is a fit with k ≤ 0.

**The market maker on real messages** (``simulate_on_messages``, a loop over the events; and
``simulate_by_intervals``, an independent numpy formulation per requote interval that must give
identical results: a cross-check of the fill logic, not faster, since the requotes dominate).
Approximations, all of them deliberate:

- *Requotes.* Requote times are the day's first time stamp plus multiples of
  ``requote_interval_s``. The quotes of a requote are placed right after the last event at or
  before that time, with the book after that event (zero latency, never a later book); they
  stand for the events up to the next requote. A requote only happens where an event falls into a
  new interval (an interval without events would place the very same quotes).
- *Quotes.* r = mid + (inventory / quote_size)·(−γσ²τ) + skew_weight·(forecast_mid − mid), with
  inventory counted in quote-size lots (so γ does not depend on the lot size) and the forecast
  term only where a forecast is given and finite; the "symmetric" strategy drops the inventory
  term. τ = ``horizon_s`` is a *rolling* horizon: a constant look-ahead rather than the time to the
  session's end, which on intraday data would make γσ²(T − t) huge in the morning and vanish at
  the close. Bid = r − δ/2 rounded down to the tick, ask = r + δ/2 rounded up, then clamped so
  they never cross the touch (bid ≤ best ask − tick, ask ≥ best bid + tick). No quotes while the
  book at placement is not two-sided; no bid while inventory ≥ ``inventory_limit``, no ask while
  inventory ≤ −``inventory_limit``.
- *Queue.* A new quote's queue ahead is the visible size at its price on its side of the book at
  placement: 0 when it improves the touch or lies in a price gap of the visible book, infinite
  (only a trade-through can fill it) when it lies beyond the last visible level of a full book.
  Cancels and deletes are assumed to be behind us (conservative: they never advance the queue). A
  quote whose price is unchanged at a requote keeps its queue position.
- *Fills.* Only ``execute_visible`` messages fill us. A resting bid fills at the first later
  execution on the bid side whose price is below the bid (the flow traded through it), or once the
  executed size at exactly the bid's price since placement exceeds the queue ahead; asks
  mirror this. A fill is the whole quote size (even if the execution was smaller), at the quote's
  price, with ``fee_bps`` of the notional charged (negative: a rebate). A filled side is not
  quoted again until the next requote. Our orders have no market impact: the data's flow goes on
  as recorded.
- *PnL.* Equity after every event is cash + inventory × mid, the mid carried over one-sided and
  crossed books; the final PnL is the last event's equity (the inventory is not flattened).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.core.columns import EVENT_TYPES, Side, book_levels

NS_PER_S = 1_000_000_000
BPS = 1e-4
STRATEGIES = ("inventory", "symmetric")
EXECUTE_VISIBLE = EVENT_TYPES.index("execute_visible")
EXECUTE_HIDDEN = EVENT_TYPES.index("execute_hidden")
MIN_EXECUTIONS_PER_DAY = 20
MIN_ORDERS_PER_GRID_POINT = 10
INTENSITY_GRID_POINTS = 30
NO_EVENT_TYPE = -1  # event code of a row whose event type is null
EMPTY_LEVEL = np.iinfo(np.int64).min  # tick price of an empty book level
TICK_TOLERANCE = 1e-9  # a price within this many ticks of a tick counts as on it when rounding outward
PRICE_DECIMALS = 10  # quote prices are ticks × tick size rounded to this many decimals (100.01, not 100.01000000000001)


def reservation_price_and_spread(mid, inventory, time_left, gamma, sigma, k) -> tuple[np.ndarray, np.ndarray]:
    """Avellaneda–Stoikov reservation price r = s − q·γ·σ²·(T − t) and half of the optimal total
    spread δ = γ·σ²·(T − t) + (2/γ)·ln(1 + γ/k); every argument broadcasts."""
    mid, inventory, time_left = np.asarray(mid, float), np.asarray(inventory, float), np.asarray(time_left, float)
    inventory_risk = gamma * np.square(sigma) * time_left
    reservation = mid - inventory * inventory_risk
    half_spread = 0.5 * (inventory_risk + (2.0 / gamma) * np.log1p(gamma / np.asarray(k, float)))
    return reservation, half_spread


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def simulate_paper(strategy: str, gamma: float, paths: int = 1000, s0: float = 100.0, T: float = 1.0,
                   sigma: float = 2.0, dt: float = 0.005, k: float = 1.5, A: float = 140.0,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's simulation, vectorised over ``paths``: (final PnL, final inventory) per path."""
    _check_strategy(strategy)
    rng = np.random.default_rng(seed)
    mid = np.full(paths, s0)
    inventory = np.zeros(paths)
    cash = np.zeros(paths)
    for step in range(int(round(T / dt))):
        reservation, half_spread = reservation_price_and_spread(mid, inventory, T - step * dt, gamma, sigma, k)
        if strategy == "symmetric":
            reservation = mid
        ask, bid = reservation + half_spread, reservation - half_spread
        ask_hit = rng.random(paths) < np.clip(A * np.exp(-k * (ask - mid)) * dt, 0.0, 1.0)
        bid_hit = rng.random(paths) < np.clip(A * np.exp(-k * (mid - bid)) * dt, 0.0, 1.0)
        cash += ask * ask_hit - bid * bid_hit
        inventory += bid_hit.astype(float) - ask_hit
        mid += sigma * np.sqrt(dt) * np.where(rng.random(paths) < 0.5, 1.0, -1.0)
    return cash + inventory * mid, inventory


# ---- messages as arrays


@dataclass(frozen=True)
class MessageArrays:
    """One day's validated messages as numpy arrays (build it with ``message_arrays``).

    ``event_code`` is the index of the event type in ``EVENT_TYPES`` (``NO_EVENT_TYPE`` for null),
    ``side`` +1 for bid, −1 for ask, 0 for none. Book arrays are (events, levels), best level
    first, after each event: an empty level has a NaN price and size 0. ``two_sided`` marks books
    with both best prices and bid < ask; ``mid`` is their mid, carried forward over other books
    (NaN before the day's first two-sided book).
    """

    ts_ns: np.ndarray
    event_code: np.ndarray
    side: np.ndarray
    price: np.ndarray
    size: np.ndarray
    best_bid: np.ndarray
    best_ask: np.ndarray
    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    two_sided: np.ndarray
    mid: np.ndarray

    def __len__(self) -> int:
        return self.ts_ns.size


def message_arrays(frame: pl.DataFrame) -> MessageArrays:
    """The arrays of a validated message table in the unified schema (with at least one book level)."""
    levels = book_levels(frame.columns)
    if levels == 0:
        raise ValueError("the market maker needs the book after each event; this table has no book columns")
    ts_ns = frame.get_column("ts_ns").to_numpy().astype(np.int64)
    if np.any(np.diff(ts_ns) < 0):
        raise ValueError("messages must be in time order (ts_ns non-decreasing)")
    event_code = (frame.get_column("event_type").cast(pl.String)
                  .replace_strict({name: code for code, name in enumerate(EVENT_TYPES)}, default=NO_EVENT_TYPE,
                                  return_dtype=pl.Int8).to_numpy())
    side = (frame.get_column("side").cast(pl.String)
            .replace_strict({"bid": 1, "ask": -1}, default=0, return_dtype=pl.Int8))

    def book(name: str, empty: float) -> np.ndarray:
        columns = [frame.get_column(f"{name}_{level}").fill_null(empty).to_numpy() for level in range(1, levels + 1)]
        return np.column_stack(columns).astype(float)

    bid_prices, ask_prices = book("bid_price", np.nan), book("ask_price", np.nan)
    best_bid, best_ask = bid_prices[:, 0].copy(), ask_prices[:, 0].copy()
    with np.errstate(invalid="ignore"):
        two_sided = best_bid < best_ask  # False where either side is empty (NaN)
    return MessageArrays(
        ts_ns=ts_ns, event_code=event_code, side=side.to_numpy(),
        price=frame.get_column("price").fill_null(np.nan).to_numpy().astype(float),
        size=frame.get_column("size").fill_null(0.0).to_numpy().astype(float),
        best_bid=best_bid, best_ask=best_ask,
        bid_prices=bid_prices, bid_sizes=book("bid_size", 0.0), ask_prices=ask_prices, ask_sizes=book("ask_size", 0.0),
        two_sided=two_sided, mid=_carried_forward(np.where(two_sided, 0.5 * (best_bid + best_ask), np.nan), two_sided),
    )


def _carried_forward(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``values`` at the last valid row at or before each row (NaN before the first valid row)."""
    last_valid = np.maximum.accumulate(np.where(valid, np.arange(values.size), -1))
    return np.where(last_valid >= 0, values[np.maximum(last_valid, 0)], np.nan)


# ---- parameters


@dataclass(frozen=True)
class MarketMakingParameters:
    """σ (price per √second), A (market orders per second reaching depth 0) and k (per unit of
    price), with what they were estimated from (zeros for parameters set by hand)."""

    sigma: float
    A: float
    k: float
    days: int = 0
    seconds: float = 0.0  # the days' message spans, first to last message
    market_orders: int = 0  # grouped execution messages the intensity was fitted on
    mid_changes: int = 0  # one-second mid changes σ was computed from

    def __post_init__(self) -> None:
        if not (self.sigma >= 0 and self.A > 0 and self.k > 0):
            raise ValueError(f"market making parameters need sigma >= 0, A > 0 and k > 0; got {self}")


def estimate_parameters(days: list[MessageArrays]) -> MarketMakingParameters:
    """σ, A and k from training days' messages (the method is in the module docstring)."""
    if not days:
        raise ValueError("estimate_parameters needs at least one training day")
    mid_changes, depths, seconds = [], [], 0.0
    for day in days:
        executions = int(np.isin(day.event_code, (EXECUTE_VISIBLE, EXECUTE_HIDDEN)).sum())
        if executions < MIN_EXECUTIONS_PER_DAY:
            raise ValueError(f"training day {_day_label(day)} has {executions} execution messages; at least "
                             f"{MIN_EXECUTIONS_PER_DAY} per day are needed to fit the order-arrival intensity")
        mid_changes.append(_one_second_mid_changes(day))
        depths.append(_market_order_depths(day))
        seconds += float(day.ts_ns[-1] - day.ts_ns[0]) / NS_PER_S
    changes = np.concatenate(mid_changes)
    if changes.size < 2:
        raise ValueError(f"the training days span {changes.size} one-second mid changes; σ needs at least 2")
    all_depths = np.concatenate(depths)
    A, k = _fit_intensity(all_depths, seconds)
    return MarketMakingParameters(sigma=float(changes.std(ddof=1)), A=A, k=k, days=len(days), seconds=seconds,
                                  market_orders=all_depths.size, mid_changes=changes.size)


def _day_label(day: MessageArrays) -> str:
    return str(np.datetime64(int(day.ts_ns[0]), "ns"))[:10] if len(day) else "(empty)"


def _one_second_mid_changes(day: MessageArrays) -> np.ndarray:
    two_sided = np.flatnonzero(day.two_sided)
    if two_sided.size == 0:
        return np.empty(0)
    clock = np.arange(day.ts_ns[two_sided[0]], day.ts_ns[-1] + 1, NS_PER_S)
    return np.diff(day.mid[np.searchsorted(day.ts_ns, clock, side="right") - 1])


def _market_order_depths(day: MessageArrays) -> np.ndarray:
    """Depth from the previous event's mid of each market order (grouped execution messages)."""
    messages = np.flatnonzero(np.isin(day.event_code, (EXECUTE_VISIBLE, EXECUTE_HIDDEN)))
    messages = messages[messages > 0]
    if messages.size == 0:
        return np.empty(0)
    starts_order = np.ones(messages.size, bool)
    starts_order[1:] = ((np.diff(messages) != 1) | (np.diff(day.ts_ns[messages]) != 0)
                        | (np.diff(day.side[messages]) != 0))
    order_starts = np.flatnonzero(starts_order)
    mid_before = day.mid[messages[order_starts] - 1][np.cumsum(starts_order) - 1]
    depths = np.maximum.reduceat(np.abs(day.price[messages] - mid_before), order_starts)
    return depths[np.isfinite(depths)]


def _fit_intensity(depths: np.ndarray, seconds: float) -> tuple[float, float]:
    """(A, k) of the least-squares fit of log λ(δ) = log A − k·δ (see the module docstring)."""
    if depths.size <= MIN_ORDERS_PER_GRID_POINT or seconds <= 0:
        raise ValueError(f"{depths.size} market orders over {seconds:g} s are too few to fit the order-arrival "
                         f"intensity (more than {MIN_ORDERS_PER_GRID_POINT} are needed)")
    levels = np.linspace(0.0, 1.0 - MIN_ORDERS_PER_GRID_POINT / depths.size, INTENSITY_GRID_POINTS)
    grid = np.unique(np.quantile(depths, levels, method="inverted_cdf"))
    if grid.size < 2:
        raise ValueError(f"all {depths.size} market orders reached the same depth {grid[0]:g}; k cannot be fitted")
    reaching = depths.size - np.searchsorted(np.sort(depths), grid, side="left")
    slope, intercept = np.polyfit(grid, np.log(reaching / seconds), 1)
    if slope >= 0:
        raise ValueError(f"the order-arrival intensity does not decrease with depth (fitted k = {-slope:g})")
    return float(np.exp(intercept)), float(-slope)


# ---- the market maker on real messages


@dataclass(frozen=True)
class MarketMakerConfig:
    """The market maker's settings (their role in the quotes is in the module docstring)."""

    gamma: float = 0.1  # risk aversion, per (price unit × lot)
    quote_size: float = 100.0  # units per quote and per fill; inventory enters the quotes in these lots
    inventory_limit: float = 1000.0  # units: no new bid at inventory >= limit, no new ask at <= -limit
    requote_interval_s: float = 1.0
    horizon_s: float = 300.0  # the rolling T − t (see the module docstring)
    tick_size: float = 0.01  # the market-making asset sets the venue's tick
    fee_bps: float = 0.0  # of each fill's notional; negative is a rebate
    forecast_skew_weight: float = 1.0  # reservation += weight × (forecast mid − mid)

    def __post_init__(self) -> None:
        positive = ("gamma", "quote_size", "inventory_limit", "requote_interval_s", "tick_size")
        if not all(getattr(self, name) > 0 for name in positive) or not self.horizon_s >= 0:
            raise ValueError(f"MarketMakerConfig needs positive {', '.join(positive)} and horizon_s >= 0; got {self}")


@dataclass(frozen=True)
class MarketMakingResult:
    """Per event (after it): ``inventory``, ``cash`` and ``equity`` = cash + inventory × mid.
    ``fills``: ts_ns, event_index, side, price, size, inventory_after, queue_ahead_at_placement,
    mid_before. ``quotes``: one row per requote, placed after event ``event_index`` (at ``ts_ns``):
    the reservation price and per side the price (null where that side is not quoted), the queue
    ahead at the quote's placement (a kept quote's from when it was placed) and whether the quote
    was placed anew. ``metrics``: see ``simulate_on_messages``."""

    inventory: np.ndarray
    cash: np.ndarray
    equity: np.ndarray
    fills: pl.DataFrame
    quotes: pl.DataFrame
    metrics: dict[str, float]


@dataclass
class _RestingQuote:
    ticks: int
    queue_ahead: float  # at placement
    executed: float = 0.0  # at exactly this price since placement


@dataclass(frozen=True)
class _Replay:
    """What both simulators read: the day's prices in ticks, the fixed spread terms, and for every
    requote the event its quotes are placed after and that event's book (lists: read one by one)."""

    events: MessageArrays
    config: MarketMakerConfig
    price_ticks: np.ndarray
    lot_reservation_offset: float  # reservation − mid per lot of inventory
    half_spread: float
    requote_events: np.ndarray  # first event of each requote interval
    placed_after: np.ndarray  # per requote: the event before its interval
    two_sided: list[bool]
    mid: list[float]
    reservation_shift: list[float]  # the forecast skew (0 where none)
    best_ticks: dict[int, list[int]]  # side (+1 bid, −1 ask) -> best price in ticks
    level_ticks: dict[int, list[list[int]]]  # side -> per requote its levels' prices, EMPTY_LEVEL where empty
    level_sizes: dict[int, list[list[float]]]


def _replay(events: MessageArrays, params: MarketMakingParameters, config: MarketMakerConfig, strategy: str,
            forecast_mid: np.ndarray | None) -> _Replay:
    _check_strategy(strategy)
    if len(events) == 0:
        raise ValueError("the market maker needs at least one event")
    if forecast_mid is None:
        shift = np.zeros(len(events))
    else:
        forecast_mid = np.asarray(forecast_mid, float)
        if forecast_mid.shape != events.mid.shape:
            raise ValueError(f"forecast_mid has shape {forecast_mid.shape}, the events {events.mid.shape}")
        shift = np.nan_to_num(config.forecast_skew_weight * (forecast_mid - events.mid), nan=0.0)

    def ticks(prices: np.ndarray) -> np.ndarray:
        on_ticks = np.rint(np.nan_to_num(prices) / config.tick_size)
        return np.where(np.isnan(prices), EMPTY_LEVEL, on_ticks).astype(np.int64)

    offset, half_spread = reservation_price_and_spread(0.0, 1.0, config.horizon_s, config.gamma, params.sigma, params.k)
    interval_ns = max(1, round(config.requote_interval_s * NS_PER_S))
    interval = (events.ts_ns - events.ts_ns[0] + interval_ns - 1) // interval_ns
    requote_events = np.flatnonzero(np.diff(interval) != 0) + 1
    placed_after = requote_events - 1
    level_ticks = {1: ticks(events.bid_prices[placed_after]), -1: ticks(events.ask_prices[placed_after])}
    return _Replay(
        events=events, config=config, price_ticks=ticks(events.price),
        lot_reservation_offset=float(offset) if strategy == "inventory" else 0.0, half_spread=float(half_spread),
        requote_events=requote_events, placed_after=placed_after,
        two_sided=events.two_sided[placed_after].tolist(), mid=events.mid[placed_after].tolist(),
        reservation_shift=shift[placed_after].tolist(),
        best_ticks={side: levels[:, 0].tolist() for side, levels in level_ticks.items()},
        level_ticks={side: levels.tolist() for side, levels in level_ticks.items()},
        level_sizes={1: events.bid_sizes[placed_after].tolist(), -1: events.ask_sizes[placed_after].tolist()},
    )


def _price(ticks, tick_size: float):
    """Prices of tick counts (a number or an array), rounded to ``PRICE_DECIMALS``."""
    return np.round(ticks * tick_size, PRICE_DECIMALS)


def _cash_change(replay: _Replay, side: int, ticks: int) -> float:
    """Cash from a fill: a bid (side +1) buys, an ask sells; the fee on the notional either way."""
    notional = float(_price(ticks, replay.config.tick_size)) * replay.config.quote_size
    return -side * notional - replay.config.fee_bps * BPS * notional


# -- the quotes of one requote (both simulators)


def _queue_ahead(level_ticks: list[int], level_sizes: list[float], quote_ticks: int, side: int) -> float:
    """Visible size ahead of a new quote (``side`` +1 bid, −1 ask; levels best first)."""
    for ticks, size in zip(level_ticks, level_sizes):
        if ticks == EMPTY_LEVEL or side * ticks < side * quote_ticks:
            return 0.0  # improves the level (the touch or a gap), or the side's book ends above it
        if ticks == quote_ticks:
            return size
    return math.inf  # beyond the last level of a full book: unknown, only a trade-through fills it


def _placed(replay: _Replay, requote: int, old: _RestingQuote | None, ticks: int, side: int,
            allowed: bool) -> _RestingQuote | None:
    """The quote of one side after a requote: none, the old one kept (same price), or a new one."""
    if not allowed:
        return None
    if old is not None and old.ticks == ticks:
        return old
    queue = _queue_ahead(replay.level_ticks[side][requote], replay.level_sizes[side][requote], ticks, side)
    return _RestingQuote(ticks, queue)


def _quote_row(quote: _RestingQuote | None, old: _RestingQuote | None) -> tuple:
    """Ticks, quoted, queue ahead at placement, placed anew: one side of a requote's row."""
    if quote is None:
        return 0, False, math.nan, False
    return quote.ticks, True, quote.queue_ahead, quote is not old


def _requote(replay: _Replay, requote: int, inventory: float, bid: _RestingQuote | None,
             ask: _RestingQuote | None) -> tuple[_RestingQuote | None, _RestingQuote | None, tuple]:
    """The quotes of requote number ``requote`` and its row: reservation, then bid and ask sides."""
    config = replay.config
    if not replay.two_sided[requote]:
        return None, None, (math.nan, *_quote_row(None, None), *_quote_row(None, None))
    reservation = (replay.mid[requote] + inventory / config.quote_size * replay.lot_reservation_offset
                   + replay.reservation_shift[requote])
    bid_ticks = min(math.floor((reservation - replay.half_spread) / config.tick_size + TICK_TOLERANCE),
                    replay.best_ticks[-1][requote] - 1)
    ask_ticks = max(math.ceil((reservation + replay.half_spread) / config.tick_size - TICK_TOLERANCE),
                    replay.best_ticks[1][requote] + 1)
    new_bid = _placed(replay, requote, bid, bid_ticks, 1, inventory < config.inventory_limit)
    new_ask = _placed(replay, requote, ask, ask_ticks, -1, inventory > -config.inventory_limit)
    return new_bid, new_ask, (reservation, *_quote_row(new_bid, bid), *_quote_row(new_ask, ask))


def _first_fill(quote: _RestingQuote, side: int, exec_ticks: np.ndarray, exec_sizes: np.ndarray) -> int | None:
    """Position of the first of an interval's executions on the quote's side that fills it; None
    (and the quote's executed size brought up to date) if none does."""
    traded_through = side * exec_ticks < side * quote.ticks
    executed = np.where(exec_ticks == quote.ticks, exec_sizes, 0.0)
    executed[0] += quote.executed
    executed = np.cumsum(executed)
    fills = traded_through | (executed > quote.queue_ahead)
    if fills.any():
        return int(fills.argmax())
    quote.executed = float(executed[-1])
    return None


_QUOTE_COLUMNS = {"reservation": float, "bid_ticks": np.int64, "bid_quoted": bool, "bid_queue_ahead": float,
                  "bid_new": bool, "ask_ticks": np.int64, "ask_quoted": bool, "ask_queue_ahead": float, "ask_new": bool}


def simulate_by_intervals(events: MessageArrays, params: MarketMakingParameters, config: MarketMakerConfig,
                          strategy: str, forecast_mid: np.ndarray | None = None) -> MarketMakingResult:
    """``simulate_on_messages`` formulated per requote interval: each interval's executions on
    each side are found by ``searchsorted`` (for all intervals at once), the first filling one by
    numpy masks on that slice, and the per-event inventory and cash are cumulative sums of the
    fills. Equal, fill for fill, to ``simulate_on_messages`` (tested on random flow)."""
    replay = _replay(events, params, config, strategy, forecast_mid)
    n = len(events)
    is_execution = events.event_code == EXECUTE_VISIBLE
    interval_starts, interval_ends = replay.requote_events, np.append(replay.requote_events[1:], n)
    executions = {}  # side -> its executions' event indices, tick prices, sizes, and per interval their range
    for side in (1, -1):  # and the price furthest into the side's book (a quote beyond it cannot fill)
        index = np.flatnonzero(is_execution & (events.side == side))
        ticks = replay.price_ticks[index]
        first, last = np.searchsorted(index, interval_starts), np.searchsorted(index, interval_ends)
        furthest = np.zeros(first.size, np.int64)
        busy = last > first
        if busy.any():
            furthest[busy] = side * np.minimum.reduceat(side * ticks, first[busy])
        executions[side] = (index, ticks, events.size[index], first.tolist(), last.tolist(), furthest.tolist())

    inventory_change, cash_change = np.zeros(n), np.zeros(n)
    inventory, bid, ask = 0.0, None, None
    fills, rows = [], []
    for requote in range(interval_starts.size):
        bid, ask, row = _requote(replay, requote, inventory, bid, ask)
        rows.append(row)
        interval_fills = []
        for side, quote in ((1, bid), (-1, ask)):
            index, ticks, sizes, first, last, furthest = executions[side]
            lo, hi = first[requote], last[requote]
            if quote is None or lo == hi or side * furthest[requote] > side * quote.ticks:
                continue
            position = _first_fill(quote, side, ticks[lo:hi], sizes[lo:hi])
            if position is not None:
                interval_fills.append((int(index[lo + position]), side, quote.ticks, quote.queue_ahead))
        for event, side, ticks, queue in sorted(interval_fills):  # in event order, as the loop adds them
            inventory += side * config.quote_size
            inventory_change[event] = side * config.quote_size
            cash_change[event] = _cash_change(replay, side, ticks)
            fills.append((event, side, ticks, queue))
            if side == 1:
                bid = None
            else:
                ask = None
    return _result(replay, np.cumsum(inventory_change), np.cumsum(cash_change), fills, rows)


def simulate_on_messages(events: MessageArrays, params: MarketMakingParameters, config: MarketMakerConfig,
                         strategy: str, forecast_mid: np.ndarray | None = None) -> MarketMakingResult:
    """The Avellaneda–Stoikov (``strategy="inventory"``) or symmetric market maker replayed against
    a day's messages, one event at a time (model and approximations in the module docstring).
    ``forecast_mid``: a forecast of the mid per event (NaN where none) that skews the reservation
    price.

    Metrics: final_pnl, final_inventory, pnl_std_per_fill (std of the equity change from one fill
    to the next, the first from 0), bid_fills, ask_fills, quotes_placed (new quotes, kept ones not
    counted), fill_rate (fills / quotes_placed), spread_captured (mean over fills of ask price −
    mid before the fill and mid before − bid price), fees, mean_abs_inventory (per event),
    max_abs_inventory, time_weighted_inventory and time_weighted_abs_inventory (weighted by the
    time to the next event).
    """
    replay = _replay(events, params, config, strategy, forecast_mid)
    n = len(events)
    requotes_before = np.zeros(n, bool)
    requotes_before[replay.requote_events] = True
    event_code, event_side = events.event_code.tolist(), events.side.tolist()
    price_ticks, sizes = replay.price_ticks.tolist(), events.size.tolist()

    inventory_path, cash_path = np.empty(n), np.empty(n)
    inventory, cash, bid, ask = 0.0, 0.0, None, None
    fills, rows = [], []
    for event, requote in enumerate(requotes_before.tolist()):
        if requote:
            bid, ask, row = _requote(replay, len(rows), inventory, bid, ask)
            rows.append(row)
        side = event_side[event]
        quote = bid if side == 1 else ask if side == -1 else None
        if event_code[event] == EXECUTE_VISIBLE and quote is not None:
            filled = side * price_ticks[event] < side * quote.ticks  # traded through
            if price_ticks[event] == quote.ticks:
                quote.executed += sizes[event]
                filled = quote.executed > quote.queue_ahead
            if filled:
                inventory += side * config.quote_size
                cash += _cash_change(replay, side, quote.ticks)
                fills.append((event, side, quote.ticks, quote.queue_ahead))
                if side == 1:
                    bid = None
                else:
                    ask = None
        inventory_path[event] = inventory
        cash_path[event] = cash
    return _result(replay, inventory_path, cash_path, fills, rows)


def _result(replay: _Replay, inventory: np.ndarray, cash: np.ndarray, fills: list[tuple],
            rows: list[tuple]) -> MarketMakingResult:
    """The result from the per-event inventory and cash, the fills (event, side, ticks, queue
    ahead at placement) and the requotes' rows (``_QUOTE_COLUMNS``)."""
    events, config = replay.events, replay.config
    columns = zip(*rows) if rows else [()] * len(_QUOTE_COLUMNS)
    quotes = {name: np.array(column, dtype=dtype) for (name, dtype), column in zip(_QUOTE_COLUMNS.items(), columns)}
    equity = cash + np.where(inventory == 0, 0.0, inventory * events.mid)  # no mid yet means no position yet
    event_index = np.array([fill[0] for fill in fills], dtype=np.int64)
    side = np.array([fill[1] for fill in fills], dtype=np.int8)
    price = _price(np.array([fill[2] for fill in fills], dtype=np.int64), config.tick_size)
    mid_before = events.mid[event_index - 1]
    fills_table = pl.DataFrame({
        "ts_ns": events.ts_ns[event_index],
        "event_index": event_index,
        "side": pl.Series(np.where(side == 1, "bid", "ask"), dtype=pl.String).cast(Side),
        "price": price,
        "size": np.full(event_index.size, float(config.quote_size)),
        "inventory_after": inventory[event_index],
        "queue_ahead_at_placement": np.array([fill[3] for fill in fills], dtype=float),
        "mid_before": mid_before,
    })

    def nullable(values: np.ndarray) -> pl.Series:
        return pl.Series(np.asarray(values, float)).fill_nan(None)

    quote_columns = {"event_index": replay.placed_after, "ts_ns": events.ts_ns[replay.placed_after],
                     "reservation": nullable(quotes["reservation"])}
    for name in ("bid", "ask"):
        prices = np.where(quotes[f"{name}_quoted"], _price(quotes[f"{name}_ticks"], config.tick_size), np.nan)
        quote_columns |= {f"{name}_price": nullable(prices),
                          f"{name}_queue_ahead": nullable(quotes[f"{name}_queue_ahead"]),
                          f"{name}_new": quotes[f"{name}_new"]}
    quotes_table = pl.DataFrame(quote_columns)
    quotes_placed = int(quotes["bid_new"].sum() + quotes["ask_new"].sum())

    fill_equity_changes = np.diff(equity[event_index], prepend=0.0)
    held_s = np.diff(events.ts_ns) / NS_PER_S
    total_s = held_s.sum()
    metrics = {
        "final_pnl": float(equity[-1]),
        "final_inventory": float(inventory[-1]),
        "pnl_std_per_fill": float(fill_equity_changes.std(ddof=1)) if len(fills) >= 2 else math.nan,
        "bid_fills": int((side == 1).sum()),
        "ask_fills": int((side == -1).sum()),
        "quotes_placed": quotes_placed,
        "fill_rate": len(fills) / quotes_placed if quotes_placed else math.nan,
        "spread_captured": float(np.mean(side * (mid_before - price))) if fills else math.nan,
        "fees": float(config.fee_bps * BPS * np.sum(price) * config.quote_size),
        "mean_abs_inventory": float(np.abs(inventory).mean()),
        "max_abs_inventory": float(np.abs(inventory).max()),
        "time_weighted_inventory": float(inventory[:-1] @ held_s / total_s) if total_s > 0 else math.nan,
        "time_weighted_abs_inventory": float(np.abs(inventory[:-1]) @ held_s / total_s) if total_s > 0 else math.nan,
    }
    return MarketMakingResult(inventory=inventory, cash=cash, equity=equity, fills=fills_table, quotes=quotes_table,
                              metrics=metrics)
