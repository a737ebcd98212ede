"""Corrupted copies of a real LOBSTER day that once slipped through the reader and the rules:
each now gets the project's error, naming the file and line (reader) or the rule and first
source row (validation)."""

from __future__ import annotations

import zipfile

import polars as pl
import pytest

from lob_platform import load_messages
from lob_platform.core.tables import MESSAGES
from lob_platform.errors import MalformedFileError
from lob_platform.sources.lobster import pairs_in_folder, read_lobster_pair
from lob_platform.validation.report import check_rules
from lob_platform_tests.conftest import AMZN_5, require
from lob_platform_tests.helpers import corrupt, replace_line

FULL_DAY = ["120621.093000", "120621.160000"]
MESSAGE_FILE = "AMZN_2012-06-21_34200000_57600000_message_1.csv"
LINE = 20_015  # an execute_visible row of the AMZN 1-level day: 41734.650065584,4,120576800,100,2237600,1


def _set_field(index: int, value: str):
    def edit(line: str) -> str:
        fields = line.rstrip("\n").split(",")
        fields[index] = value
        return ",".join(fields) + "\n"

    return replace_line(LINE, edit)


def _load_error(amzn_csv_pair, data_dir, message_edit=None, book_edit=None) -> str:
    corrupt(amzn_csv_pair, data_dir, message_edit, book_edit)
    with pytest.raises(MalformedFileError) as error:
        load_messages("AMZN", "lobster", FULL_DAY, data_dir=data_dir)
    return str(error.value)


def _failures(amzn_csv_pair, data_dir, message_edit=None, book_edit=None) -> dict[str, list[int]]:
    corrupt(amzn_csv_pair, data_dir, message_edit, book_edit)
    frame = load_messages("AMZN", "lobster", FULL_DAY, data_dir=data_dir)
    assert frame.height == 57_515  # no row dropped
    return {result.rule: result.first_rows for result in check_rules(frame, MESSAGES, 0.01).failures()}


@pytest.mark.parametrize(("time", "shown"), [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("1e30", "1e+30")])
def test_a_time_that_is_no_number_of_seconds_names_file_and_line(amzn_csv_pair, data_dir, time, shown):
    text = _load_error(amzn_csv_pair, data_dir, message_edit=_set_field(0, time))
    assert MESSAGE_FILE in text and f"line {LINE} has time {shown}" in text


@pytest.mark.parametrize("time", ["30000.5", "-41734.65", "86400000.0"])  # 08:20, negative, 1000 days
def test_a_time_outside_the_files_window_is_refused_not_filtered(amzn_csv_pair, data_dir, time):
    text = _load_error(amzn_csv_pair, data_dir, message_edit=_set_field(0, time))
    assert MESSAGE_FILE in text and f"line {LINE} has time" in text
    assert "outside the file's time window 34200-57600 s after midnight (09:30:00-16:00:00" in text
    with pytest.raises(MalformedFileError, match=f"line {LINE} has time"):  # a narrower request does not hide it
        load_messages("AMZN", "lobster", ["120621.100000", "120621.110000"], data_dir=data_dir)


def test_a_window_beyond_one_day_in_the_names_is_refused(amzn_csv_pair):
    for path in amzn_csv_pair:
        path.rename(path.with_name(path.name.replace("_57600000_", "_99999999999_")))
    with pytest.raises(MalformedFileError, match=r"time window 34200000_99999999999 in the name of "
                                                 r"AMZN_2012-06-21_34200000_99999999999_(message|orderbook)_1.csv"):
        read_lobster_pair(pairs_in_folder(amzn_csv_pair[0].parent)[0])


