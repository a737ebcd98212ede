"""Event features, book features and labels: known answers on hand-built books, the documented
rules for awkward input, and the synthetic market's planted OFI signal."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from lob_platform import build_features, compute_book_features, compute_derived_features
from lob_platform.features.book import BookFeatureConfig
from lob_platform.features.inputs import FeatureInputError
from lob_platform.features.labels import fit_label_thresholds, next_mid_up, ternary_labels
from lob_platform.features.quality import label_balance, non_finite_counts, unexpected_null_counts
from lob_platform.sources.catalog import discover
from lob_platform.core.columns import EventType, Side
from lob_platform.sources.synthetic import MarketConfig, generate_market

TICK = 0.01
S = 1_000_000_000
T0 = 1_700_000_000 * S


def book_frame(rows: list[tuple], times_s: list[float] | None = None, events=None, sides=None, prices=None) -> pl.DataFrame:
    """Messages with a 1-level book: rows are (ask, ask_size, bid, bid_size)."""
    n = len(rows)
    times_s = times_s if times_s is not None else [i * 0.1 for i in range(n)]
    return pl.DataFrame({
        "ts_ns": [T0 + round(t * S) for t in times_s],
        "event_type": pl.Series(events or ["submit"] * n, dtype=EventType),
        "order_id": list(range(1, n + 1)),
        "size": [100.0] * n,
        "price": prices or [10.0] * n,
        "side": pl.Series(sides or ["bid"] * n, dtype=Side),
        "source_row": pl.Series(range(1, n + 1), dtype=pl.UInt32),
        "ask_price_1": [r[0] for r in rows], "ask_size_1": [float(r[1]) for r in rows],
        "bid_price_1": [r[2] for r in rows], "bid_size_1": [float(r[3]) for r in rows],
    })


# Hand-computed Cont-Kukanov-Stoikov increments e: 0, +50 (bid queue grows), +20 (ask queue
# shrinks), +30 (bid improves: new queue), +80 (ask level depleted, ask moves up: old queue),
# -40 (ask improves: new queue).
CKS_BOOK = [(10.02, 100, 10.00, 200), (10.02, 100, 10.00, 250), (10.02, 80, 10.00, 250),
            (10.02, 80, 10.01, 30), (10.03, 50, 10.01, 30), (10.02, 40, 10.01, 30)]
CKS_TIMES = [0.0, 0.5, 1.0, 1.0, 1.6, 3.0]
ONE_WINDOW = BookFeatureConfig(ofi_event_windows=(1, 3), ofi_time_windows_s=(1.0,), return_event_horizons=(2,),
                               return_time_horizons_s=(1.0,))


def test_ofi_matches_cont_kukanov_stoikov_by_hand():
    features = compute_book_features(book_frame(CKS_BOOK, CKS_TIMES), TICK, ONE_WINDOW)
    assert features["ofi_l1_1ev"].to_list() == [0, 50, 20, 30, 80, -40]
    assert features["ofi_l1_3ev"].to_list() == [0, 50, 70, 100, 130, 70]


def test_clock_window_ofi_never_sees_later_events_with_the_same_timestamp():
    features = compute_book_features(book_frame(CKS_BOOK, CKS_TIMES), TICK, ONE_WINDOW)
    # window (t - 1 s, t]: row 2 (t = 1.0) must not include row 3, which shares its timestamp
    assert features["ofi_l1_1s"].to_list() == [0, 50, 70, 100, 130, -40]


def test_ofi_of_a_deeper_level_counts_a_level_appearing_and_vanishing():
    frame = book_frame([(10.02, 100, 10.00, 200)] * 3).with_columns(
        ask_price_2=pl.Series([10.03, 10.03, 10.03]), ask_size_2=pl.Series([10.0, 10.0, 10.0]),
        bid_price_2=pl.Series([None, 9.99, None], dtype=pl.Float64), bid_size_2=pl.Series([0.0, 100.0, 0.0]))
    features = compute_book_features(frame, TICK, ONE_WINDOW)
    assert features["ofi_l2_1ev"].to_list() == [0, 100, -100]
    assert features["ofi_l1_1ev"].to_list() == [0, 0, 0]


def test_microprice_mid_spread_and_imbalances_by_hand():
    features = compute_book_features(book_frame(CKS_BOOK[:1]), TICK, ONE_WINDOW).row(0, named=True)
    assert features["mid"] == pytest.approx(10.01)
    assert features["spread_ticks"] == pytest.approx(2.0)
    # size-weighted: the bigger bid queue pulls the microprice towards the ask
    assert features["microprice"] == pytest.approx((10.00 * 100 + 10.02 * 200) / 300)
    assert features["microprice_offset_ticks"] == pytest.approx(((10.00 * 100 + 10.02 * 200) / 300 - 10.01) / TICK)
    assert features["queue_imbalance"] == pytest.approx((200 - 100) / 300)
    assert features["book_vwap"] == pytest.approx((10.02 * 100 + 10.00 * 200) / 300)
    assert (features["bid_depth"], features["ask_depth"]) == (200, 100)


def test_returns_and_realised_volatility_by_hand():
    features = compute_book_features(book_frame(CKS_BOOK, CKS_TIMES), TICK, ONE_WINDOW)
    mid = np.array([10.01, 10.01, 10.01, 10.015, 10.02, 10.015])
    assert np.allclose(features["mid"].to_numpy(), mid)
    expected_2ev = np.log(mid / mid[np.maximum(np.arange(6) - 2, 0)])
    assert np.allclose(features["return_2ev"].to_numpy(), expected_2ev)
    # 1 s clock horizon: against the last mid at or before t - 1 s (row 0 for t = 1.0 and 1.6; row 4 for t = 3.0)
    assert np.allclose(features["return_1s"].to_numpy(), np.log(mid / mid[[0, 0, 0, 0, 0, 4]]))
    steps = np.diff(np.log(mid), prepend=np.log(mid[0]))
    assert features["realized_vol_2ev"][4] == pytest.approx(math.sqrt(steps[3] ** 2 + steps[4] ** 2))


def test_one_sided_and_crossed_rows_carry_the_last_two_sided_prices_forward():
    rows = [(None, 0, 10.00, 100), (10.02, 100, 10.00, 100), (None, 0, 10.00, 100), (10.00, 50, 10.01, 80)]
    features = compute_book_features(book_frame(rows), TICK, ONE_WINDOW)
    assert features["book_two_sided"].to_list() == [False, True, False, False]
    assert features["mid"].to_list()[0] is None  # nothing two-sided yet
    assert features["mid"].to_list()[1:] == pytest.approx([10.01, 10.01, 10.01])
    assert features["queue_imbalance"][3] == pytest.approx((80 - 50) / 130)  # queues use the book as given
    assert unexpected_null_counts(pl.concat([features, pl.DataFrame({"x": [1.0] * 4})], how="horizontal")) == {}
    assert non_finite_counts(features) == {}


def test_event_features_rules():
    rows = [(10.02, 100, 10.00, 100)] * 5
    frame = book_frame(rows, [0.0, 0.0, 0.5, 0.5, 2.0],
                       events=["submit", "submit", "halt", "submit", "execute_hidden"],
                       sides=["bid", "ask", "bid", "ask", "bid"], prices=[9.99, 10.01, 0.0, 10.04, 10.015])
    features = compute_derived_features(frame, TICK)
    assert features["price_change_ticks"].to_list() == pytest.approx([0, 2, 0, 3, -2.5])  # the halt row has no price
    assert features["inter_arrival_ns"].to_list() == [0, 0, S // 2, 0, int(1.5 * S)]
    assert features["same_timestamp"].to_list() == [False, True, False, True, False]
    assert features["log_inter_arrival_s"][1] == pytest.approx(math.log(1e-9))  # floored at one nanosecond
    assert features["log_inter_arrival_s"][4] == pytest.approx(math.log(1.5))
    assert features["log_size"][0] == pytest.approx(math.log(101))
    # bid 9.99 one tick under the best bid; ask 10.01 inside the spread; halt has no level
    assert features["level"].to_list()[:3] == [1.0, -1.0, None]
    assert features["level"][3] == pytest.approx(2.0)
    assert features["source_row"].to_list() == [1, 2, 3, 4, 5]


def test_next_mid_move_label_skips_unchanged_mids_and_leaves_the_end_unlabelled():
    up = next_mid_up(np.array([10.0, 10.0, 10.5, 10.5, 10.0, 10.0]))
    assert up[:4].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert np.isnan(up[4:]).all()  # no later change that day


def test_labels_by_hand_on_the_hand_built_book():
    features = build_features(book_frame(CKS_BOOK, CKS_TIMES), TICK)
    assert features["label_next_mid_up"].to_list() == [True, True, True, True, False, None]
    mid = np.array([10.01, 10.01, 10.01, 10.015, 10.02, 10.015])
    assert features["label_return_10ev"].null_count() == 6  # fewer than 10 events follow
    labels = [c for c in features.columns if c.startswith("label_")]
    assert labels == ["label_next_mid_up", "label_return_10ev", "label_return_20ev", "label_return_50ev", "label_return_100ev"]
    from lob_platform.features.labels import forward_return
    assert np.allclose(forward_return(mid, 2)[:4], np.log(mid[2:] / mid[:4]))


def test_ternary_threshold_is_fit_on_training_rows_only():
    train = pl.DataFrame({"label_return_10ev": [0.0, 0.0, 0.001, -0.002, 0.003, -0.004]})
    thresholds = fit_label_thresholds(train, horizons=(10,), flat_share=0.5)
    assert thresholds == {10: pytest.approx(0.001)}
    later = pl.DataFrame({"label_return_10ev": [0.5, -0.5, 0.001, -0.0005, None]})
    assert ternary_labels(later, thresholds)["label_move_10ev"].to_list() == [1, -1, 0, 0, None]
    # the later day's huge moves did not change the threshold: it was fit before them
    assert fit_label_thresholds(train, horizons=(10,), flat_share=0.5) == thresholds


def test_a_day_on_which_the_price_never_moves_has_no_labels_and_fails_label_balance():
    features = build_features(book_frame([(10.02, 100, 10.00, 100)] * 300), TICK)
    assert features["label_next_mid_up"].null_count() == 300
    assert features["return_10ev"].to_list() == [0.0] * 300
    passed, info = label_balance(features)
    assert not passed and info["labelled_rows"] == 0
    assert non_finite_counts(features) == {} and unexpected_null_counts(features) == {}


def test_label_balance_passes_on_balanced_labels_and_fails_on_one_sided():
    balanced = pl.DataFrame({"label_next_mid_up": [True, False] * 10})
    assert label_balance(balanced)[0]
    assert not label_balance(pl.DataFrame({"label_next_mid_up": [True] * 19 + [False]}))[0]


def test_single_event_and_empty_days_give_well_defined_features():
    one = build_features(book_frame(CKS_BOOK[:1]), TICK)
    assert one.height == 1 and non_finite_counts(one) == {} and one["label_next_mid_up"][0] is None
    empty = build_features(book_frame(CKS_BOOK[:1]).clear(), TICK)
    assert empty.height == 0 and empty.columns == one.columns and empty.schema == one.schema


def test_nan_or_infinity_on_the_way_in_is_refused_with_the_source_row():
    frame = book_frame(CKS_BOOK).with_columns(
        pl.when(pl.col("source_row") == 4).then(float("nan")).otherwise(pl.col("bid_size_1")).alias("bid_size_1"))
    with pytest.raises(FeatureInputError, match=r"bid_size_1 .*source rows \[4\]"):
        build_features(frame, TICK)
    frame = book_frame(CKS_BOOK).with_columns(pl.lit(float("inf")).alias("price"))
    with pytest.raises(FeatureInputError, match="price"):
        compute_derived_features(frame, TICK)


def test_unsorted_timestamps_are_refused():
    frame = book_frame(CKS_BOOK, [0.0, 0.5, 0.4, 1.0, 1.6, 3.0])
    with pytest.raises(FeatureInputError, match=r"backwards at source rows \[3\]"):
        compute_book_features(frame, TICK)


def test_non_finite_and_unexpected_null_checks_fail_on_bad_tables():
    bad = pl.DataFrame({"book_two_sided": [False, True, True], "mid": [None, 1.0, None], "x": [1.0, float("inf"), 2.0]})
    assert non_finite_counts(bad) == {"x": 1}
    assert unexpected_null_counts(bad) == {"mid": 1}  # null after the first two-sided row


# --------------------------------------------------------------------------- planted signal

ONE_DAY = dict(n_days=1, mic_products=(), order_feed_products=(), crypto_pairs=(), lobster_tickers=("ACME",), lobster_levels=5)


def _synthetic_features(root, config: MarketConfig) -> pl.DataFrame:
    generate_market(root, config)
    (day,) = discover(root)
    return build_features(day.read(), TICK)


def _ofi_hit_rate(features: pl.DataFrame) -> tuple[float, float]:
    """(P(sign of 50-event OFI = next mid move), correlation), at the last event of each timestamp."""
    rows = features.filter(pl.col("label_next_mid_up").is_not_null() & (pl.col("ofi_l1_50ev") != 0)
                           & (pl.col("ts_ns") != pl.col("ts_ns").shift(-1)).fill_null(True))
    move = rows["label_next_mid_up"].cast(pl.Int8) * 2 - 1
    hit = float(((rows["ofi_l1_50ev"].sign() == move)).mean())
    return hit, float(np.corrcoef(rows["ofi_l1_50ev"].to_numpy(), move.to_numpy())[0, 1])


@pytest.fixture(scope="module")
def signal_features(tmp_path_factory):
    return _synthetic_features(tmp_path_factory.mktemp("signal"), MarketConfig(**ONE_DAY))


def test_ofi_feature_predicts_the_next_mid_move_at_the_planted_strength(signal_features):
    hit, correlation = _ofi_hit_rate(signal_features)
    assert abs(hit - (0.5 + MarketConfig().ofi_signal_strength / 2)) <= 0.05
    assert correlation > 0.3


def test_ofi_feature_has_no_edge_without_the_signal(tmp_path):
    hit, correlation = _ofi_hit_rate(_synthetic_features(tmp_path, MarketConfig.no_signal(**ONE_DAY)))
    assert abs(hit - 0.5) <= 0.04
    assert abs(correlation) < 0.06


def test_synthetic_day_features_are_finite_and_labels_balanced(signal_features):
    assert non_finite_counts(signal_features) == {} and unexpected_null_counts(signal_features) == {}
    assert label_balance(signal_features)[0]
