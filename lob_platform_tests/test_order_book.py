"""Books rebuilt from order-by-order messages (hand-computed books, the synthetic MIC and crypto
order feeds against the simulator's own book), and ``book_follows_messages`` on the real LOBSTER
days and on corrupted copies of them."""

from __future__ import annotations

import zipfile

import numpy as np
import polars as pl
import pytest

from lob_platform.core.columns import book_columns
from lob_platform.core.tables import MESSAGES
from lob_platform.features.order_book import rebuild_book, reproduction_share
from lob_platform.sources.lobster import pairs_in_archive, pairs_in_folder, read_lobster_pair
from lob_platform.sources.registry import load_venues
from lob_platform.sources.synthetic import (MarketConfig, generate_market, mic_simulated_book,
                                            order_feed_simulated_book)
from lob_platform.validation.report import check_rules, split_valid_rejected
from lob_platform_tests.conftest import AAPL_1, AMZN_1, AMZN_5, require

TICK = 0.01


def _events(*rows) -> pl.DataFrame:
    """(event_type, order_id, size, price, side) rows as unified messages, one ms apart."""
    frame = pl.DataFrame(rows, schema=["event_type", "order_id", "size", "price", "side"], orient="row")
    return frame.select(ts_ns=pl.int_range(1, pl.len() + 1) * 1_000_000, event_type="event_type", order_id="order_id",
                        size="size", price="price", side="side",
                        source_row=pl.int_range(2, pl.len() + 2, dtype=pl.UInt32)).cast(MESSAGES.dtypes(0))


def _levels(book: pl.DataFrame, row: int, side: str) -> list[tuple[float, float]]:
    """(price, size) of the occupied levels of one side on one row."""
    values = book.row(row, named=True)
    levels = len([c for c in book.columns if c.startswith(f"{side}_price_")])
    return [(values[f"{side}_price_{lv}"], values[f"{side}_size_{lv}"]) for lv in range(1, levels + 1)
            if values[f"{side}_price_{lv}"] is not None]


def test_submits_cancels_executions_and_deletes_by_hand():
    rebuilt = rebuild_book(_events(
        ("submit", 1, 5.0, 100.0, "bid"),  # an opening burst of creates is just submits
        ("submit", 2, 3.0, 100.0, "bid"),
        ("submit", 3, 4.0, 99.0, "bid"),
        ("submit", 4, 2.0, 101.0, "ask"),
        ("cancel", 1, 1.0, 100.0, "bid"),  # partial cancel
        ("execute_visible", 2, 3.0, 100.0, "bid"),  # fills order 2 completely
        ("execute_hidden", 0, 7.0, 100.5, "ask"),  # no visible change
        ("delete", 4, 2.0, 101.0, "ask"),
    ), levels=2)
    book = rebuilt.book
    assert book.columns == [*book_columns(2), "book_crossed"]
    assert _levels(book, 2, "bid") == [(100.0, 8.0), (99.0, 4.0)]
    assert _levels(book, 3, "ask") == [(101.0, 2.0)]
    assert _levels(book, 4, "bid") == [(100.0, 7.0), (99.0, 4.0)]
    assert _levels(book, 5, "bid") == [(100.0, 4.0), (99.0, 4.0)]
    assert book.row(6) == book.row(5)
    assert _levels(book, 7, "ask") == [] and book["ask_size_1"][7] == 0.0
    assert (rebuilt.unknown_order_rows, rebuilt.reused_order_rows, rebuilt.crossed_rows) == (0, 0, 0)


def test_modify_moves_price_and_shrinks_and_a_zero_delete_removes_a_filled_order():
    book = rebuild_book(_events(
        ("submit", 1, 5.0, 100.0, "bid"),
        ("submit", 2, 2.0, 99.0, "bid"),
        ("modify", 1, 5.0, 98.0, "bid"),  # price moves: the level goes with it
        ("modify", 2, 0.5, 99.0, "bid"),  # a fill reported as a modify to a smaller size
        ("delete", 2, 0.0, 99.0, "bid"),  # real feeds delete filled orders with size 0
        ("modify", 1, 0.0, 98.0, "bid"),  # a modify to nothing leaves the book
    ), levels=3).book
    assert _levels(book, 2, "bid") == [(99.0, 2.0), (98.0, 5.0)]
    assert _levels(book, 3, "bid") == [(99.0, 0.5), (98.0, 5.0)]
    assert _levels(book, 4, "bid") == [(98.0, 5.0)]
    assert _levels(book, 5, "bid") == []


