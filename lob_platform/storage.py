"""Partitioned parquet under the warehouse: hive-style paths, atomic replacement, content versions,
lazy multi-day reads.

A partition is one file, ``{root}/{table}/venue=../instrument=../date=../part-0.parquet``. It is
written to a temporary file in the same folder and moved into place with ``os.replace``, so a
rerun replaces it whole and a crash mid-write never leaves a partial or duplicated partition. A
temporary file left by a writer that was killed is removed by the next write of that partition
(temporary names carry the writer's process id; files of a live writer are left alone).

A partition's *version* is a hash of its bytes: writes are deterministic, so equal data gives
an equal version, and a fit can record exactly which versions of its inputs it learned from.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import polars as pl

from lob_platform.core.processes import process_alive

PART_FILE = "part-0.parquet"
_TEMP_SUFFIX = ".parquet.tmp"


def partition_path(root: Path, table: str, keys: dict[str, str]) -> Path:
    """Hive-style location of one partition (keys in the order given)."""
    folder = Path(root, table, *(f"{name}={value}" for name, value in keys.items()))
    return folder / PART_FILE


def write_partition(frame: pl.DataFrame, path: Path) -> tuple[int, str]:
    """Atomically write ``frame`` to ``path``; return (bytes written, version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(path.parent)
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="lz4", statistics=True)
    data = buffer.getvalue()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{os.getpid()}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as written:
            written.write(data)
            written.flush()
            os.fsync(written.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the partition from other readers (DuckDB users)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(data), _version(data)


def remove_abandoned_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files in ``folder`` whose writing process no longer runs; return them."""
    removed = []
    for temporary in folder.glob(f".*{_TEMP_SUFFIX}"):
        pid = temporary.name.split(".")[1]
        if not (pid.isdigit() and process_alive(int(pid))):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def delete_partition(path: Path) -> bool:
    """Remove a partition file (and its folder when empty); whether there was one."""
    if not path.exists():
        return False
    path.unlink()
    try:
        path.parent.rmdir()
    except OSError:
        pass
    return True


def partition_version(path: Path) -> str | None:
    """A hash of the partition's bytes, or None when it is not written."""
    try:
        return _version(path.read_bytes())
    except FileNotFoundError:
        return None


def _version(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def scan_partitions(paths: dict[str, Path]) -> pl.LazyFrame | None:
    """The partitions that exist among ``paths`` (label -> file) as one lazy frame with a ``partition``
    column; columns missing from some partitions are null there. Nothing is read until collected."""
    frames = [pl.scan_parquet(path).with_columns(partition=pl.lit(label)) for label, path in paths.items() if path.exists()]
    return pl.concat(frames, how="diagonal_relaxed") if frames else None
