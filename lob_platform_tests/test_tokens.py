"""Bin edges, tokens, the training window and sequences; seed 000's example workflow on a real day."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

from lob_platform.features.training_window import PREVIOUS_DAYS, SAME_DAY_SPLIT, plan_training_window, training_window
from lob_platform.tokens.bins import BinEdges, BinsNotFitted, compute_token_bins, fit_bins, quantile_edges
from lob_platform.tokens.drift import token_counts
from lob_platform.tokens.quality import empty_bins, non_monotonic_edges
from lob_platform.core.splits import chronological_split
from lob_platform.tokens.sequences import sequence_array, token_sequences, window_starts

from .conftest import AMZN_5, require

ONE_FEATURE = {"log_size": 4}


def frame(values, feature="log_size", **extra) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame({"event_row": pl.Series(range(n), dtype=pl.UInt32), "ts_ns": list(range(n)),
                         "source_row": pl.Series(range(1, n + 1), dtype=pl.UInt32),
                         feature: pl.Series(values, dtype=pl.Float64),
                         "event_type": pl.Series(["submit"] * n, dtype=pl.Enum(["submit", "cancel"])),
                         "side": pl.Series(["bid"] * n, dtype=pl.Enum(["bid", "ask"])), **extra})


def test_quantile_edges_are_occurring_values_above_the_minimum():
    values = np.arange(100, dtype=float)
    assert quantile_edges(values, 4) == (24.0, 49.0, 74.0)
    # mostly zeros (like price changes in ticks): duplicates collapse, the minimum is no edge
    assert quantile_edges(np.array([0.0] * 80 + [1.0] * 10 + [2.0] * 10), 10) == (1.0,)
    assert quantile_edges(np.array([np.nan, np.inf]), 4) == ()


def test_every_bin_holds_training_rows_and_nulls_get_the_last_token():
    train = frame([float(v) for v in range(20)])
    bins = fit_bins(train, BinEdges(bin_counts=ONE_FEATURE))
    assert empty_bins(train, bins) == {} and non_monotonic_edges(bins) == []
    tokens = compute_token_bins(frame([-5.0, 0.0, 4.0, 100.0, None]), bins)
    assert tokens["log_size_bin"].to_list() == [0, 0, 1, 3, 4]
    assert bins.vocabulary()["log_size_bin"] == 5
    assert all(token_counts(tokens, c, n).sum() == tokens.height for c, n in bins.vocabulary().items())  # none outside


def test_bins_fit_on_one_window_are_applied_unchanged_to_later_data():
    bins = fit_bins(frame([1.0, 2.0, 3.0, 4.0]), BinEdges(bin_counts={"log_size": 2}))
    assert bins.edges["log_size"] == (2.0,) and bins.fit_rows == 4
    later = compute_token_bins(frame([100.0, 200.0]), bins)
    assert later["log_size_bin"].to_list() == [1, 1]  # the later day's range did not move the edges


def test_hierarchical_mapping_coarse_then_fine():
    bins = BinEdges(bin_counts={"log_size": 8}, n_coarse=4, edges={"log_size": tuple(float(e) for e in range(1, 8))})
    tokens = compute_token_bins(frame([float(v) for v in range(8)] + [None]), bins)
    assert tokens["log_size_bin"].to_list() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert tokens["log_size_coarse"].to_list() == [0, 0, 1, 1, 2, 2, 3, 3, 4]  # the null token is its own group
    assert tokens["log_size_fine"].to_list() == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    vocabulary = bins.vocabulary()
    assert (vocabulary["log_size_coarse"], vocabulary["log_size_fine"]) == (5, 2)
    assert tokens["event_type_token"].to_list() == [0] * 9


def test_tokens_need_fitted_bins():
    with pytest.raises(BinsNotFitted, match="fit_bins"):
        compute_token_bins(frame([1.0]), BinEdges())


def test_bin_edge_table_round_trips():
    bins = fit_bins(frame([float(v) for v in range(50)]), BinEdges(bin_counts=ONE_FEATURE))
    assert BinEdges.from_frame(bins.to_frame()) == bins


def test_edge_and_vocabulary_checks_fail_on_bad_input():
    assert non_monotonic_edges(BinEdges(bin_counts=ONE_FEATURE, edges={"log_size": (1.0, 1.0, 2.0)})) == ["log_size"]
    assert non_monotonic_edges(BinEdges(bin_counts=ONE_FEATURE, edges={"log_size": (1.0, float("nan"))})) == ["log_size"]
    stale = BinEdges(bin_counts=ONE_FEATURE, edges={"log_size": (1.0, 2.0, 3.0)})
    assert empty_bins(frame([0.5, 2.5]), stale) == {"log_size": [1, 3]}
    tokens = pl.DataFrame({"log_size_bin": pl.Series([0, 4, 5], dtype=pl.UInt16)})
    with pytest.raises(ValueError, match="log_size_bin.*1 token ids outside the vocabulary 0..4"):
        token_counts(tokens, "log_size_bin", 5)


def test_window_starts_cover_the_day_and_a_short_day_has_none():
    assert window_starts(1000, 256, 128).tolist() == [0, 128, 256, 384, 512, 640, 744]  # the tail window ends at 999
    assert window_starts(512, 256, 128).tolist() == [0, 128, 256]
    assert window_starts(255, 256, 128).tolist() == []


def test_sequences_map_back_to_event_rows_and_take_the_split_of_their_last_event():
    tokens = compute_token_bins(frame([float(v % 7) for v in range(600)]), fit_bins(frame([float(v) for v in range(7)]), BinEdges(bin_counts=ONE_FEATURE)))
    split = chronological_split(600)
    sequences = token_sequences(tokens, split, 256, 128)
    assert sequences["first_event_row"].to_list() == [0, 128, 256, 344]
    assert sequences["last_source_row"].to_list() == [256, 384, 512, 600]
    assert sequences["split"].to_list() == ["train", "validation", "test", "test"]  # rows 360+ validation, 480+ test
    array = sequence_array(tokens, sequences, ["log_size_bin"])
    assert array.shape == (4, 256, 1)
    assert np.array_equal(array[3, :, 0], tokens["log_size_bin"].to_numpy()[344:600])


def test_chronological_split_keeps_time_order():
    split = chronological_split(10, (0.6, 0.2, 0.2)).to_list()
    assert split == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    with pytest.raises(ValueError):
        chronological_split(10, (0.5, 0.5, 0.5))


def test_training_window_uses_earlier_days_only():
    days = {"2024-03-04": frame([1.0] * 5), "2024-03-05": frame([2.0] * 5), "2024-03-06": frame([99.0] * 5),
            "2024-03-07": frame([1000.0] * 5)}
    window = training_window(days, "2024-03-06", train_days=5, train_fraction=0.6)
    assert window.scope == PREVIOUS_DAYS and window.dates == ["2024-03-04", "2024-03-05"]
    assert sorted(set(window.rows["log_size"].to_list())) == [1.0, 2.0]  # neither the day itself nor a later one
    assert training_window(days, "2024-03-06", train_days=1, train_fraction=0.6).dates == ["2024-03-05"]
    assert window.split_of(5).to_list() == ["test"] * 5


def test_training_window_with_a_single_day_uses_the_first_part_of_it():
    day = frame([float(v) for v in range(10)])
    window = training_window({"2024-03-04": day, "2024-03-01": day.clear()}, "2024-03-04", train_days=5, train_fraction=0.6)
    assert window.scope == SAME_DAY_SPLIT and window.rows["log_size"].to_list() == [0, 1, 2, 3, 4, 5]
    assert window.split_of(10).to_list() == ["train"] * 6 + ["validation"] * 2 + ["test"] * 2


def test_seed_000_example_workflow_runs_as_written_on_a_real_lobster_day(data_dir):
    (data_dir / "lobster").mkdir()
    shutil.copy(require(AMZN_5), data_dir / "lobster")
    from lob_platform import BinEdges, compute_derived_features, compute_token_bins, fit_bins, load_messages, validate_messages

    # 1. Load data
    df = load_messages(product="AMZN", source="lobster", times=["120621.093000", "120621.160000"])
    # 2. Validate
    validate_messages(df, source="lobster")
    # 3. Compute features
    features = compute_derived_features(df, tick_size=0.01)
    # 4. Fit bins on training data
    bins = fit_bins(features, BinEdges())
    # 5. Discretize
    tokens = compute_token_bins(features, bins)

    assert df.height == features.height == tokens.height == 155_935
    assert all(token_counts(tokens, c, n).sum() == tokens.height for c, n in bins.vocabulary().items())  # none outside
    assert empty_bins(features, bins) == {}
    assert tokens["source_row"].to_list() == df["source_row"].to_list()
    assert min(bins.bins(f) for f in bins.edges) >= 5  # real data fills real bins


def test_window_plan_skips_failed_days_waits_for_pending_ones_and_stops_at_the_lookback():
    catalogue = ["2024-03-01", "2024-03-04", "2024-03-05"]
    status = {"2024-03-01": "passed", "2024-03-04": "failed", "2024-03-05": "passed"}
    plan = plan_training_window("2024-03-06", catalogue, status.get, train_days=2, lookback_days=14)
    assert (plan.scope, plan.dates, plan.excluded, plan.ready) == (PREVIOUS_DAYS, ("2024-03-01", "2024-03-05"), ("2024-03-04",), True)
    waiting = plan_training_window("2024-03-06", catalogue, {**status, "2024-03-04": "pending"}.get, 2, 14)
    assert (waiting.ready, waiting.waiting_for, waiting.dates) == (False, ("2024-03-04",), ())
    # a pending day older than the window needs does not hold it up
    older = plan_training_window("2024-03-06", catalogue, {**status, "2024-03-01": "pending", "2024-03-04": "passed"}.get, 2, 14)
    assert older.ready and older.dates == ("2024-03-04", "2024-03-05")
    # later days and days beyond the lookback never count: the day splits itself
    alone = plan_training_window("2024-03-20", catalogue + ["2024-03-21"], lambda day: "passed", 5, 14)
    assert (alone.scope, alone.dates) == (SAME_DAY_SPLIT, ("2024-03-20",))