@pytest.mark.parametrize(("tst", "problem"), [
    (1_340_337_600_000_000_000, "outside the file's own day 2012-06-21"),  # 2012-06-22 04:00 UTC: midnight in New York
    (float("nan"), "value(s) that are no time"),
])
def test_converted_parquet_row_outside_its_day_or_without_a_time_names_the_row(amzn_csv_pair, data_dir, tst, problem):
    messages = pl.read_csv(amzn_csv_pair[0], has_header=False, new_columns=["s", "event_code", "order_id", "vol", "prc", "direction"])
    new_york_midnight_ns = 1_340_251_200 * 10**9
    converted = messages.select(pl.exclude("s"), tst=(pl.col("s") * 1e9).round().cast(pl.Int64) + new_york_midnight_ns)
    if isinstance(tst, float):
        converted = converted.with_columns(pl.col("tst").cast(pl.Float64))
    converted = converted.with_columns(tst=pl.when(pl.int_range(pl.len()) == LINE - 1).then(tst).otherwise("tst"))
    path = data_dir / "lobster" / "AMZN_2012-06-21_messages.parquet"
    path.parent.mkdir()
    converted.write_parquet(path)
    with pytest.raises(MalformedFileError) as error:
        load_messages("AMZN", "lobster", FULL_DAY, data_dir=data_dir)
    assert str(path) in str(error.value) and f"row {LINE} " in str(error.value) and problem in str(error.value)


@pytest.mark.parametrize(("book_row", "rules"), [
    ("2238700,0,2237500,400", {"book_sizes_positive"}),  # an occupied level without size
    ("2238700,-100,2237500,400", {"book_sizes_positive"}),
    ("2238701,100,2237500,400", {"book_prices_on_tick_grid"}),  # $223.8701: off the cent grid
    ("2238700,100,-2237500,400", {"book_prices_on_tick_grid"}),  # a negative price
    ("9999999998,0,2237500,400", {"book_prices_on_tick_grid", "book_sizes_positive"}),  # empty-level marker typo
])
def test_a_corrupted_book_level_fails_its_rule_at_its_row(amzn_csv_pair, data_dir, book_row, rules):
    failures = _failures(amzn_csv_pair, data_dir, book_edit=replace_line(LINE, lambda line: book_row + "\n"))
    assert {rule: failures.get(rule) for rule in rules} == {rule: [LINE] for rule in rules}


@pytest.mark.parametrize(("field", "value", "rule"), [
    (4, "9200000000000000000", "magnitudes_plausible"),  # price 9.2e18 / 10^4 dollars
    (3, "9200000000000000000", "magnitudes_plausible"),  # size 9.2e18 shares
    (2, "-120576800", "order_id_not_negative"),
])
def test_an_absurd_magnitude_or_negative_order_id_fails_its_rule(amzn_csv_pair, data_dir, field, value, rule):
    failures = _failures(amzn_csv_pair, data_dir, message_edit=_set_field(field, value))
    assert failures.get(rule) == [LINE]


def _with_depth(book_line: str, depth: int) -> str:
    """A 5-level orderbook row cut to ``depth`` levels, or given one more, empty level."""
    fields = book_line.split(",") + ["9999999999", "0", "-9999999999", "0"]
    return ",".join(fields[: 4 * depth])


@pytest.mark.parametrize("depth", [4, 6])
def test_an_orderbook_deeper_or_shallower_than_its_name_is_refused(tmp_path, depth):
    with zipfile.ZipFile(require(AMZN_5)) as archive:
        for name in archive.namelist():
            if name.endswith(".csv"):
                lines = archive.read(name).decode().splitlines()[:1000]
                if "_orderbook_" in name:
                    lines = [_with_depth(line, depth) for line in lines]
                (tmp_path / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedFileError) as error:
        read_lobster_pair(pairs_in_folder(tmp_path)[0])
    text = str(error.value)
    assert "AMZN_2012-06-21_34200000_57600000_orderbook_5.csv: line 1" in text
    assert f"({depth} levels) but the file name says 5 levels" in text


@pytest.mark.parametrize(("field", "value", "column"), [
    (3, "1_000", "size"),
    (3, "١٢٣", "size"),  # Arabic-Indic digits
    (3, "123 ", "size"),
    (0, "41734.650065584 ", "time_s"),
    (0, "٤١٧٣٤.٦٥", "time_s"),
])
def test_a_number_python_reads_but_the_parser_does_not_names_line_and_column(amzn_csv_pair, data_dir, field, value, column):
    text = _load_error(amzn_csv_pair, data_dir, message_edit=_set_field(field, value))
    assert MESSAGE_FILE in text and f"line {LINE}: column {column!r} = {value!r} is not a" in text
    assert "ignore_errors" not in text
