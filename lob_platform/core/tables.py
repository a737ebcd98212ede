"""The two kinds of tables every venue is read into, and the names of their stages.

One spec per kind is the home of what used to be repeated per module: the core columns, and the
raw / validated / rejected table names (also the Dagster asset names and the DuckDB views).
The rules of each kind live with the rules (``lob_platform.validation.rules.rules_of``).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lob_platform.core.columns import MESSAGE_COLUMNS, SNAPSHOT_COLUMNS, SOURCE_ROW, book_columns

REPORT_TABLE = "validation_reports"
"""One row per partition of any kind: what validation found and whether every check passed."""


@dataclass(frozen=True, eq=False)
class TableKind:
    """One kind of raw table: its core columns and the tables its partitions go through (two
    singletons, compared by identity)."""

    name: str  # "messages" or "snapshots"
    raw: str
    validated: str
    rejected: str
    core_columns: dict[str, pl.DataType]

    def dtypes(self, levels: int) -> dict[str, pl.DataType]:
        """Full dtype map of a table of this kind with ``levels`` book levels."""
        schema = dict(self.core_columns)
        schema.update({c: pl.Float64() for c in book_columns(levels)})
        schema[SOURCE_ROW] = pl.UInt32()
        return schema

    def __str__(self) -> str:
        return self.name


MESSAGES = TableKind("messages", "raw_messages", "validated_messages", "rejected_messages", MESSAGE_COLUMNS)
SNAPSHOTS = TableKind("snapshots", "raw_depth_snapshots", "validated_depth_snapshots", "rejected_depth_snapshots",
                      SNAPSHOT_COLUMNS)
TABLE_KINDS = (MESSAGES, SNAPSHOTS)
