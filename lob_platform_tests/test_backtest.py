"""The direction backtest: signals, execution at the touch with latency and costs (hand-computed
PnL on small books), perfect foresight as a true upper bound, performance metrics, calibration,
and honesty on the synthetic market (no strategy beats its costs where there is no signal)."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from lob_platform.backtest.direction import backtest_label, calibration
from lob_platform.backtest.execution import Book, ExecutionConfig, StrategyRun, fill_plan, perfect_foresight, run_positions
from lob_platform.backtest.performance import drawdown, holding_pnls, performance
from lob_platform.backtest.signals import SignalConfig, decision_rows, directions, label_horizon, target_positions
from lob_platform.defs.backtests import first_test_row, upper_bound_violations
from lob_platform.errors import ConfigError
from lob_platform.features.table import build_features
from lob_platform.sources.lobster import LobsterFormat
from lob_platform.sources.synthetic import MarketConfig, generate_market

S = 1_000_000_000


def book(bid, ask, seconds=None) -> Book:
    bid, ask = np.asarray(bid, float), np.asarray(ask, float)
    ts = np.asarray(seconds if seconds is not None else np.arange(len(bid)), float) * S
    return Book(ts.astype(np.int64), bid, ask, (bid + ask) / 2)


# ---- signals

def test_decisions_come_once_per_holding_period():
    rows = np.array([100, 101, 102, 103, 104, 105, 107, 110])
    assert decision_rows(rows, 1).tolist() == list(range(8))
    assert decision_rows(rows, 3).tolist() == [0, 3, 6, 7]  # blocks [100, 103), [103, 106), [106, 109), [109, 112)
    assert label_horizon("move_50ev") == 50 and label_horizon("next_mid_up") == 1


def test_thresholds_always_in_sizing_and_limit():
    p_up, p_down = np.array([0.7, 0.52, 0.2, 0.45]), np.array([0.3, 0.48, 0.6, 0.2])
    threshold = SignalConfig(entry_probability=0.55)
    assert directions(p_up, p_down, threshold).tolist() == [1, 0, -1, 0]
    assert directions(p_up, p_down, SignalConfig(rule="always_in")).tolist() == [1, 1, -1, 1]
    sized = SignalConfig(sizing="confidence", size=10, position_limit=3)
    assert target_positions(np.array([1.0, -1.0]), np.array([0.6, 0.4]), np.array([0.4, 0.6]), sized).tolist() == \
        pytest.approx([2.0, -2.0])
    assert target_positions(np.array([1.0, -1.0]), p_up[:2], p_down[:2], SignalConfig(size=5, position_limit=3)).tolist() == [3, -3]
    with pytest.raises(ConfigError, match="rule"):
        SignalConfig(rule="momentum")


# ---- execution

def test_pnl_at_the_touch_with_latency_fees_and_close_by_hand():
    day = book(bid=[99, 100, 101, 102, 103, 102], ask=[101, 102, 103, 104, 105, 104])
    config = ExecutionConfig(fee_bps=10, latency_events=1)
    fills = fill_plan(day, np.array([0, 2]), config)
    assert fills.event.tolist() == [1, 3]  # one event after each decision, at that event's book
    run = run_positions(day, fills, np.array([1.0, -1.0]), config)
    fee = 1e-3
    bought = 102 * (1 + fee)  # +1 at event 1's ask
    sold = 2 * 102 * (1 - fee)  # -2 at event 3's bid
    covered = 104 * (1 + fee)  # +1 at the close (event 5's ask)
    assert run.pnl == pytest.approx(-bought + sold - covered)
    assert run.position.tolist() == [0, 1, 1, -1, -1, 0]
    assert run.equity[2] == pytest.approx(-bought + 102)  # marked to event 2's mid
    assert run.equity[4] == pytest.approx(-bought + sold - 104)
    assert run.cost.tolist() == pytest.approx([bought - 101, 2 * 103 - sold, covered - 103])  # against the mids


def test_latency_in_time_waits_for_the_book_then():
    day = book(bid=[10, 11, 12, 13], ask=[11, 12, 13, 14], seconds=[0, 0.0004, 0.002, 0.003])
    plan = fill_plan(day, np.array([0]), ExecutionConfig(latency_events=0, latency_us=1000, fee_bps=0))
    assert plan.event.tolist() == [2]  # the first event at or after 1 ms
    assert plan.buy.tolist() == [13.0] and plan.sell.tolist() == [12.0]
    late = fill_plan(day, np.array([3]), ExecutionConfig())
    assert len(late.event) == 0  # a decision on the last event cannot fill


def test_mid_fills_pay_half_spread_and_slippage():
    day = book(bid=[99, 99], ask=[101, 101])
    plan = fill_plan(day, np.array([0]), ExecutionConfig(fill="mid", half_spread_bps=10, slippage_bps=5, fee_bps=0))
    assert plan.buy[0] == pytest.approx(100 * 1.001 * 1.0005)
    assert plan.sell[0] == pytest.approx(100 * 0.999 * 0.9995)


def test_no_fill_before_the_first_two_sided_book():
    day = Book(np.arange(4) * S, np.array([np.nan, 10, 10, 10]), np.array([11, 11, 11, 11.0]), np.array([np.nan, 10.5, 10.5, 10.5]))
    plan = fill_plan(day, np.array([0, 1]), ExecutionConfig(latency_events=0))
    assert plan.decision.tolist() == [1]


# ---- perfect foresight

def random_day(rng, n=60) -> Book:
    mid = 100 + np.cumsum(rng.normal(0, 0.05, n))
    half = rng.uniform(0.005, 0.05, n)
    return Book(np.arange(n) * S, mid - half, mid + half, mid)


def test_perfect_foresight_is_the_best_path_by_brute_force():
    rng = np.random.default_rng(1)
    config = ExecutionConfig(fee_bps=1)
    for _ in range(5):
        day = random_day(rng, 30)
        plan = fill_plan(day, np.arange(0, 28, 4), config)
        best = max(run_positions(day, plan, np.array(path), config).pnl
                   for path in itertools.product((-2.0, 0.0, 2.0), repeat=len(plan.event)))
        assert run_positions(day, plan, perfect_foresight(day, plan, 2.0, config), config).pnl == pytest.approx(best)


def test_perfect_foresight_bounds_every_strategy_of_its_limit():
    rng = np.random.default_rng(2)
    for flatten in (True, False):
        config = ExecutionConfig(fee_bps=0.5, flatten_at_close=flatten)
        for _ in range(30):
            day = random_day(rng)
            plan = fill_plan(day, np.sort(rng.choice(58, 20, replace=False)), config)
            bound = run_positions(day, plan, perfect_foresight(day, plan, 1.5, config), config).pnl
            for targets in (rng.uniform(-1.5, 1.5, 20), rng.choice([-1.5, 0, 1.5], 20), np.full(20, 1.5)):
                assert run_positions(day, plan, targets, config).pnl <= bound + 1e-9


def test_the_upper_bound_check_passes_and_fails():
    rows = lambda model: pl.DataFrame({"label": ["a", "a", "b", "b"], "strategy": ["model", "perfect_foresight"] * 2,  # noqa: E731
                                       "total_return": [0.01, 0.02, model, 0.03]})
    assert upper_bound_violations(rows(0.03)) == []
    assert upper_bound_violations(rows(0.05)) == ["b: model 0.05 > 0.03"]


# ---- performance

def test_drawdown_holdings_and_ratios_by_hand():
    day = book(bid=[99.5] * 6, ask=[100.5] * 6)
    assert drawdown(np.array([0.0, 2, 1, -1, 3, 2]), day.ts_ns, 10.0) == (pytest.approx(0.3), pytest.approx(2.0))
    assert drawdown(np.array([-1.0, -2, -0.5]), day.ts_ns[:3], 10.0) == (pytest.approx(0.2), pytest.approx(2.0))
    run = StrategyRun(position=np.array([0, 1, 1, -1, -1, 0.0]), cash=np.zeros(6), equity=np.array([0, -1, 2, 3, 1, 1.0]),
                      fill_events=np.array([1, 3, 5]), traded=np.array([1, -2, 1.0]), cost=np.array([1, 2, 1.0]))
    assert holding_pnls(run, day).tolist() == [3.0, -1.0]  # equity before fill 1 to fill 3 (long), 2 to 5 (short)
    figures = performance(run, day, 0, 100.0, bar_seconds=1, periods_per_day=6, days_per_year=252, foresight_pnl=4.0)
    assert figures["hit_rate"] == 0.5 and figures["profit_factor"] == 3.0
    assert figures["total_return"] == pytest.approx(0.01) and figures["pf_capture"] == pytest.approx(0.25)
    assert figures["turnover"] == pytest.approx(4 * 100 / 100) and figures["costs"] == pytest.approx(0.04)
    returns = np.diff(np.r_[0.0, run.equity[1:]]) / 100  # bars end at events 1..5
    assert figures["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * np.sqrt(6 * 252))
    assert figures["var_95"] == pytest.approx(-np.quantile(returns, 0.05))


def test_calibration_of_a_perfectly_calibrated_model():
    rng = np.random.default_rng(3)
    p = rng.choice([0.6, 0.9], 20_000)
    truth = np.where(rng.uniform(size=p.size) < p, "up", "down")
    frame = pl.DataFrame({"true_class": truth, "p_up": p, "p_down": 1 - p, "p_flat": None},
                         schema_overrides={"p_flat": pl.Float64})
    table, summary = calibration(frame)
    assert summary["ece"] < 0.01 and summary["brier"] == pytest.approx(np.mean(2 * (np.where(truth == "up", 1, 0) - p) ** 2), rel=1e-9)
    assert [round(r["confidence"], 2) for r in table] == [0.6, 0.9]
    overconfident, _ = calibration(frame.with_columns(p_up=pl.when(pl.col("p_up") > 0.5).then(0.99).otherwise(0.01),
                                                      p_down=pl.when(pl.col("p_up") > 0.5).then(0.01).otherwise(0.99)))
    assert overconfident[-1]["confidence"] - overconfident[-1]["accuracy"] > 0.2


def test_same_day_split_trades_the_models_test_part():
    assert first_test_row(1000, 0.6) == 800


# ---- honesty on the synthetic market

@pytest.fixture(scope="module")
def markets(tmp_path_factory):
    days = {}
    for name, config in (("signal", MarketConfig), ("no_signal", MarketConfig.no_signal)):
        root = tmp_path_factory.mktemp(name)
        generate_market(root, config(n_days=1, lobster_tickers=("ACME",), lobster_levels=2, lobster_events_per_day=20_000,
                                     mic_products=(), order_feed_products=(), crypto_pairs=()))
        (day,) = LobsterFormat().discover("lobster", root / "lobster")
        messages = day.read()
        features = build_features(messages, 0.01)
        days[name] = (Book.from_messages(messages, features["mid"]), features)
    return days


def gross_and_noise(run, day: Book) -> tuple[float, float]:
    """PnL before costs (the position times the mid's moves) and its standard error."""
    held = run.position[:-1] * np.diff(day.mid)
    return float(run.pnl + run.cost.sum()), float(np.sqrt(np.sum(held ** 2)))


def predictions_from(features: pl.DataFrame, p_up: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"event_row": features["event_row"], "label": "move_50ev", "p_up": p_up, "p_down": 1 - p_up,
                         "p_flat": None, "true_class": None}, schema_overrides={"p_flat": pl.Float64, "true_class": pl.String})