def test_unknown_and_reused_order_ids_are_counted_with_their_rows_not_a_crash():
    rebuilt = rebuild_book(_events(
        ("submit", 1, 5.0, 100.0, "bid"),
        ("cancel", 9, 1.0, 100.0, "bid"),  # never submitted
        ("modify", 8, 3.0, 100.0, "bid"),
        ("submit", 1, 2.0, 100.5, "bid"),  # id 1 again: replaces the order
    ), levels=1)
    assert rebuilt.unknown_order_rows == 2 and rebuilt.first_rows["unknown_order"] == [3, 4]
    assert rebuilt.reused_order_rows == 1 and rebuilt.first_rows["reused_order"] == [5]
    assert _levels(rebuilt.book, 2, "bid") == [(100.0, 5.0)]  # unknown orders change nothing
    assert _levels(rebuilt.book, 3, "bid") == [(100.5, 2.0)]
    assert rebuilt.summary()["book_unknown_order_rows"] == 2


def test_a_crossed_book_is_flagged_and_kept_as_it_is():
    rebuilt = rebuild_book(_events(
        ("submit", 1, 1.0, 100.0, "bid"),
        ("submit", 2, 1.0, 101.0, "ask"),
        ("submit", 3, 2.0, 101.0, "bid"),  # arrives before the ask it crosses is gone
        ("delete", 2, 1.0, 101.0, "ask"),
    ), levels=1)
    assert rebuilt.book["book_crossed"].to_list() == [False, False, True, False]
    assert _levels(rebuilt.book, 2, "bid") == [(101.0, 2.0)] and _levels(rebuilt.book, 2, "ask") == [(101.0, 1.0)]
    assert rebuilt.crossed_rows == 1 and rebuilt.first_rows["crossed"] == [4]


def test_a_given_snapshot_seeds_the_book_and_anonymous_volume_can_be_taken_by_price():
    resting = pl.DataFrame({"order_id": [7, 0], "side": ["ask", "bid"], "price": [101.0, 100.0], "size": [3.0, 10.0]})
    rebuilt = rebuild_book(_events(
        ("execute_visible", 7, 1.0, 101.0, "ask"),  # a resting order named in the snapshot
        ("delete", 55, 4.0, 100.0, "bid"),  # an order inside the anonymous level
        ("submit", 2, 1.0, None, "bid"),  # a row without price changes nothing (validation names it)
    ), levels=1, resting=resting)
    assert rebuilt.book.height == 3
    assert _levels(rebuilt.book, 0, "ask") == [(101.0, 2.0)] and _levels(rebuilt.book, 0, "bid") == [(100.0, 10.0)]
    assert _levels(rebuilt.book, 1, "bid") == [(100.0, 6.0)]
    assert rebuilt.book.row(2) == rebuilt.book.row(1)
    assert rebuilt.unknown_order_rows == 1


def test_pruning_clears_levels_an_execution_or_a_submit_proves_gone_and_forgets_their_orders():
    events = _events(
        ("submit", 1, 1.0, 101.0, "ask"),  # its delete will be missing, as beyond a LOBSTER file's levels
        ("submit", 2, 2.0, 102.0, "ask"),
        ("execute_visible", 2, 1.0, 102.0, "ask"),  # a trade at 102: nothing rests at 101 any more
        ("submit", 3, 1.0, 99.0, "bid"),
        ("submit", 4, 1.0, 102.0, "bid"),  # a bid at 102 would have traded with an ask at 102
        ("delete", 1, 1.0, 101.0, "ask"),  # the pruned order is unknown now
    )
    assert _levels(rebuild_book(events, 2).book, 2, "ask") == [(101.0, 1.0), (102.0, 1.0)]  # as given, by default
    pruned = rebuild_book(events, 2, prune_passed_levels=True)
    assert _levels(pruned.book, 2, "ask") == [(102.0, 1.0)]
    assert _levels(pruned.book, 4, "ask") == [] and _levels(pruned.book, 4, "bid") == [(102.0, 1.0), (99.0, 1.0)]
    assert pruned.crossed_rows == 0 and pruned.first_rows["unknown_order"] == [7]


@pytest.fixture(scope="module")
def order_log_market(tmp_path_factory):
    root = tmp_path_factory.mktemp("order_logs")
    config = MarketConfig(n_days=1, lobster_tickers=(), crypto_pairs=(), mic_events_per_day=4_000, order_feed_events_per_day=4_000)
    generate_market(root, config)
    return root, config


