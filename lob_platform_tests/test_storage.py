"""Warehouse storage: hive paths, atomic and idempotent writes, DuckDB views over partitions."""

from __future__ import annotations

import polars as pl
import pytest

from lob_platform.storage import partition_path, write_partition
from lob_platform.warehouse import query, refresh_views


def frame(n: int, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"ts_ns": list(range(offset, offset + n)), "price": [1.5] * n})


def test_hive_path(tmp_path):
    path = partition_path(tmp_path, "validated_messages", {"venue": "lobster", "instrument": "AMZN", "date": "2012-06-21"})
    assert path == tmp_path / "validated_messages/venue=lobster/instrument=AMZN/date=2012-06-21/part-0.parquet"


def test_rewrite_replaces_the_partition_and_is_byte_identical(tmp_path):
    path = partition_path(tmp_path, "t", {"date": "2024-03-04"})
    write_partition(frame(100), path)
    first = path.read_bytes()
    write_partition(frame(100), path)
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"]
    assert pl.read_parquet(path).height == 100
    assert path.stat().st_mode & 0o777 == 0o644  # readable by every analyst, not only the writer


def test_crash_mid_write_keeps_the_previous_partition(tmp_path, monkeypatch):
    path = partition_path(tmp_path, "t", {"date": "2024-03-04"})
    write_partition(frame(100), path)
    before = path.read_bytes()

    def crash(self, file, **kwargs):
        file.write(b"PAR1 half a file")  # the parquet is serialised in memory, then written in one go
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(OSError, match="disk full"):
        write_partition(frame(5), path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"]  # no temporary left


def test_duckdb_views_union_partitions_with_hive_columns(tmp_path):
    write_partition(frame(3), partition_path(tmp_path, "validated_messages", {"venue": "lobster", "instrument": "A", "date": "2024-03-04"}))
    write_partition(frame(2).with_columns(extra=pl.lit(1)),
                    partition_path(tmp_path, "validated_messages", {"venue": "mic", "instrument": "B", "date": "2024-03-05"}))
    counts = refresh_views(tmp_path)
    assert counts == {"validated_messages": 5}
    columns, rows = query(tmp_path, "select venue, instrument, cast(date as varchar), count(*), count(extra) "
                                    "from validated_messages group by all order by all")
    assert rows == [("lobster", "A", "2024-03-04", 3, 0), ("mic", "B", "2024-03-05", 2, 2)]


def test_views_of_removed_tables_are_dropped(tmp_path):
    path = partition_path(tmp_path, "old_table", {"date": "2024-03-04"})
    write_partition(frame(1), path)
    refresh_views(tmp_path)
    path.unlink()
    assert refresh_views(tmp_path) == {}
    _, rows = query(tmp_path, "select count(*) from duckdb_views() where not internal")
    assert rows == [(0,)]


def test_validated_view_shows_only_partitions_whose_checks_passed(tmp_path):
    for date, passed in (("2024-03-04", True), ("2024-03-05", False)):
        keys = {"venue": "lobster", "instrument": "A", "date": date}
        write_partition(frame(3), partition_path(tmp_path, "validated_messages", keys))
        write_partition(pl.DataFrame({"passed": [passed]}), partition_path(tmp_path, "validation_reports", keys))
    counts = refresh_views(tmp_path)
    assert counts["validated_messages"] == 3 and counts["all_validated_messages"] == 6
    _, rows = query(tmp_path, "select distinct cast(date as varchar) from validated_messages")
    assert rows == [("2024-03-04",)]


def test_query_before_any_run_says_what_to_do(tmp_path):
    from lob_platform.errors import ConfigError

    with pytest.raises(ConfigError, match="run `python -m lob_platform run` first"):
        query(tmp_path, "select 1")


def test_numeric_instrument_names_stay_text_so_views_join(tmp_path):
    for instrument in ("1234", "binance.BTCUSDT"):
        keys = {"venue": "v", "instrument": instrument, "date": "2024-03-04"}
        write_partition(frame(2), partition_path(tmp_path, "validated_messages", keys))
        write_partition(pl.DataFrame({"passed": [True]}), partition_path(tmp_path, "validation_reports", keys))
    assert refresh_views(tmp_path)["validated_messages"] == 4
    _, rows = query(tmp_path, "select typeof(instrument), typeof(date) from validated_messages limit 1")
    assert rows == [("VARCHAR", "DATE")]


def test_next_write_removes_temporaries_of_a_killed_writer_only(tmp_path):
    import os

    path = partition_path(tmp_path, "t", {"date": "2024-03-04"})
    path.parent.mkdir(parents=True)
    dead = path.parent / ".999999999.abc.parquet.tmp"  # no such process: its writer was killed
    live = path.parent / f".{os.getppid()}.def.parquet.tmp"  # a running process may still be writing it
    dead.write_bytes(b"PAR1 half")
    live.write_bytes(b"PAR1 half")
    write_partition(frame(3), path)
    assert not dead.exists() and live.exists()
    assert pl.read_parquet(path).height == 3


def test_partition_version_is_a_hash_of_the_bytes(tmp_path):
    from lob_platform.storage import partition_version

    first, second = partition_path(tmp_path, "a", {"date": "d"}), partition_path(tmp_path, "b", {"date": "d"})
    write_partition(frame(5), first)
    write_partition(frame(5), second)
    assert partition_version(first) == partition_version(second) and len(partition_version(first)) == 16
    write_partition(frame(5, offset=1), second)
    assert partition_version(first) != partition_version(second)
    assert partition_version(tmp_path / "missing.parquet") is None
