"""The main job end to end on real sample days: ingest, catalogue, summary, and a failing day
reported by name without stopping the others."""

from __future__ import annotations

import shutil

import pytest

from lob_platform.cli import main
from lob_platform_tests.conftest import CRYPTO_SAMPLES, require
from lob_platform_tests.helpers import corrupt, negate_size, replace_line


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path / "dagster_home"


def _add_crypto_sample(data_dir):
    (data_dir / "crypto").mkdir()
    shutil.copy(require(CRYPTO_SAMPLES / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv"),
                data_dir / "crypto" / "binance_perp_book_snapshot_5_2020-09-01_BTCUSDT.csv")


def test_main_job_ingests_every_day_and_answers_sql(amzn_day_dir, home, capsys):
    _add_crypto_sample(amzn_day_dir)
    assert main(["run"]) == 0
    printed = capsys.readouterr().out
    assert "[1/2] crypto binance_perp.BTCUSDT 2020-09-01: ok" in printed
    assert "lobster\tAMZN\t1\t57515" in printed
    assert (home / "dagster.yaml").exists()
    assert main(["sql", "select venue, count(*) from validated_depth_snapshots group by all"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "crypto\t10"


def test_main_job_reports_a_blocked_day_and_still_ingests_the_rest(amzn_csv_pair, data_dir, home, capsys):
    _add_crypto_sample(data_dir)
    corrupt(amzn_csv_pair, data_dir, message_edit=replace_line(777, negate_size))
    assert main(["run"]) == 1
    printed = capsys.readouterr().out
    assert "crypto binance_perp.BTCUSDT 2020-09-01: ok" in printed
    assert "FAILED lobster AMZN 2012-06-21" in printed and "positive_size: 1 rows" in printed
    main(["sql", "select rules, source_row from rejected_messages"])
    assert capsys.readouterr().out.splitlines()[1:] == ["positive_size\t777"]
    main(["sql", "select passed, failed_checks, rejected_by_positive_size from validation_reports where venue = 'lobster'"])
    assert capsys.readouterr().out.splitlines()[1:] == ["False\tpositive_size\t1"]
    main(["sql", "select (select count(*) from validated_messages), (select count(*) from all_validated_messages)"])
    assert capsys.readouterr().out.splitlines()[1:] == ["0\t57514"]  # blocked day: kept, not shown as validated


def test_sql_error_is_reported_not_swallowed(amzn_day_dir, home):
    main(["run"])
    with pytest.raises(Exception, match="no_such_table"):
        main(["sql", "select * from no_such_table"])


def test_main_job_names_unreadable_and_out_of_range_days(amzn_csv_pair, data_dir, home, capsys):
    (data_dir / "lobster").mkdir()
    shutil.copy(amzn_csv_pair[0], data_dir / "lobster")  # a message file without its orderbook
    old = data_dir / "lobster" / "OLD_1999-06-21_34200000_57600000_message_1.csv"
    old.write_text("34200.1,1,11,100,1000000,1\n")
    old.with_name(old.name.replace("message", "orderbook")).write_text("1000100,50,1000000,100\n")
    _add_crypto_sample(data_dir)
    assert main(["run"]) == 1
    printed = capsys.readouterr().out
    assert "not ingested: " in printed and "OLD_1999-06-21" in printed and "outside the partitions" in printed
    assert "crypto binance_perp.BTCUSDT 2020-09-01: ok" in printed
    assert "FAILED lobster AMZN 2012-06-21" in printed and "orderbook file for AMZN 2012-06-21 (1 levels) is missing" in printed
