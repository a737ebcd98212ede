"""The Avellaneda–Stoikov market maker: quote formulas, the paper's known answer, parameter
estimation on synthetic flow with known parameters, fills on hand-made message flows, and the
simulator against its independent per-interval formulation."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from lob_platform.backtest.market_making import (
    MarketMakerConfig,
    MarketMakingParameters,
    estimate_parameters,
    message_arrays,
    reservation_price_and_spread,
    simulate_by_intervals,
    simulate_on_messages,
    simulate_paper,
)
from lob_platform.core.columns import book_columns
from lob_platform.core.tables import MESSAGES

DAY_START_NS = 1_709_562_600_000_000_000  # 2024-03-04 14:30 UTC
TICK = 0.01
IMPACT = 0.05  # of a synthetic market order on the book right after it
# σ = 0 and k large: the total spread is 0.002, so the quotes sit at the touch of a book one tick
# wide (bid 100.00 / ask 100.02 -> mid 100.01 -> bid 100.00, ask 100.02) or inside a wider one.
TIGHT = MarketMakingParameters(sigma=0.0, A=1.0, k=1000.0)
CONFIG = MarketMakerConfig(gamma=0.1, quote_size=100.0, inventory_limit=1000.0, requote_interval_s=1.0,
                           horizon_s=300.0, tick_size=TICK)
BOOK = [100.02, 500.0, 100.00, 300.0]  # ask, ask size, bid, bid size


def frame(rows: list[tuple], levels: int = 1) -> pl.DataFrame:
    """Messages from (seconds, event type, size, price, side, book after: ask price, ask size,
    bid price, bid size per level)."""
    names = ["ts_ns", "event_type", "order_id", "size", "price", "side", *book_columns(levels), "source_row"]
    data = [(DAY_START_NS + round(seconds * 1e9), event, 0, size, price, side, *book, row)
            for row, (seconds, event, size, price, side, *book) in enumerate(rows, start=1)]
    return pl.DataFrame(data, schema=names, orient="row").cast(MESSAGES.dtypes(levels))


def run(rows: list[tuple], levels: int = 1, config: MarketMakerConfig = CONFIG, forecast_mid=None):
    events = message_arrays(frame(rows, levels))
    result = simulate_on_messages(events, TIGHT, config, "symmetric", forecast_mid)
    reference = simulate_by_intervals(events, TIGHT, config, "symmetric", forecast_mid)
    assert result.fills.equals(reference.fills) and result.quotes.equals(reference.quotes)
    return result


# ---- quote formulas and the paper


def test_reservation_price_and_spread_match_hand_computed_values():
    # γσ²(T−t) = 0.1 · 4 · 0.5 = 0.2; r = 100 − 2 · 0.2; δ = 0.2 + 20 ln(16/15) = 1.490770422
    reservation, half_spread = reservation_price_and_spread(100.0, 2.0, 0.5, gamma=0.1, sigma=2.0, k=1.5)
    assert reservation == pytest.approx(99.6)
    assert half_spread == pytest.approx(1.490770422 / 2)
    reservation, half_spread = reservation_price_and_spread(100.0, np.array([-1.0, 0.0, 1.0]), np.array([[1.0], [0.0]]),
                                                            gamma=0.1, sigma=2.0, k=1.5)
    np.testing.assert_allclose(reservation, [[100.4, 100.0, 99.6], [100.0, 100.0, 100.0]])
    np.testing.assert_allclose(half_spread, [[(0.4 + 1.290770422) / 2], [1.290770422 / 2]])  # the paper's spread: 1.29


def test_paper_known_answer_inventory_strategy_gives_up_a_little_profit_for_half_the_risk():
    inventory_pnl, inventory_q = simulate_paper("inventory", gamma=0.1)
    symmetric_pnl, symmetric_q = simulate_paper("symmetric", gamma=0.1)
    assert inventory_pnl.shape == (1000,)
    assert inventory_pnl.mean() == pytest.approx(62.94, rel=0.10)  # paper: 62.94 (std 5.89)
    assert symmetric_pnl.mean() == pytest.approx(67.21, rel=0.10)  # paper: 67.21 (std 13.43)
    assert inventory_pnl.mean() < symmetric_pnl.mean()
    assert 0.35 < inventory_pnl.std() / symmetric_pnl.std() < 0.6
    assert 2.0 < inventory_q.std() < 3.6 and 7.0 < symmetric_q.std() < 10.0  # paper: 2.80 vs 8.66


# ---- parameter estimation


def synthetic_day(rng, day: int, seconds: float, sigma: float, A: float, k: float) -> pl.DataFrame:
    """A mid random walk of volatility ``sigma`` updated every 0.1 s (one-level book 0.01 wide
    around it), and market orders arriving at rate A whose depth from the mid is exponential with
    rate k: λ(δ) = A·exp(−kδ). Each order moves the book after it by ``IMPACT`` (so only the mid
    *before* an execution gives its depth) until a submit 1 µs later restores it."""
    book_s = np.arange(0.0, seconds, 0.1)
    mid = 100.0 + np.concatenate([[0.0], np.cumsum(rng.normal(0.0, sigma * math.sqrt(0.1), book_s.size - 1))])
    order_s = np.sort(rng.uniform(0.0, seconds, rng.poisson(A * seconds)))
    order_mid = mid[np.searchsorted(book_s, order_s, side="right") - 1]
    order_side = rng.choice(["bid", "ask"], order_s.size)
    towards = np.where(order_side == "bid", -1.0, 1.0)  # a sell hitting bids trades below the mid
    order_price = order_mid + towards * rng.exponential(1.0 / k, order_s.size)
    seconds_all = np.concatenate([book_s, order_s, order_s + 1e-6])
    order = np.argsort(seconds_all, kind="stable")
    mid_after = np.concatenate([mid, order_mid + towards * IMPACT, order_mid])[order]
    submits = np.full(book_s.size + order_s.size, "bid")
    n = seconds_all.size
    return pl.DataFrame({
        "ts_ns": (DAY_START_NS + day * 86_400 * 10**9 + np.round(seconds_all[order] * 1e9)).astype(np.int64),
        "event_type": np.concatenate([np.full(book_s.size, "submit"), np.full(order_s.size, "execute_visible"),
                                      np.full(order_s.size, "submit")])[order],
        "order_id": np.zeros(n, np.int64),
        "size": np.full(n, 100.0),
        "price": np.concatenate([mid - 0.005, order_price, order_mid - 0.005])[order],
        "side": np.concatenate([submits[:book_s.size], order_side, submits[book_s.size:]])[order],
        "ask_price_1": mid_after + 0.005, "ask_size_1": np.full(n, 100.0),
        "bid_price_1": mid_after - 0.005, "bid_size_1": np.full(n, 100.0),
        "source_row": np.arange(1, n + 1),
    }).cast(MESSAGES.dtypes(1))


def test_estimation_recovers_sigma_a_and_k_of_synthetic_flow():
    rng = np.random.default_rng(7)
    days = [message_arrays(synthetic_day(rng, day, 3600.0, sigma=0.02, A=2.0, k=50.0)) for day in range(2)]
    params = estimate_parameters(days)
    assert params.days == 2 and params.seconds == pytest.approx(7200.0, rel=1e-3)
    assert params.market_orders == pytest.approx(2.0 * 7200, rel=0.05)
    assert params.sigma == pytest.approx(0.02, rel=0.04)
    assert params.A == pytest.approx(2.0, rel=0.1)
    assert params.k == pytest.approx(50.0, rel=0.1)


def test_estimation_counts_a_sweep_of_the_book_as_one_market_order():
    book = [100.02, 500.0, 100.00, 300.0, 100.03, 100.0, 99.99, 200.0]
    rows = [(0.1 * i, "submit", 100.0, 100.0, "bid", *book) for i in range(100)]
    for second in range(10, 40):  # 30 orders: the even ones sweep two levels (two messages, same time)
        rows.append((second, "execute_visible", 300.0, 100.00, "bid", *book))
        if second % 2 == 0:
            rows.append((second, "execute_visible", 100.0, 99.99, "bid", *book))
    rows += [(41.0 + 0.1 * i, "submit", 100.0, 100.0, "bid", *book) for i in range(20)]
    params = estimate_parameters([message_arrays(frame(rows, levels=2))])
    assert (params.market_orders, params.seconds) == (30, pytest.approx(42.9))
    # λ(δ) on the two depths 0.01 (all 30 orders) and 0.02 (the 15 sweeps): k = ln 2 / 0.01
    assert params.k == pytest.approx(math.log(2) / 0.01)
    assert params.A == pytest.approx(30 / 42.9 * 2)


def test_estimation_refuses_a_day_with_too_few_executions():
    rows = [(0.1 * i, "submit", 100.0, 100.0, "bid", *BOOK) for i in range(50)]
    rows += [(5.0 + i, "execute_visible", 100.0, 100.0, "bid", *BOOK) for i in range(5)]
    with pytest.raises(ValueError, match="2024-03-04 has 5 execution messages"):
        estimate_parameters([message_arrays(frame(rows))])


# ---- fills on hand-made flows


def test_queue_ahead_at_the_touch_must_be_traded_through_before_the_quote_fills():
    first = [(0.0, "submit", 300.0, 100.00, "bid", *BOOK),
             (0.5, "execute_visible", 200.0, 100.00, "bid", 100.02, 500.0, 100.00, 100.0),
             (0.6, "submit", 200.0, 100.00, "bid", 100.02, 500.0, 100.00, 300.0)]  # behind us
    not_yet = run(first + [(0.7, "execute_visible", 100.0, 100.00, "bid", 100.02, 500.0, 100.00, 200.0)])
    assert not_yet.fills.height == 0  # 300 executed: the queue ahead is gone, we are not hit yet
    filled = run(first + [(0.7, "execute_visible", 200.0, 100.00, "bid", 100.02, 500.0, 100.00, 100.0)])
    fill = filled.fills.row(0, named=True)
    assert filled.fills.height == 1
    assert (fill["event_index"], fill["side"], fill["price"]) == (3, "bid", 100.00)
    assert fill["queue_ahead_at_placement"] == 300.0
    assert fill["inventory_after"] == 100.0
    np.testing.assert_array_equal(filled.inventory, [0.0, 0.0, 0.0, 100.0])
    np.testing.assert_allclose(filled.cash, [0.0, 0.0, 0.0, -10_000.0])
    assert filled.equity[-1] == pytest.approx(-10_000.0 + 100 * 100.01)


def test_an_execution_through_the_quote_fills_it_at_the_quote_price():
    book = [100.02, 500.0, 100.00, 300.0, 100.03, 100.0, 99.99, 200.0]
    result = run([(0.0, "submit", 300.0, 100.00, "bid", *book),
                  (0.5, "execute_visible", 100.0, 99.99, "bid", *book)], levels=2)
    assert result.fills.select("event_index", "price", "queue_ahead_at_placement").rows() == [(1, 100.00, 300.0)]


def test_a_quote_improving_the_touch_has_no_queue():
    wide = [100.04, 500.0, 100.00, 300.0]  # mid 100.02: we quote 100.01 / 100.03
    result = run([(0.0, "submit", 300.0, 100.00, "bid", *wide),
                  (0.5, "execute_visible", 100.0, 100.03, "ask", *wide),  # at our ask, nobody ahead
                  (0.7, "execute_visible", 100.0, 100.00, "bid", *wide)])
    assert result.quotes.select("bid_price", "bid_queue_ahead", "ask_price", "ask_queue_ahead").row(0) == (
        100.01, 0.0, 100.03, 0.0)
    assert result.fills.select("event_index", "side", "price").rows() == [(1, "ask", 100.03), (2, "bid", 100.01)]


def test_a_quote_beyond_the_visible_book_fills_only_when_traded_through():
    down = np.array([99.99] * 3)  # reservation 99.99: bid 99.98, below the only visible bid level
    rows = [(0.0, "submit", 300.0, 100.00, "bid", *BOOK),
            (0.5, "execute_visible", 5000.0, 99.98, "bid", *BOOK),  # its queue is unknown: never enough
            (0.7, "execute_visible", 100.0, 99.97, "bid", *BOOK)]
    hidden_depth = run(rows, forecast_mid=down)
    assert hidden_depth.quotes.select("bid_price", "bid_queue_ahead").row(0) == (99.98, math.inf)
    assert hidden_depth.fills.select("event_index", "price").rows() == [(2, 99.98)]
    # with a second level shown empty the whole bid side is visible: nobody is at 99.98
    two_levels = [(*row, None, 0.0, None, 0.0) for row in rows]
    visible = run(two_levels, levels=2, forecast_mid=down)
    assert visible.quotes.select("bid_price", "bid_queue_ahead").row(0) == (99.98, 0.0)
    assert visible.fills.select("event_index", "price").rows() == [(1, 99.98)]


def test_an_unchanged_quote_keeps_its_queue_position():
    result = run([(0.0, "submit", 300.0, 100.00, "bid", *BOOK),
                  (0.5, "execute_visible", 200.0, 100.00, "bid", 100.02, 500.0, 100.00, 100.0),
                  (0.8, "submit", 500.0, 100.00, "bid", 100.02, 500.0, 100.00, 600.0),
                  (1.2, "submit", 100.0, 100.05, "ask", 100.02, 500.0, 100.00, 600.0),
                  (1.5, "execute_visible", 150.0, 100.00, "bid", 100.02, 500.0, 100.00, 450.0)])
    # the requote after t = 0.8 keeps the bid placed behind 300 (100 of them left): 150 more fill
    # it, where a bid placed anew there would queue behind 600
    assert result.quotes.select("event_index", "bid_price", "bid_queue_ahead", "bid_new").rows() == [
        (0, 100.00, 300.0, True), (2, 100.00, 300.0, False)]
    assert result.fills.select("event_index", "queue_ahead_at_placement").rows() == [(4, 300.0)]


def test_no_fill_uses_an_execution_before_the_quote_was_placed():
    result = run([(0.0, "submit", 700.0, 100.00, "bid", 100.02, 500.0, 100.00, 700.0),
                  (0.0, "execute_visible", 400.0, 100.00, "bid", *BOOK),  # same time stamp: before placement
                  (0.0, "execute_visible", 100.0, 99.99, "bid", *BOOK),
                  (0.5, "execute_visible", 200.0, 100.00, "bid", 100.02, 500.0, 100.00, 100.0)])
    assert result.quotes["event_index"].to_list() == [2]  # placed after the last event at the first requote time
    assert result.fills.height == 0


def test_the_inventory_limit_stops_quoting_that_side():
    config = MarketMakerConfig(gamma=0.1, quote_size=100.0, inventory_limit=100.0, tick_size=TICK)
    result = run([(0.0, "submit", 300.0, 100.00, "bid", *BOOK),
                  (0.5, "execute_visible", 100.0, 99.99, "bid", *BOOK),  # fills our bid: inventory 100
                  (1.5, "execute_visible", 100.0, 99.99, "bid", *BOOK),  # no bid any more
                  (2.5, "execute_visible", 100.0, 100.03, "ask", *BOOK)], config=config)
    assert result.fills.select("event_index", "side", "inventory_after").rows() == [(1, "bid", 100.0), (3, "ask", 0.0)]
    assert result.quotes.select("bid_price", "bid_queue_ahead", "ask_price").rows() == [
        (100.00, 300.0, 100.02), (None, None, 100.02), (None, None, 100.02)]


def test_the_inventory_strategy_leans_its_quotes_against_its_inventory():
    params = MarketMakingParameters(sigma=math.sqrt(0.01 / 30), A=1.0, k=1000.0)  # γσ²τ = 0.01: a tick per lot
    events = message_arrays(frame([(0.0, "submit", 300.0, 100.00, "bid", *BOOK),
                                   (0.5, "execute_visible", 100.0, 99.99, "bid", *BOOK),  # we buy a lot
                                   (1.5, "submit", 100.0, 100.05, "ask", *BOOK)]))
    leaning = simulate_on_messages(events, params, CONFIG, "inventory")
    assert leaning.quotes.select("reservation", "bid_price", "ask_price").rows() == [
        (pytest.approx(100.01), 100.00, 100.02), (pytest.approx(100.00), 99.99, 100.01)]
    symmetric = simulate_on_messages(events, params, CONFIG, "symmetric")
    assert symmetric.quotes.select("bid_price", "ask_price").rows() == [(100.00, 100.02), (100.00, 100.02)]


def test_quotes_never_cross_the_touch_however_far_the_forecast_pulls_them():
    rows = [(0.0, "submit", 300.0, 100.00, "bid", *BOOK), (0.5, "submit", 100.0, 100.05, "ask", *BOOK)]
    up = run(rows, forecast_mid=np.array([101.0, 101.0]))  # reservation 101.00: the bid is held at ask − tick
    down = run(rows, forecast_mid=np.array([99.0, 99.0]))  # reservation 99.00: the ask is held at bid + tick
    assert up.quotes.select("bid_price", "ask_price").row(0) == (100.01, 101.01)
    assert down.quotes.select("bid_price", "ask_price").row(0) == (98.99, 100.01)
    unskewed = run(rows, forecast_mid=np.array([np.nan, np.nan]))
    assert unskewed.quotes.select("bid_price", "ask_price").row(0) == (100.00, 100.02)


# ---- the two formulations of the simulator against each other


def random_flow(rng, events: int, levels: int = 2) -> pl.DataFrame:
    """Random two-level books around a wandering mid, with executions at, through and short of
    the touch, repeated time stamps and occasional one-sided books."""
    bid = 10_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 0, 1], events))
    ask = bid + rng.choice([1, 2, 3], events, p=[0.5, 0.3, 0.2])
    event_type = rng.choice(["submit", "delete", "cancel", "execute_visible", "execute_hidden"], events,
                            p=[0.4, 0.25, 0.05, 0.25, 0.05])
    side = rng.choice(["bid", "ask"], events)
    depth = rng.choice([-1, 0, 0, 0, 1, 2], events)  # ticks behind the touch (−1: inside the spread)
    price = np.where(side == "bid", bid - depth, ask + depth) * TICK
    book = {}
    for level in range(levels):
        book[f"ask_price_{level + 1}"] = (ask + level) * TICK
        book[f"ask_size_{level + 1}"] = rng.integers(1, 6, events) * 100.0
        book[f"bid_price_{level + 1}"] = (bid - level) * TICK
        book[f"bid_size_{level + 1}"] = rng.integers(1, 6, events) * 100.0
    one_sided = rng.random(events) < 0.02
    for column in book:
        if column.startswith("ask"):
            book[column] = np.where(one_sided, np.nan if "price" in column else 0.0, book[column])
    gaps = rng.exponential(0.15, events) * (rng.random(events) > 0.1)
    return pl.DataFrame({
        "ts_ns": DAY_START_NS + np.round(np.cumsum(gaps) * 1e9).astype(np.int64),
        "event_type": event_type, "order_id": np.zeros(events, np.int64),
        "size": rng.integers(1, 4, events) * 100.0, "price": price, "side": side, **book,
        "source_row": np.arange(1, events + 1),
    }).with_columns(pl.col(c).fill_nan(None) for c in book if "price" in c).cast(MESSAGES.dtypes(levels))


@pytest.mark.parametrize("strategy", ["inventory", "symmetric"])
def test_the_interval_and_event_formulations_agree_on_random_flow(strategy):
    rng = np.random.default_rng(11)
    events = message_arrays(random_flow(rng, 4000))
    forecast = np.where(rng.random(len(events)) < 0.5, events.mid + rng.normal(0.0, 0.02, len(events)), np.nan)
    params = MarketMakingParameters(sigma=0.01, A=1.0, k=200.0)  # spread ~1.3 ticks, ~0.3 tick per lot held
    config = MarketMakerConfig(gamma=0.1, quote_size=100.0, inventory_limit=300.0, requote_interval_s=1.0,
                               horizon_s=300.0, tick_size=TICK, fee_bps=1.0, forecast_skew_weight=0.5)
    by_intervals = simulate_by_intervals(events, params, config, strategy, forecast)
    by_events = simulate_on_messages(events, params, config, strategy, forecast)

    assert by_intervals.fills.equals(by_events.fills) and by_intervals.quotes.equals(by_events.quotes)
    for name in ("inventory", "cash", "equity"):
        np.testing.assert_array_equal(getattr(by_intervals, name), getattr(by_events, name))
    assert by_intervals.metrics.keys() == by_events.metrics.keys()
    assert all(by_intervals.metrics[key] == by_events.metrics[key] or math.isnan(by_intervals.metrics[key])
               for key in by_intervals.metrics)

    # the flow exercises every path: both sides, queue and trade-through fills, kept quotes, the limit
    fills, quotes = by_events.fills, by_events.quotes
    assert by_events.metrics["bid_fills"] > 20 and by_events.metrics["ask_fills"] > 20
    assert (fills["queue_ahead_at_placement"] > 0).any() and (fills["queue_ahead_at_placement"] == 0).any()
    assert (quotes["bid_price"].is_not_null() & ~quotes["bid_new"]).any()
    assert by_events.metrics["max_abs_inventory"] == 300.0
    # no quote crosses the touch it was placed against; every fill comes after its quote's placement
    placed = quotes["event_index"].to_numpy()
    bid, ask = quotes["bid_price"].to_numpy(), quotes["ask_price"].to_numpy()  # NaN where not quoted
    assert (bid <= events.best_ask[placed] - TICK + 1e-9).sum() == quotes["bid_price"].count()
    assert (ask >= events.best_bid[placed] + TICK - 1e-9).sum() == quotes["ask_price"].count()
    assert np.all(np.searchsorted(placed, fills["event_index"].to_numpy()) > 0)
    # bookkeeping: cash and inventory follow the fills, fees charged on every fill
    signed = np.where(fills["side"].to_numpy() == "bid", 1.0, -1.0)
    assert by_events.inventory[-1] == pytest.approx(100.0 * signed.sum())
    notional = 100.0 * fills["price"].to_numpy()
    assert by_events.cash[-1] == pytest.approx(-(signed * notional).sum() - 1e-4 * notional.sum())
