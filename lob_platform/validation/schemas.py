"""pandera schemas for every table: column dtypes and nullability plus, for validated tables,
the validation rules as dataframe-level checks built from the same polars expressions the
quarantine uses.

- raw tables: the unified columns and dtypes only (breaking rules is allowed there: that is
  what the quarantine sorts out);
- validated tables: columns, dtypes and every rule;
- rejected tables: which rules (known names), source file and line, then the raw columns.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from lob_platform.sources.schema import MESSAGE_COLUMNS, SNAPSHOT_COLUMNS, SOURCE_ROW, book_columns
from lob_platform.validation.rules import MESSAGE_RULES, SNAPSHOT_RULES, applicable, rule_context

CORE_COLUMNS = {"messages": MESSAGE_COLUMNS, "snapshots": SNAPSHOT_COLUMNS}
RULES = {"messages": MESSAGE_RULES, "snapshots": SNAPSHOT_RULES}


def _columns(table: str, levels: int, nullable: bool) -> dict[str, pa.Column]:
    # Core nulls are the no_nulls rule's concern, so they are allowed at the dtype level.
    columns = {name: pa.Column(dtype, nullable=True) for name, dtype in CORE_COLUMNS[table].items()}
    columns.update({name: pa.Column(pl.Float64, nullable=nullable or "_price_" in name) for name in book_columns(levels)})
    columns[SOURCE_ROW] = pa.Column(pl.UInt32, nullable=False)
    return columns


def table_schema(table: str, levels: int, tick: float | None, with_rules: bool = True) -> pa.DataFrameSchema:
    """Schema of a ``messages`` or ``snapshots`` table with ``levels`` book levels."""
    ctx = rule_context(list(CORE_COLUMNS[table]) + book_columns(levels) + [SOURCE_ROW], tick)
    checks = [
        pa.Check(lambda data, expr=expr: data.lazyframe.select(~expr), name=rule.name, description=rule.description)
        for rule, expr in applicable(RULES[table], ctx)
    ]
    return pa.DataFrameSchema(
        _columns(table, levels, nullable=False),
        checks=checks if with_rules else [],
        strict=True,
        name=f"{'validated' if with_rules else 'raw'}_{table}_{levels}_levels",
    )


def rejected_schema(table: str, levels: int) -> pa.DataFrameSchema:
    """Schema of a quarantine table: every row names only known rules and its source line."""
    known = {rule.name for rule in RULES[table]}
    columns = {
        "rules": pa.Column(pl.String, pa.Check(lambda data: data.lazyframe.select(
            pl.col(data.key).str.split(",").list.eval(pl.element().is_in(list(known))).list.all()),
            name="known_rule_names"), nullable=False),
        "source_file": pa.Column(pl.String, nullable=False),
        **_columns(table, levels, nullable=True),
    }
    return pa.DataFrameSchema(columns, strict=True, name=f"rejected_{table}_{levels}_levels")