@pytest.mark.parametrize(("venue_name", "instrument", "simulated_book"), [
    ("mic", "RIH4", mic_simulated_book), ("crypto_orders", "BTCUSD", order_feed_simulated_book)])
def test_synthetic_order_logs_replay_to_the_generators_own_book(order_log_market, venue_name, instrument, simulated_book):
    root, config = order_log_market
    venue = next(v for v in load_venues(root) if v.name == venue_name)
    assert venue.rebuilds_book
    day = venue.discover()[0]
    table, rebuilt = venue.with_book(day.read(), venue.tick_for(instrument))
    expected = simulated_book(instrument, day.date, config)
    replayed = table.tail(expected.height).select(expected.columns)  # the opening burst comes first
    assert np.abs(replayed.fill_null(-1.0).to_numpy() - expected.fill_null(-1.0).to_numpy()).max() <= 1e-9
    assert rebuilt.unknown_order_rows == 0 and rebuilt.crossed_rows == 0
    report = check_rules(table, venue.kind, venue.tick_for(instrument))
    assert report.passed, report.describe()
    assert "book_levels_consistent" in {r.rule for r in report.results}
    assert "book_not_crossed" not in {r.rule for r in report.results}  # flagged per row instead


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("size", 0.0, "positive_size"), ("price", 110_005.0, "price_on_tick_grid"), ("price", 9.2e18, "magnitudes_plausible"),
    ("price", float("nan"), "magnitudes_plausible")])
def test_a_corrupted_message_of_a_rebuilt_venue_is_rejected_alone_and_stays_out_of_the_book(order_log_market, field, value, rule):
    root, _ = order_log_market
    venue = next(v for v in load_venues(root) if v.name == "mic")
    raw = venue.discover()[0].read()
    row = int(raw.with_row_index().filter(pl.col("event_type") == "submit")["index"][200])
    corrupted = raw.with_columns(pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, pl.Float64))
                                 .otherwise(pl.col(field)).alias(field))
    table, rebuilt = venue.with_book(corrupted, venue.tick_for("RIH4"))
    valid, rejected, _ = split_valid_rejected(table, venue.kind, venue.tick_for("RIH4"), "RIH4.parquet")
    assert rejected["source_row"].to_list() == [raw["source_row"][row]] and rule in rejected["rules"][0]
    assert valid.height == raw.height - 1 and rebuilt.crossed_rows == 0
    # the bad submit never rested, so its later cancel or fill names an unknown order
    order_id = raw["order_id"][row]
    later = raw[row + 1:].filter(pl.col("order_id") == order_id)
    assert rebuilt.unknown_order_rows == later.height


def test_a_complete_log_reproduces_its_own_orderbook_file(tmp_path):
    generate_market(tmp_path, MarketConfig(n_days=1, lobster_tickers=("ACME",), lobster_levels=5, lobster_events_per_day=2_000,
                                           mic_products=(), order_feed_products=(), crypto_pairs=()))
    day = next(v for v in load_venues(tmp_path) if v.name == "lobster").discover()[0]
    assert reproduction_share(day.read()) == {"rows": day.read().height - 1, "level_1": 1.0, "every_level": 1.0}


# --------------------------------------------------------------------------- book_follows_messages


@pytest.mark.parametrize("archive", [AMZN_5, AMZN_1, AAPL_1], ids=["AMZN_5", "AMZN_1", "AAPL_1"])
def test_real_lobster_days_follow_their_messages(archive):
    frame = read_lobster_pair(pairs_in_archive(require(archive))[0])
    result = next(r for r in check_rules(frame, MESSAGES, TICK).results if r.rule == "book_follows_messages")
    assert result.violations == 0


@pytest.fixture(scope="module")
def amzn_lines(tmp_path_factory):
    """The AMZN 5-level day's message and orderbook lines, and the rows of submits that show in the book."""
    folder = tmp_path_factory.mktemp("amzn")
    with zipfile.ZipFile(require(AMZN_5)) as archive:
        archive.extractall(folder)
    frame = read_lobster_pair(pairs_in_folder(folder)[0])
    at_best = frame.filter((pl.col("event_type") == "submit") & (pl.col("source_row") > 1000) & (
        ((pl.col("side") == "bid") & (pl.col("price") == pl.col("bid_price_1")))
        | ((pl.col("side") == "ask") & (pl.col("price") == pl.col("ask_price_1")))))["source_row"].to_list()
    message, book = (next(folder.glob(f"*_{kind}_5.csv")) for kind in ("message", "orderbook"))
    return message, book, message.read_text().splitlines(keepends=True), book.read_text().splitlines(keepends=True), at_best


