"""Token drift (PSI), split-share checks and crypto panel coverage, on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from lob_platform.features.panel_quality import MIN_PANEL_COVERAGE, coverage_failures, panel_coverage
from lob_platform.tokens.drift import PSI_WARNING, population_stability_index, token_counts, token_drift
from lob_platform.tokens.quality import split_share_deviation, split_shares_within


def test_psi_of_identical_distributions_is_zero():
    # Same shares at different totals: (0.5, 0.3, 0.2) both times.
    assert population_stability_index(np.array([50, 30, 20]), np.array([100, 60, 40])) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_a_small_hand_computed_example():
    # expected shares e = (0.5, 0.3, 0.2), actual shares a = (0.3, 0.3, 0.4):
    # (0.3 - 0.5) ln(0.3 / 0.5) + 0 + (0.4 - 0.2) ln(0.4 / 0.2)
    #   = 0.2 ln(5/3) + 0.2 ln 2 = 0.2 ln(10/3) = 0.2 * 1.2039728 = 0.2407946
    psi = population_stability_index(np.array([50, 30, 20]), np.array([30, 30, 40]))
    assert psi == pytest.approx(0.2407946, abs=1e-7)
    assert psi < PSI_WARNING


def test_psi_of_a_shifted_distribution_is_above_the_warning():
    # e = (0.7, 0.2, 0.1), a = (0.1, 0.2, 0.7): -0.6 ln(1/7) + 0 + 0.6 ln 7 = 1.2 ln 7 = 2.3351
    psi = population_stability_index(np.array([70, 20, 10]), np.array([10, 20, 70]))
    assert psi == pytest.approx(1.2 * math.log(7), rel=1e-12)
    assert psi > PSI_WARNING


def test_psi_with_empty_bins_is_finite():
    # Shares floored at 1e-4 (not renormalised): e = (1, 1e-4), a = (1e-4, 1):
    # (1e-4 - 1) ln(1e-4) + (1 - 1e-4) ln(1e4) = 2 * 0.9999 * ln(1e4) = 18.4188387
    psi = population_stability_index(np.array([100, 0]), np.array([0, 100]))
    assert math.isfinite(psi)
    assert psi == pytest.approx(2 * 0.9999 * math.log(1e4), rel=1e-12)


def test_psi_rejects_mismatched_or_empty_counts():
    with pytest.raises(ValueError, match="length"):
        population_stability_index(np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="sum to 0"):
        population_stability_index(np.array([0, 0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="sum to 0"):
        population_stability_index(np.array([1, 2]), np.array([0, 0]))


def test_token_counts_count_every_id_and_skip_nulls():
    tokens = pl.DataFrame({"side": pl.Series([0, 2, 2, None], dtype=pl.UInt16)})
    assert token_counts(tokens, "side", 4).tolist() == [1, 0, 2, 0]


def test_token_counts_reject_ids_outside_the_vocabulary():
    tokens = pl.DataFrame({"log_size_bin": pl.Series([0, 4], dtype=pl.UInt16)})
    with pytest.raises(ValueError, match="log_size_bin"):
        token_counts(tokens, "log_size_bin", 4)


def test_token_drift_measures_only_the_reference_columns():
    # side: reference shares (0.5, 0.5), the day has (0.75, 0.25):
    # 0.25 ln 1.5 - 0.25 ln 0.5 = 0.25 ln 3 = 0.2746531 -> 0.2747.
    # event_type: same shares as the reference -> 0.0. "level_bin" has no reference: not measured.
    tokens = pl.DataFrame({
        "side": [0, 0, 0, 1],
        "event_type": [0, 1, 2, 2],
        "level_bin": [5, 5, 5, 5],
    })
    drift = token_drift(
        tokens,
        reference_counts={"side": [2, 2], "event_type": [10, 10, 20]},
        vocabulary={"side": 2, "event_type": 3, "level_bin": 6},
    )
    assert drift == {"side": 0.2747, "event_type": 0.0}


def _splits(train: int, validation: int, test: int) -> pl.Series:
    return pl.Series("split", ["train"] * train + ["validation"] * validation + ["test"] * test)


SIXTY_TWENTY_TWENTY = {"train": 0.6, "validation": 0.2, "test": 0.2}


def test_split_shares_of_a_60_20_20_series_pass():
    deviations = split_share_deviation(_splits(6, 2, 2), SIXTY_TWENTY_TWENTY)
    assert deviations["train"] == {"share": 0.6, "expected": 0.6, "deviation": 0.0}
    assert deviations["validation"]["share"] == pytest.approx(0.2)
    assert deviations["test"]["share"] == pytest.approx(0.2)
    assert split_shares_within(deviations, tolerance=0.01)


def test_split_shares_of_an_all_test_series_fail():
    # shares (0, 0, 1) against (0.6, 0.2, 0.2): deviations 0.6, 0.2, 0.8.
    deviations = split_share_deviation(_splits(0, 0, 10), SIXTY_TWENTY_TWENTY)
    assert {s: d["deviation"] for s, d in deviations.items()} == pytest.approx(
        {"train": 0.6, "validation": 0.2, "test": 0.8}
    )
    assert not split_shares_within(deviations, tolerance=0.05)


def test_split_shares_tolerance_is_inclusive_of_the_largest_deviation():
    # 7/2/1 against 60/20/20: deviations 0.1, 0.0, 0.1.
    deviations = split_share_deviation(_splits(7, 2, 1), SIXTY_TWENTY_TWENTY)
    assert not split_shares_within(deviations, tolerance=0.05)
    assert split_shares_within(deviations, tolerance=0.11)


def test_split_shares_of_an_enum_series_with_purged_nulls():
    # 10 sequences, 2 purged (null): train 5/10, validation 2/10, test 1/10.
    splits = pl.Series(
        "split", ["train"] * 5 + [None] + ["validation"] * 2 + [None] + ["test"], pl.Enum(["train", "validation", "test"])
    )
    deviations = split_share_deviation(splits, SIXTY_TWENTY_TWENTY)
    assert {s: d["share"] for s, d in deviations.items()} == pytest.approx({"train": 0.5, "validation": 0.2, "test": 0.1})


def test_split_shares_of_an_empty_series_are_zero():
    deviations = split_share_deviation(pl.Series("split", [], pl.String), SIXTY_TWENTY_TWENTY)
    assert {s: d["share"] for s, d in deviations.items()} == {"train": 0.0, "validation": 0.0, "test": 0.0}
    assert deviations["train"]["deviation"] == pytest.approx(0.6)


BTC = "binance_spot.BTCUSDT"
ETH = "bybit_spot.ETHUSDT"


def _panel() -> pl.DataFrame:
    # BTC has a best bid and ask on all 4 rows. ETH lacks the bid on row 1 and the ask on row 2,
    # so only rows 0 and 3 count: coverage 2/4 = 0.5.
    return pl.DataFrame({
        "ts_ns": [0, 5, 10, 15],
        f"{BTC}.bid_price_1": [1.0, 1.0, 1.0, 1.0],
        f"{BTC}.ask_price_1": [2.0, 2.0, 2.0, 2.0],
        f"{ETH}.bid_price_1": [1.0, None, 1.0, 1.0],
        f"{ETH}.ask_price_1": [2.0, 2.0, None, 2.0],
    })


def test_panel_coverage_counts_rows_with_both_best_prices():
    assert panel_coverage(_panel(), [BTC, ETH]) == {BTC: 1.0, ETH: 0.5}


def test_panel_coverage_is_zero_for_missing_columns_and_an_empty_frame():
    assert panel_coverage(_panel(), ["bybit_spot.SOLUSDT"]) == {"bybit_spot.SOLUSDT": 0.0}
    assert panel_coverage(_panel().clear(), [BTC]) == {BTC: 0.0}


def test_coverage_failures_list_the_included_instruments_below_the_minimum():
    coverage = {BTC: 1.0, ETH: 0.5}
    assert coverage_failures(coverage, [BTC, ETH], minimum=0.6) == {ETH: 0.5}
    assert coverage_failures(coverage, [BTC, ETH], minimum=0.5) == {}
    assert coverage_failures(coverage, [BTC], minimum=0.6) == {}
    assert coverage_failures(coverage, [BTC, "bybit_spot.SOLUSDT"], minimum=MIN_PANEL_COVERAGE) == {
        "bybit_spot.SOLUSDT": 0.0
    }
