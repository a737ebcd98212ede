"""The main job end to end on real sample days and the synthetic market: ingest, catalogue,
summary, a failing day reported by name (the project's own message) without stopping the others,
and runs a killed main job left "started"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dagster as dg

from lob_platform.cli import main
from lob_platform.deploy.pools import GPU_POOL
from lob_platform.main_job import HOST_TAG, PID_TAG, fail_abandoned_runs
from lob_platform.sources.synthetic import MarketConfig, generate_market
from lob_platform_tests.conftest import CRYPTO_SAMPLES, require
from lob_platform_tests.helpers import corrupt, negate_size, replace_line

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("LOB_MODEL_FAMILIES", "")  # these tests are about ingest; the first one trains a family
    monkeypatch.setenv("LOB_BACKTESTS", "0")  # ... and backtests it
    return tmp_path / "dagster_home"


def _add_crypto_sample(data_dir):
    (data_dir / "crypto").mkdir()
    shutil.copy(require(CRYPTO_SAMPLES / "tardis_binance-futures_book_snapshot_5_BTCUSDT.csv"),
                data_dir / "crypto" / "binance_perp_book_snapshot_5_2020-09-01_BTCUSDT.csv")


def test_main_job_ingests_every_day_trains_and_answers_sql(amzn_day_dir, home, capsys, monkeypatch):
    monkeypatch.setenv("LOB_MODEL_FAMILIES", "lightgbm")
    monkeypatch.setenv("LOB_BACKTESTS", "1")
    _add_crypto_sample(amzn_day_dir)
    assert main(["run"]) == 0
    printed = capsys.readouterr().out
    assert "crypto binance_perp.BTCUSDT 2020-09-01 ingest: ok" in printed
    assert "lobster\tAMZN\t1\t57515" in printed
    table = printed.split("model_metrics:")[1].splitlines()  # the out-of-sample table, a row per label
    assert [line.split("\t")[4] for line in table[2:7]] == ["move_100ev", "move_10ev", "move_20ev", "move_50ev", "next_mid_up"]
    assert all(line.startswith("  lightgbm\tlobster\tAMZN\t2012-06-21") for line in table[2:7])
    backtests = printed.split("backtests (")[1].splitlines()  # the real day's backtests, a row per model and label
    assert [tuple(line.split("\t")[1:3]) for line in backtests[2:8]] == [("lightgbm", "AMZN")] * 5 + [("market_making", "AMZN")]
    report = Path(backtests[-1].removeprefix("report:").strip())
    assert report.is_file() and "lightgbm/index.html" in report.read_text()
    assert (report.parent / "lobster" / "AMZN" / "2012-06-21" / "market_making" / "inventory.png").is_file()
    assert (home / "dagster.yaml").exists()
    assert main(["sql", "select venue, count(*) from validated_depth_snapshots group by all"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "crypto\t10"
    with pytest.raises(Exception, match="no_such_table"):  # an SQL error is reported, not swallowed
        main(["sql", "select * from no_such_table"])


def test_main_job_reports_a_blocked_day_and_still_ingests_the_rest(amzn_csv_pair, data_dir, home, capsys):
    _add_crypto_sample(data_dir)
    corrupt(amzn_csv_pair, data_dir, message_edit=replace_line(777, negate_size))
    assert main(["run"]) == 1
    printed = capsys.readouterr().out
    assert "crypto binance_perp.BTCUSDT 2020-09-01 ingest: ok" in printed
    assert "FAILED lobster AMZN 2012-06-21" in printed and "positive_size: 1 rows" in printed
    main(["sql", "select rules, source_row from rejected_messages"])
    # a negative size no longer matches what the orderbook row shows either
    assert capsys.readouterr().out.splitlines()[1:] == ["positive_size,book_follows_messages\t777"]
    main(["sql", "select passed, failed_checks, rejected_by_positive_size from validation_reports where venue = 'lobster'"])
    assert capsys.readouterr().out.splitlines()[1:] == ["False\tpositive_size,book_follows_messages\t1"]
    main(["sql", "select (select count(*) from validated_messages), (select count(*) from all_validated_messages)"])
    assert capsys.readouterr().out.splitlines()[1:] == ["0\t57514"]  # blocked day: kept, not shown as validated


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
    assert "crypto binance_perp.BTCUSDT 2020-09-01 ingest: ok" in printed
    assert "FAILED lobster AMZN 2012-06-21" in printed and "orderbook file for AMZN 2012-06-21 (1 levels) is missing" in printed


def test_a_malformed_field_is_reported_with_the_projects_message_not_the_parsers(data_dir, home, tmp_path, capsys):
    paths = generate_market(tmp_path / "generated", MarketConfig(n_days=1, lobster_tickers=("ACME",), lobster_levels=2,
                                                                 lobster_events_per_day=500, mic_products=(), order_feed_products=(), crypto_pairs=()))
    pair = (next(p for p in paths if "_message_" in p.name), next(p for p in paths if "_orderbook_" in p.name))

    def letter_in_size(line):
        fields = line.split(",")
        fields[3] = fields[3] + "x"
        return ",".join(fields)

    corrupt(pair, data_dir, message_edit=replace_line(7, letter_in_size))
    assert main(["run"]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "FAILED lobster ACME 2024-03-04" in failed[0]
    assert "message_2.csv: cannot be read; line 7: column 'size'" in failed[0] and "is not a whole number" in failed[0]


def test_runs_a_killed_main_job_left_started_are_marked_failed_with_the_reason_and_free_their_pool_slots():
    import os
    import socket

    with dg.instance_for_test() as instance:
        here = {HOST_TAG: socket.gethostname()}
        killed = dg.DagsterRun(job_name="ingest_lobster", status=dg.DagsterRunStatus.STARTED, tags={**here, PID_TAG: "999999999"})
        alive = dg.DagsterRun(job_name="ingest_lobster", status=dg.DagsterRunStatus.STARTED, tags={**here, PID_TAG: str(os.getpid())})
        storage = instance.event_log_storage
        storage.set_concurrency_slots(GPU_POOL, 2)
        for run in (killed, alive):
            instance.add_run(run)
            storage.claim_concurrency_slot(GPU_POOL, run.run_id, "train")  # each was training when the job died
        assert fail_abandoned_runs(instance) == [killed.run_id]
        assert {slot.run_id for slot in storage.get_concurrency_info(GPU_POOL).claimed_slots} == {alive.run_id}
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        (failure,) = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert "pid 999999999" in failure.message and "killed or crashed" in failure.message
