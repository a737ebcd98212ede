"""Partitioned parquet under the warehouse: hive-style paths, atomic replacement.

A partition is one file, ``{root}/{table}/venue=../instrument=../date=../part-0.parquet``. It is
written to a temporary file in the same folder and moved into place with ``os.replace``, so a
rerun replaces it whole and a crash mid-write never leaves a partial or duplicated partition.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

PART_FILE = "part-0.parquet"


def partition_path(root: Path, table: str, keys: dict[str, str]) -> Path:
    """Hive-style location of one partition (keys in the order given)."""
    folder = Path(root, table, *(f"{name}={value}" for name, value in keys.items()))
    return folder / PART_FILE


def write_partition(frame: pl.DataFrame, path: Path) -> int:
    """Atomically write ``frame`` to ``path``; return the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".parquet.tmp")
    os.close(handle)
    try:
        frame.write_parquet(temporary, compression="lz4", statistics=True)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path.stat().st_size
