"""The DuckDB catalogue over the warehouse: one view per table, reading every partition.

Parquet is the store; ``warehouse/lob.duckdb`` only holds views, so the parallel steps that
write partitions never contend for DuckDB's single writer.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

CATALOGUE = "lob.duckdb"


def tables(root: Path) -> list[str]:
    """Tables that have at least one partition file."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and next(p.rglob("*.parquet"), None))


def refresh_views(root: Path) -> dict[str, int]:
    """(Re)create a view per table in ``{root}/lob.duckdb``; return each table's row count."""
    root = root.resolve()
    counts = {}
    with duckdb.connect(str(root / CATALOGUE)) as con:
        existing = {row[0] for row in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
        for table in tables(root):
            pattern = str(root / table / "**" / "*.parquet")
            con.execute(
                f'create or replace view "{table}" as select * from read_parquet('
                f"'{pattern}', hive_partitioning = true, union_by_name = true)"
            )
            counts[table] = con.execute(f'select count(*) from "{table}"').fetchone()[0]
        for stale in existing - set(counts):
            con.execute(f'drop view "{stale}"')
    return counts


def query(root: Path, sql: str):
    """Run SQL against the catalogue read-only; returns a DuckDB relation result as (columns, rows)."""
    with duckdb.connect(str(root / CATALOGUE), read_only=True) as con:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()