@pytest.mark.parametrize("market", ["signal", "no_signal"])
def test_no_strategy_beats_its_costs_without_a_signal(markets, market):
    day, features = markets[market]
    ofi = features["ofi_l1_50ev"].to_numpy()
    rows = slice(first_test_row(len(day), 0.6), None)
    informed = np.where(np.nan_to_num(ofi) > 0, 0.8, 0.2)  # a model that follows the order-flow imbalance
    result = backtest_label(day, predictions_from(features[rows], informed[rows]), ofi, SignalConfig(), ExecutionConfig(),
                            bar_seconds=60, days_per_year=252)
    verdicts = {}
    for name, run in result.runs.items():
        gross, noise = gross_and_noise(run, day)
        verdicts[name] = gross / noise
        assert run.pnl <= result.runs["perfect_foresight"].pnl + 1e-9
    random_gross, random_noise = gross_and_noise(result.runs["random"], day)
    assert abs(random_gross) < 3 * random_noise  # a random signal loses its costs, give or take noise
    assert result.runs["random"].pnl < 0
    if market == "no_signal":
        assert all(abs(z) < 3 for name, z in verdicts.items() if name != "perfect_foresight"), verdicts
    else:  # the planted order-flow signal: following it beats noise before costs
        assert verdicts["model"] > 3 and verdicts["ofi_sign"] > 3, verdicts
