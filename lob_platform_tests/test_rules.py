"""Every validation rule and its pandera check: one table that passes, one that breaks exactly
that rule; and the quarantine split that keeps every row."""

from __future__ import annotations

import pandera.errors
import polars as pl
import pytest

from lob_platform.core.tables import MESSAGES, SNAPSHOTS
from lob_platform.validation.report import check_rules, split_valid_rejected
from lob_platform.validation.rules import MESSAGE_RULES, SNAPSHOT_RULES
from lob_platform.validation.schemas import rejected_schema, table_schema
from lob_platform_tests.helpers import messages, snapshots

TICK = 0.01


def _set(frame: pl.DataFrame, row: int, **values) -> pl.DataFrame:
    index = pl.int_range(pl.len()) == row
    return frame.with_columns(
        [pl.when(index).then(pl.lit(v, dtype=frame.schema[k])).otherwise(pl.col(k)).alias(k) for k, v in values.items()]
    )


MESSAGE_BREAKS = {
    "no_nulls": lambda f: _set(f, 1, size=None),
    "known_codes": lambda f: _set(f, 1, event_type=None),
    "timestamps_sorted": lambda f: _set(f, 4, ts_ns=1500),
    "positive_size": lambda f: _set(f, 1, size=0.0),
    "price_on_tick_grid": lambda f: _set(f, 4, price=9.995),
    "order_id_not_negative": lambda f: _set(f, 1, order_id=-2),
    "magnitudes_plausible": lambda f: _set(f, 2, size=9.2e18),
    "book_not_crossed": lambda f: _set(f, 2, ask_price_1=10.00),
    "book_levels_consistent": lambda f: _set(f, 2, ask_price_2=10.01),
    "book_sizes_positive": lambda f: _set(f, 2, ask_size_2=0.0),
    "book_prices_on_tick_grid": lambda f: _set(f, 2, ask_price_2=10.025),
    "book_matches_message": lambda f: _set(f, 0, bid_price_1=9.99, bid_price_2=9.98),
    "book_follows_messages": lambda f: _set(f, 1, size=60.0),
    "no_duplicate_rows": lambda f: pl.concat([f, f.tail(1).with_columns(source_row=pl.lit(6, pl.UInt32))]),
}
SNAPSHOT_BREAKS = {
    "no_nulls": lambda f: _set(f, 1, local_ts_ns=None),
    "timestamps_sorted": lambda f: _set(f, 2, ts_ns=1_500),
    "positive_size": lambda f: _set(f, 1, ask_size_1=0.0),
    "price_on_tick_grid": lambda f: _set(f, 1, ask_price_2=100.035),
    "book_not_crossed": lambda f: _set(f, 0, bid_price_1=100.01),
    "book_levels_consistent": lambda f: _set(f, 0, bid_price_2=100.01),
    "no_duplicate_rows": lambda f: pl.concat([f, f.tail(1)]),
}


# A book row changed without a message, or a message changed or repeated under its book row, also
# breaks book_follows_messages.
FOLLOWS_TOO = {"book_not_crossed", "book_levels_consistent", "book_matches_message", "book_sizes_positive",
               "book_prices_on_tick_grid", "positive_size",
               "price_on_tick_grid", "no_duplicate_rows"}


def test_every_rule_has_a_breaking_case():
    assert set(MESSAGE_BREAKS) == {r.name for r in MESSAGE_RULES}
    assert set(SNAPSHOT_BREAKS) == {r.name for r in SNAPSHOT_RULES}


def test_consistent_tables_pass_rules_and_pandera():
    assert check_rules(messages(), MESSAGES, TICK).passed
    assert check_rules(snapshots(), SNAPSHOTS, TICK).passed
    table_schema(MESSAGES, 2, TICK).validate(messages(), lazy=True)
    table_schema(SNAPSHOTS, 2, TICK).validate(snapshots(), lazy=True)


def _failed_pandera_checks(schema, frame) -> set[str]:
    with pytest.raises(pandera.errors.SchemaErrors) as error:
        schema.validate(frame, lazy=True)
    return set(error.value.failure_cases["check"].to_list())


@pytest.mark.parametrize(
    ("table", "rule"), [(MESSAGES, rule) for rule in MESSAGE_BREAKS] + [(SNAPSHOTS, rule) for rule in SNAPSHOT_BREAKS]
)
def test_rule_fails_only_on_its_own_breakage(table, rule):
    consistent, breaks = (messages(), MESSAGE_BREAKS) if table is MESSAGES else (snapshots(), SNAPSHOT_BREAKS)
    broken = breaks[rule](consistent)
    also = ["book_follows_messages"] if table is MESSAGES and rule in FOLLOWS_TOO else []
    assert sorted(r.rule for r in check_rules(broken, table, TICK).failures()) == sorted([rule, *also])
    if rule == "book_follows_messages":  # judged on the raw partition only (see validation.schemas)
        assert rule not in {check.name for check in table_schema(table, 2, TICK).checks}
    else:
        assert rule in _failed_pandera_checks(table_schema(table, 2, TICK), broken)


def test_pandera_rejects_wrong_dtypes_and_extra_columns():
    wrong_dtype = messages().with_columns(pl.col("size").cast(pl.Int64))
    assert "dtype('Float64')" in _failed_pandera_checks(table_schema(MESSAGES, 2, TICK), wrong_dtype)
    extra = messages().with_columns(surprise=pl.lit(1))
    assert "column_in_schema" in _failed_pandera_checks(table_schema(MESSAGES, 2, TICK), extra)