def _change_size(line: str) -> str:
    fields = line.split(",")
    fields[3] = fields[3][:-1] + str((int(fields[3][-1]) + 1) % 10)  # one digit
    return ",".join(fields)


def _submit_to_delete(line: str) -> str:
    fields = line.split(",")
    fields[1] = "3"
    return ",".join(fields)


def _book_size_plus_one(line: str) -> str:
    fields = line.rstrip("\n").split(",")
    fields[1] = str(int(fields[1]) + 1)  # ask size 1
    return ",".join(fields) + "\n"


def _corrupted(kind, lines, row):
    message, book = list(lines[0]), list(lines[1])
    if kind == "submit size digit":
        message[row - 1] = _change_size(message[row - 1])
    elif kind == "submit turned delete":
        message[row - 1] = _submit_to_delete(message[row - 1])
    elif kind == "line removed from both files":
        del message[row - 1], book[row - 1]
    elif kind == "orderbook size plus one":
        book[row - 1] = _book_size_plus_one(book[row - 1])
    elif kind == "orderbook rows swapped":
        book[row - 1], book[row] = book[row], book[row - 1]
    return message, book


@pytest.mark.parametrize("kind", ["submit size digit", "submit turned delete", "line removed from both files",
                                  "orderbook size plus one", "orderbook rows swapped"])
def test_corruptions_that_keep_every_row_plausible_break_book_follows_messages_at_their_row(amzn_lines, tmp_path, kind):
    message_path, book_path, message_lines, book_lines, at_best = amzn_lines
    row = at_best[10]  # a submit at the best price: the book shows what it did
    message, book = _corrupted(kind, (message_lines, book_lines), row)
    (tmp_path / message_path.name).write_text("".join(message))
    (tmp_path / book_path.name).write_text("".join(book))
    report = check_rules(read_lobster_pair(pairs_in_folder(tmp_path)[0]), MESSAGES, TICK)
    result = next(r for r in report.results if r.rule == "book_follows_messages")
    assert result.violations >= 1 and result.first_rows[0] == row, (kind, result)
    assert "rule 'book_follows_messages'" in report.describe() and f"source rows [{row}" in report.describe()


# --------------------------------------------------------------------------- through the Dagster graph


@pytest.mark.slow
def test_order_logs_get_a_book_features_and_labels_through_their_ingest_jobs(tmp_path, monkeypatch):
    import dagster as dg

    from lob_platform.defs import build_definitions
    from lob_platform.main_job import register_instruments
    from lob_platform.sources.catalog import discover
    from lob_platform_tests.helpers import day, warehouse_table

    monkeypatch.setenv("LOB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOB_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    monkeypatch.setenv("LOB_MODEL_FAMILIES", "")  # the book, features and labels; models are the training layer's tests
    monkeypatch.setenv("LOB_BACKTESTS", "0")
    generate_market(tmp_path / "data", MarketConfig(n_days=1, lobster_tickers=(), crypto_pairs=(), mic_events_per_day=3_000,
                                                    order_feed_events_per_day=3_000))
    monday = MarketConfig().start_date
    with dg.instance_for_test() as instance:
        register_instruments(instance, discover())
        defs = build_definitions(load_venues())
        for venue, instrument in (("mic", "RIH4"), ("crypto_orders", "BTCUSD")):
            result = defs.resolve_job_def(f"ingest_{venue}").execute_in_process(
                partition_key=day(monday, instrument), instance=instance, raise_on_error=False)
            assert result.success, venue
            metadata = result.asset_materializations_for_node(f"{venue}_validate")[0].metadata
            assert metadata["book_unknown_order_rows"].value == 0 and metadata["book_crossed_rows"].value == 0
            validated = warehouse_table("validated_messages", monday, venue, instrument)
            assert {"bid_price_10", "ask_size_10", "book_crossed"} <= set(validated.columns)
            features = warehouse_table("features", monday, venue, instrument)
            assert features["mid"].null_count() < features.height // 100  # one-sided only during the opening burst
            labels = warehouse_table("labels", monday, venue, instrument)
            assert labels.height == features.height and labels["label_move_50ev"].drop_nulls().n_unique() == 3
