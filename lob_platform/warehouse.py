"""The DuckDB catalogue over the warehouse: one view per table, reading every partition.

Parquet is the store; ``warehouse/lob.duckdb`` only holds views, so the parallel steps that
write partitions never contend for DuckDB's single writer.

A ``validated_*`` view shows only the partitions whose ``validation_reports`` row says every
check passed: a blocked day keeps its files (nothing is lost) but analysts do not read it as
validated. ``all_validated_*`` views show every written partition.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from lob_platform.errors import ConfigError

CATALOGUE = "lob.duckdb"
REPORTS = "validation_reports"


def tables(root: Path) -> list[str]:
    """Tables that have at least one partition file."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and next(p.rglob("*.parquet"), None))


def refresh_views(root: Path) -> dict[str, int]:
    """(Re)create a view per table in ``{root}/lob.duckdb``; return each table's row count."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)  # no partition written yet (every day failed): an empty catalogue
    counts = {}
    with duckdb.connect(str(root / CATALOGUE)) as con:
        existing = {row[0] for row in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
        present = tables(root)
        for table in sorted(present, key=lambda t: t != REPORTS):  # reports first: validated views use them
            scan = _scan(root / table)
            if table.startswith("validated_") and REPORTS in present:
                con.execute(f'create or replace view "all_{table}" as {scan}')
                counts[f"all_{table}"] = con.execute(f'select count(*) from "all_{table}"').fetchone()[0]
                scan = (f'select t.* from "all_{table}" t semi join (select venue, instrument, date from {REPORTS} '
                        "where passed) r using (venue, instrument, date)")
            con.execute(f'create or replace view "{table}" as {scan}')
            counts[table] = con.execute(f'select count(*) from "{table}"').fetchone()[0]
        for stale in existing - set(counts):
            con.execute(f'drop view "{stale}"')
    return counts


def _scan(folder: Path) -> str:
    """SQL reading every partition of a table; hive keys typed explicitly (an instrument named
    1234 stays text, so tables join on it), ``date`` as DATE."""
    first = next(folder.rglob("*.parquet"))
    keys = [part.split("=", 1)[0] for part in first.relative_to(folder).parts[:-1] if "=" in part]
    types = ", ".join(f"'{key}': '{'DATE' if key == 'date' else 'VARCHAR'}'" for key in keys)
    pattern = str(folder / "**" / "*.parquet").replace("'", "''")
    return (f"select * from read_parquet('{pattern}', hive_partitioning = true, union_by_name = true"
            f"{f', hive_types = {{{types}}}' if keys else ''})")


def query(root: Path, sql: str):
    """Run SQL against the catalogue read-only; returns (column names, rows)."""
    if not (root / CATALOGUE).exists():
        raise ConfigError(f"no catalogue at {root / CATALOGUE}: run `python -m lob_platform run` first.")
    with duckdb.connect(str(root / CATALOGUE), read_only=True) as con:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()