def test_hidden_fill_may_sit_on_the_half_tick_but_not_off_it():
    assert check_rules(messages(), MESSAGES, TICK).passed  # 10.005 hidden fills above
    off = _set(messages(), 2, price=10.0025)
    assert [r.rule for r in check_rules(off, MESSAGES, TICK).failures()] == ["price_on_tick_grid"]


def test_tick_rule_is_skipped_without_a_tick():
    broken = MESSAGE_BREAKS["price_on_tick_grid"](messages())
    assert "price_on_tick_grid" not in {r.rule for r in check_rules(broken, MESSAGES, None).results}


def test_message_only_tables_skip_book_rules():
    bare = messages().select("ts_ns", "event_type", "order_id", "size", "price", "side", "source_row")
    names = {r.rule for r in check_rules(bare, MESSAGES, TICK).results}
    assert not names & {"book_not_crossed", "book_follows_messages", "book_levels_consistent", "book_matches_message", "book_sizes_positive",
                        "book_prices_on_tick_grid"}
    assert "timestamps_sorted" in names


def test_split_keeps_every_row_and_says_why():
    broken = MESSAGE_BREAKS["positive_size"](MESSAGE_BREAKS["timestamps_sorted"](messages()))
    valid, rejected, report = split_valid_rejected(broken, MESSAGES, TICK, "day.csv")
    assert valid.height + rejected.height == broken.height
    assert rejected.select("rules", "source_file", "source_row").rows() == [
        ("positive_size,book_follows_messages", "day.csv", 2), ("timestamps_sorted", "day.csv", 5)]
    assert sorted(valid["source_row"].to_list() + rejected["source_row"].to_list()) == [1, 2, 3, 4, 5]
    assert {r.rule: r.violations for r in report.failures()} == {"positive_size": 1, "timestamps_sorted": 1,
                                                                 "book_follows_messages": 1}


def test_row_breaking_two_rules_lists_both():
    broken = _set(messages(), 2, size=0.0, price=10.0025)
    _, rejected, _ = split_valid_rejected(broken, MESSAGES, TICK, "day.csv")
    assert rejected["rules"].to_list() == ["positive_size,price_on_tick_grid"]


def test_clean_split_has_empty_rejected_table_with_its_columns():
    valid, rejected, _ = split_valid_rejected(messages(), MESSAGES, TICK, "day.csv")
    assert valid.equals(messages())
    assert rejected.height == 0 and rejected.columns[:3] == ["rules", "source_file", "source_row"]


def test_rejected_schema_accepts_quarantine_rows_and_refuses_unknown_rules():
    broken = MESSAGE_BREAKS["positive_size"](messages())
    _, rejected, _ = split_valid_rejected(broken, MESSAGES, TICK, "day.csv")
    rejected_schema(MESSAGES, 2).validate(rejected, lazy=True)
    renamed = rejected.with_columns(rules=pl.lit("positive_size,made_up_rule"))
    assert "known_rule_names" in _failed_pandera_checks(rejected_schema(MESSAGES, 2), renamed)
    assert "column_in_dataframe" in _failed_pandera_checks(rejected_schema(MESSAGES, 2), rejected.drop("source_file"))


def test_raw_schema_checks_dtypes_but_not_rules():
    broken = MESSAGE_BREAKS["timestamps_sorted"](messages())
    table_schema(MESSAGES, 2, TICK, with_rules=False).validate(broken, lazy=True)
    wrong = messages().with_columns(pl.col("ts_ns").cast(pl.Float64))
    assert "dtype('Int64')" in _failed_pandera_checks(table_schema(MESSAGES, 2, TICK, with_rules=False), wrong)


def test_sortedness_flags_the_row_that_jumped_not_its_neighbour():
    jumped = _set(messages(), 1, ts_ns=2500)  # row 2 jumps ahead of rows 3 and 4
    valid, rejected, _ = split_valid_rejected(jumped, MESSAGES, TICK, "day.csv")
    assert rejected["source_row"].to_list() == [2]
    # what is left is sorted; its book no longer follows the messages (the quarantined submit is
    # missing), which is why book_follows_messages judges the raw partition, not the stored rows
    assert [r.rule for r in check_rules(valid, MESSAGES, TICK).failures()] == ["book_follows_messages"]
    table_schema(MESSAGES, 2, TICK).validate(valid, lazy=True)


def test_after_the_split_the_valid_rows_pass_every_rule():
    broken = messages()
    for rule in ("timestamps_sorted", "positive_size", "book_not_crossed", "no_duplicate_rows"):
        broken = MESSAGE_BREAKS[rule](broken)
    valid, rejected, _ = split_valid_rejected(broken, MESSAGES, TICK, "day.csv")
    assert check_rules(valid, MESSAGES, TICK).passed
    table_schema(MESSAGES, 2, TICK).validate(valid, lazy=True)


def test_a_table_off_the_unified_schema_is_refused_not_quarantined():
    from lob_platform.errors import ValidationError

    with pytest.raises(ValidationError, match="does not match the unified schema.*'size'"):
        check_rules(messages().with_columns(pl.col("size").cast(pl.Int64)), MESSAGES, TICK)


def test_a_zero_size_delete_is_valid_only_where_the_venue_ships_no_book():
    zero_delete = _set(messages(), 4, size=0.0)  # row 4 deletes order 1
    shipped = {r.rule for r in check_rules(zero_delete, MESSAGES, TICK).failures()}
    assert "positive_size" in shipped  # LOBSTER deletes carry the size deleted
    bare = zero_delete.select("ts_ns", "event_type", "order_id", "size", "price", "side", "source_row")
    assert check_rules(bare, MESSAGES, TICK).passed  # order-by-order feeds delete filled orders with 0
