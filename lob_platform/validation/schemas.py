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

from lob_platform.core.columns import SOURCE_ROW, book_columns
from lob_platform.core.tables import TableKind
from lob_platform.validation.rules import applicable, rule_context, rules_of


def _columns(kind: TableKind, levels: int, nullable: bool) -> dict[str, pa.Column]:
    # Core nulls are the no_nulls rule's concern, so they are allowed at the dtype level.
    columns = {name: pa.Column(dtype, nullable=True) for name, dtype in kind.core_columns.items()}
    columns.update({name: pa.Column(pl.Float64, nullable=nullable or "_price_" in name) for name in book_columns(levels)})
    columns[SOURCE_ROW] = pa.Column(pl.UInt32, nullable=False)
    return columns


def table_schema(kind: TableKind, levels: int, tick: float | None, with_rules: bool = True) -> pa.DataFrameSchema:
    """Schema of a table of ``kind`` with ``levels`` book levels."""
    ctx = rule_context(list(kind.core_columns) + book_columns(levels) + [SOURCE_ROW], tick)
    checks = [
        pa.Check(lambda data, expr=expr: data.lazyframe.select(~expr), name=rule.name, description=rule.description)
        for rule, expr in applicable(rules_of(kind), ctx)
    ]
    return pa.DataFrameSchema(
        _columns(kind, levels, nullable=False),
        checks=checks if with_rules else [],
        strict=True,
        name=f"{kind.validated if with_rules else kind.raw}_{levels}_levels",
    )


def rejected_schema(kind: TableKind, levels: int) -> pa.DataFrameSchema:
    """Schema of a quarantine table: every row names only known rules and its source line."""
    known = {rule.name for rule in rules_of(kind)}
    columns = {
        "rules": pa.Column(pl.String, pa.Check(lambda data: data.lazyframe.select(
            pl.col(data.key).str.split(",").list.eval(pl.element().is_in(list(known))).list.all()),
            name="known_rule_names"), nullable=False),
        "source_file": pa.Column(pl.String, nullable=False),
        **_columns(kind, levels, nullable=True),
    }
    return pa.DataFrameSchema(columns, strict=True, name=f"{kind.rejected}_{levels}_levels")
