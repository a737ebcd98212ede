"""The point-in-time crypto panel: layout, known answers, no lookahead, fill age, gaps, real data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from lob_platform.features.crypto_panel import (
    Panel,
    PanelConfig,
    build_panel,
    panel_columns,
)
from lob_platform.sources.crypto import read_book_snapshots
from lob_platform.core.columns import book_columns
from lob_platform.sources.synthetic import MarketConfig, generate_market

DAY = dt.date(2024, 3, 4)
MIDNIGHT_NS = int(dt.datetime(2024, 3, 4, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
S = 1_000_000_000
INSTRUMENT = "binance_perp.BTCUSDT"


def snapshots(rows: list[tuple[float, float, float]], levels: int = 5) -> pl.DataFrame:
    """A validated snapshot frame from (exchange s, receive s, best bid) rows, seconds after midnight.

    Level i has bid = best bid - (i-1), ask = best bid + i, size = best bid / 1000 + i.
    """
    data: dict[str, list] = {
        "ts_ns": [MIDNIGHT_NS + round(ts * S) for ts, _, _ in rows],
        "local_ts_ns": [MIDNIGHT_NS + round(local * S) for _, local, _ in rows],
    }
    for name in book_columns(levels):
        side, field, level = name.split("_")
        level = int(level)
        if field == "price":
            data[name] = [bid - (level - 1) if side == "bid" else bid + level for _, _, bid in rows]
        else:
            data[name] = [bid / 1000 + level for _, _, bid in rows]
    data["source_row"] = list(range(2, len(rows) + 2))
    schema = {"ts_ns": pl.Int64, "local_ts_ns": pl.Int64, "source_row": pl.UInt32} | {c: pl.Float64 for c in book_columns(levels)}
    return pl.DataFrame(data, schema=schema).select("ts_ns", "local_ts_ns", *book_columns(levels), "source_row")


def at(panel: Panel, seconds: int, column: str):
    """The panel value at a grid time given in seconds after midnight."""
    return panel.frame.filter(pl.col("ts_ns") == MIDNIGHT_NS + seconds * S)[column].item()


def test_column_order_count_and_grid_spacing():
    panel = build_panel({}, DAY)
    values = panel_columns(PanelConfig())
    assert len(values) == 240 and len(set(values)) == 240
    assert values[:6] == [
        "binance_spot.BTCUSDT.bid_price_1",
        "binance_spot.BTCUSDT.bid_volume_1",
        "binance_spot.BTCUSDT.ask_price_1",
        "binance_spot.BTCUSDT.ask_volume_1",
        "binance_spot.BTCUSDT.bid_price_2",
        "binance_spot.BTCUSDT.bid_volume_2",
    ]
    assert values[20] == "binance_spot.ETHUSDT.bid_price_1"  # pair changes after 5 levels x 4
    assert values[80] == "binance_perp.BTCUSDT.bid_price_1"  # exchange changes after 4 pairs
    assert values[-1] == "bybit_spot.WLDUSDT.ask_volume_5"
    instruments = [f"{e}.{p}" for e in PanelConfig().exchanges for p in PanelConfig().pairs]
    assert panel.frame.columns == ["ts_ns", *values, *[f"{i}.stale" for i in instruments], *[f"{i}.age_s" for i in instruments]]
    assert panel.frame.schema["ts_ns"] == pl.Int64
    assert all(panel.frame.schema[c] == pl.Float64 for c in values)
    assert all(panel.frame.schema[f"{i}.stale"] == pl.Boolean for i in instruments)
    ts = panel.frame["ts_ns"].to_numpy()
    assert len(ts) == 17280 and ts[0] == MIDNIGHT_NS
    assert set(np.diff(ts)) == {5 * S}
    assert ts[-1] == MIDNIGHT_NS + (86400 - 5) * S


def test_known_answer_two_snapshots_at_3s_and_12s():
    panel = build_panel({INSTRUMENT: snapshots([(2.9, 3.0, 100.0), (11.9, 12.0, 200.0)])}, DAY)
    bid, ask, vol = f"{INSTRUMENT}.bid_price_1", f"{INSTRUMENT}.ask_price_2", f"{INSTRUMENT}.bid_volume_1"
    stale, age = f"{INSTRUMENT}.stale", f"{INSTRUMENT}.age_s"
    assert at(panel, 0, bid) is None and at(panel, 0, vol) is None
    assert at(panel, 0, stale) is True and at(panel, 0, age) is None
    assert (at(panel, 5, bid), at(panel, 5, ask), at(panel, 5, vol)) == (100.0, 102.0, 1.1)
    assert at(panel, 10, bid) == 100.0
    assert at(panel, 15, bid) == 200.0
    assert [at(panel, t, age) for t in (5, 10, 15, 20)] == pytest.approx([2.0, 7.0, 3.0, 8.0])
    assert [at(panel, t, stale) for t in (5, 10, 15, 20)] == [False, True, False, True]


def test_no_lookahead_on_exchange_time_only_receive_time_counts():
    # Exchange time 9 s (before the 10 s grid point) but received at 10.5 s: not known at 10 s.
    panel = build_panel({INSTRUMENT: snapshots([(1.0, 1.2, 100.0), (9.0, 10.5, 200.0)])}, DAY)
    assert at(panel, 10, f"{INSTRUMENT}.bid_price_1") == 100.0
    assert at(panel, 10, f"{INSTRUMENT}.age_s") == pytest.approx(8.8)
    assert at(panel, 15, f"{INSTRUMENT}.bid_price_1") == 200.0
    # A snapshot received exactly at the grid time is usable at that time.
    exact = build_panel({INSTRUMENT: snapshots([(4.0, 5.0, 300.0)])}, DAY)
    assert at(exact, 5, f"{INSTRUMENT}.bid_price_1") == 300.0


def test_unsorted_receive_times_are_sorted_and_rolled_back_books_dropped():
    # Rows come sorted by exchange time; the 6 s book overtakes the 5 s book in flight.
    frame = snapshots([(1.0, 1.1, 100.0), (5.0, 9.0, 150.0), (6.0, 6.5, 160.0), (20.0, 20.1, 170.0)])
    panel = build_panel({INSTRUMENT: frame}, DAY)
    bid = f"{INSTRUMENT}.bid_price_1"
    assert [at(panel, t, bid) for t in (5, 10, 15, 20, 25)] == [100.0, 160.0, 160.0, 160.0, 170.0]
    assert at(panel, 10, f"{INSTRUMENT}.age_s") == pytest.approx(3.5)


def test_max_fill_age_nulls_values_after_60s_and_reports_the_gap():
    panel = build_panel({INSTRUMENT: snapshots([(9.9, 10.0, 100.0), (189.9, 190.0, 200.0)])}, DAY)
    bid, stale, age = f"{INSTRUMENT}.bid_price_1", f"{INSTRUMENT}.stale", f"{INSTRUMENT}.age_s"
    assert at(panel, 70, bid) == 100.0  # age exactly 60 s: still filled
    assert at(panel, 75, bid) is None and at(panel, 185, bid) is None
    assert at(panel, 75, age) == pytest.approx(65.0)  # age keeps counting while values are null
    assert all(at(panel, t, stale) for t in range(15, 190, 5))
    assert at(panel, 190, bid) == 200.0 and at(panel, 190, stale) is False
    assert at(panel, 255, bid) is None  # 65 s after the last snapshot
    gaps = panel.gaps.filter(pl.col("instrument") == INSTRUMENT).sort("gap_start_ns")
    assert gaps.rows() == [
        (INSTRUMENT, MIDNIGHT_NS + 10 * S, MIDNIGHT_NS + 190 * S, 180.0),
        (INSTRUMENT, MIDNIGHT_NS + 190 * S, MIDNIGHT_NS + 86395 * S, 86205.0),  # last snapshot -> grid end
    ]
    summary = panel.summary()
    assert summary["longest_gap_s"][INSTRUMENT] == 86205.0
    assert summary["gaps_over_max_age"] == 2 + 11  # the other 11 instruments: one whole-day gap each


def test_gap_from_midnight_to_late_first_snapshot_is_reported():
    panel = build_panel({INSTRUMENT: snapshots([(99.0, 100.0, 100.0), (101.0, 102.0, 100.0)])}, DAY)
    first = panel.gaps.filter(pl.col("instrument") == INSTRUMENT).sort("gap_start_ns").row(0)
    assert first == (INSTRUMENT, MIDNIGHT_NS, MIDNIGHT_NS + 100 * S, 100.0)


def test_empty_level_stays_null_not_filled_from_older_snapshot():
    frame = snapshots([(1.0, 1.0, 100.0), (2.0, 2.0, 101.0)]).with_columns(
        pl.when(pl.col("source_row") == 3).then(None).otherwise(pl.col("bid_price_5")).alias("bid_price_5"),
        pl.when(pl.col("source_row") == 3).then(0.0).otherwise(pl.col("bid_size_5")).alias("bid_size_5"),
    )
    panel = build_panel({INSTRUMENT: frame}, DAY)
    assert at(panel, 5, f"{INSTRUMENT}.bid_price_5") is None
    assert at(panel, 5, f"{INSTRUMENT}.bid_volume_5") == 0.0
    assert at(panel, 5, f"{INSTRUMENT}.bid_price_4") == 98.0


def test_missing_instrument_is_null_stale_and_listed():
    panel = build_panel({INSTRUMENT: snapshots([(1.0, 1.0, 100.0)])}, DAY)
    missing = "bybit_spot.WLDUSDT"
    values = [c for c in panel_columns() if c.startswith(missing + ".")]
    assert len(values) == 20
    assert all(panel.frame[c].null_count() == 17280 for c in values)
    assert panel.frame[f"{missing}.stale"].all()
    assert panel.frame[f"{missing}.age_s"].null_count() == 17280
    summary = panel.summary()
    assert summary["instruments_present"] == [INSTRUMENT]
    assert missing in summary["instruments_missing"] and len(summary["instruments_missing"]) == 11
    assert summary["stale_fraction"][missing] == 1.0


def test_unknown_keys_ignored_and_short_levels_reported():
    panel = build_panel(
        {INSTRUMENT: snapshots([(1.0, 1.0, 100.0)], levels=3), "kraken.BTCUSD": snapshots([(1.0, 1.0, 5.0)])}, DAY
    )
    summary = panel.summary()
    assert summary["instruments_ignored"] == ["kraken.BTCUSD"]
    assert summary["instruments_short_levels"] == {INSTRUMENT: 3}
    assert not any("kraken" in c for c in panel.frame.columns)
    assert at(panel, 5, f"{INSTRUMENT}.ask_price_3") == 103.0
    assert at(panel, 5, f"{INSTRUMENT}.ask_price_4") is None


def test_no_carry_over_from_previous_day_and_other_dates_fill_nothing():
    frame = snapshots([(-10.0, -9.0, 100.0), (2.0, 2.0, 200.0)])
    panel = build_panel({INSTRUMENT: frame}, DAY)
    assert at(panel, 0, f"{INSTRUMENT}.bid_price_1") is None
    assert at(panel, 5, f"{INSTRUMENT}.bid_price_1") == 200.0
    next_day = build_panel({INSTRUMENT: frame}, DAY + dt.timedelta(days=1))
    assert next_day.frame[f"{INSTRUMENT}.bid_price_1"].null_count() == 17280


@pytest.fixture(scope="module")
def synthetic_panel(tmp_path_factory) -> Panel:
    """One synthetic crypto day (every exchange and pair, no LOBSTER/MIC files), as a panel."""
    root = tmp_path_factory.mktemp("market")
    paths = generate_market(root, MarketConfig(n_days=1, lobster_tickers=(), mic_products=(), order_feed_products=()))
    frames = {}
    for path in paths:
        exchange, rest = path.name.split("_book_snapshot_")
        frames[f"{exchange}.{rest.split('_')[-1].split('.')[0]}"] = read_book_snapshots(path)
    return build_panel(frames, dt.date.fromisoformat(MarketConfig().start_date))


def test_synthetic_market_every_instrument_present_modest_staleness(synthetic_panel):
    summary = synthetic_panel.summary()
    assert summary["instruments_missing"] == [] and len(summary["instruments_present"]) == 12
    assert summary["rows"] == 17280 and summary["value_columns"] == 240
    # Exponential gaps with mean 2 s: P(no snapshot in 5 s) = exp(-2.5) ~ 0.082.
    assert all(0.05 < f < 0.12 for f in summary["stale_fraction"].values()), summary["stale_fraction"]
    assert summary["gaps_over_max_age"] == 0
    after_first_minute = synthetic_panel.frame.filter(pl.col("ts_ns") >= MIDNIGHT_NS + 60 * S)
    assert after_first_minute.select(pl.col(panel_columns()).null_count()).sum_horizontal().item() == 0


def test_synthetic_market_bid_below_ask_wherever_both_present(synthetic_panel):
    frame = synthetic_panel.frame
    for name in [c for c in panel_columns() if ".bid_price_" in c]:
        crossed = frame.filter(pl.col(name) >= pl.col(name.replace(".bid_price_", ".ask_price_")))
        assert crossed.height == 0, name
    best_bid = frame["binance_perp.BTCUSDT.bid_price_1"].drop_nulls()
    assert best_bid.len() > 17270 and best_bid.min() > 1000
