"""Chronological splits with purge gaps, walk-forward folds across days, and per-date purging."""

from __future__ import annotations

import polars as pl
import pytest

from lob_platform.core.splits import (
    Split,
    WalkForwardFold,
    chronological_split,
    chronological_split_with_purge,
    purge_rows,
    walk_forward_folds,
)


def test_chronological_split_shares_in_time_order():
    # 10 rows at 60/20/20: train rows 0-5, validation 6-7, test 8-9.
    split = chronological_split(10, (0.6, 0.2, 0.2))
    assert split.dtype == Split
    assert split.to_list() == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2


def test_chronological_split_rounds_boundaries_down():
    # 7 rows at 50/30/20: train_end = int(3.5) = 3, validation_end = int(5.6) = 5.
    split = chronological_split(7, (0.5, 0.3, 0.2))
    assert split.to_list() == ["train"] * 3 + ["validation"] * 2 + ["test"] * 2


def test_chronological_split_of_no_rows_is_empty():
    split = chronological_split(0)
    assert split.len() == 0 and split.dtype == Split


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_chronological_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(10, fractions)


def test_purge_nulls_exactly_the_rows_before_each_boundary():
    # 20 rows at 60/20/20: train 0-11, validation 12-15, test 16-19. A purge of 2 nulls
    # rows 10, 11 (before validation) and 14, 15 (before test); nothing else changes.
    purged = chronological_split_with_purge(20, (0.6, 0.2, 0.2), purge_events=2)
    assert purged.to_list() == (
        ["train"] * 10 + [None] * 2 + ["validation"] * 2 + [None] * 2 + ["test"] * 4
    )
    plain = chronological_split(20, (0.6, 0.2, 0.2))
    kept = purged.is_not_null()
    assert purged.filter(kept).to_list() == plain.filter(kept).to_list()
    assert purged.dtype == Split


def test_purge_longer_than_validation_swallows_it():
    # Purge 5 on the same 20 rows: rows 7-11 and 11-15 are nulled, so no validation row is left.
    purged = chronological_split_with_purge(20, (0.6, 0.2, 0.2), purge_events=5)
    assert purged.to_list() == ["train"] * 7 + [None] * 9 + ["test"] * 4


def test_purge_skips_a_boundary_with_nothing_after_it():
    # 10 rows at 80/20/0: validation 8-9, test empty. Only rows 6-7 (before validation) are purged.
    purged = chronological_split_with_purge(10, (0.8, 0.2, 0.0), purge_events=2)
    assert purged.to_list() == ["train"] * 6 + [None] * 2 + ["validation"] * 2


def test_purge_zero_is_the_plain_split():
    assert chronological_split_with_purge(37, (0.5, 0.3, 0.2), 0).equals(chronological_split(37, (0.5, 0.3, 0.2)))


def test_purge_rejects_a_negative_gap():
    with pytest.raises(ValueError, match="purge_events"):
        chronological_split_with_purge(10, (0.6, 0.2, 0.2), purge_events=-1)


# Fri 5 Jan 2024, then Mon 8, Tue 9, Wed 10 and Fri 12 (no data on Thu 11): unsorted, one duplicate.
TRADING_DATES = ["2024-01-10", "2024-01-05", "2024-01-12", "2024-01-08", "2024-01-09", "2024-01-08"]


def test_walk_forward_folds_train_on_previous_trading_dates():
    folds = walk_forward_folds(TRADING_DATES, train_days=2)
    assert folds == [
        WalkForwardFold("2024-01-08", ("2024-01-05",)),
        WalkForwardFold("2024-01-09", ("2024-01-05", "2024-01-08")),
        WalkForwardFold("2024-01-10", ("2024-01-08", "2024-01-09")),
        WalkForwardFold("2024-01-12", ("2024-01-09", "2024-01-10")),
    ]


def test_walk_forward_folds_need_min_train_days_of_history():
    folds = walk_forward_folds(TRADING_DATES, train_days=3, min_train_days=3)
    assert folds == [
        WalkForwardFold("2024-01-10", ("2024-01-05", "2024-01-08", "2024-01-09")),
        WalkForwardFold("2024-01-12", ("2024-01-08", "2024-01-09", "2024-01-10")),
    ]


def test_walk_forward_folds_never_train_on_the_test_day_or_later():
    folds = walk_forward_folds(TRADING_DATES, train_days=10)
    assert [f.test_date for f in folds] == ["2024-01-08", "2024-01-09", "2024-01-10", "2024-01-12"]
    for fold in folds:
        assert all(train_date < fold.test_date for train_date in fold.train_dates)
        assert len(set(fold.train_dates)) == len(fold.train_dates)


def test_walk_forward_folds_of_a_single_date_are_empty():
    assert walk_forward_folds(["2024-01-05", "2024-01-05"], train_days=1) == []


@pytest.mark.parametrize(("train_days", "min_train_days"), [(0, 1), (2, 0), (-1, 1)])
def test_walk_forward_folds_reject_non_positive_day_counts(train_days, min_train_days):
    with pytest.raises(ValueError, match="train_days"):
        walk_forward_folds(TRADING_DATES, train_days, min_train_days)


def test_walk_forward_folds_reject_a_non_iso_date():
    with pytest.raises(ValueError):
        walk_forward_folds(["2024-01-05", "05/01/2024"], train_days=1)


def _training_table() -> pl.DataFrame:
    # 5 rows on 2024-01-08, 3 on 2024-01-09, 1 on 2024-01-10; event order within each date.
    return pl.DataFrame({
        "date": ["2024-01-08"] * 5 + ["2024-01-09"] * 3 + ["2024-01-10"],
        "event": ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "c0"],
    })


def test_purge_rows_drops_the_last_rows_of_every_date():
    # Horizon 2: a3, a4 and b1, b2 go, and the one-row date 2024-01-10 goes entirely.
    purged = purge_rows(_training_table(), horizon_events=2)
    assert purged["event"].to_list() == ["a0", "a1", "a2", "b0"]
    assert purged["date"].to_list() == ["2024-01-08"] * 3 + ["2024-01-09"]


def test_purge_rows_of_horizon_zero_keeps_everything():
    assert purge_rows(_training_table(), 0).equals(_training_table())


def test_purge_rows_rejects_a_negative_horizon_and_a_missing_date_column():
    with pytest.raises(ValueError, match="horizon_events"):
        purge_rows(_training_table(), -1)
    with pytest.raises(ValueError, match="date"):
        purge_rows(_training_table().drop("date"), 1)
