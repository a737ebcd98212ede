"""pandera schemas for every table: column dtypes and nullability plus, for validated tables,
the validation rules as dataframe-level checks built from the same polars expressions the
quarantine uses.

- raw tables: the unified columns and dtypes only (breaking rules is allowed there: that is
  what the quarantine sorts out);
- validated tables: columns, dtypes and every rule that still holds once rows are quarantined
  (``book_follows_messages`` compares a row with the one before it, so it judges the raw
  partition only);
- rejected tables: which rules (known names), source file and line, then the raw columns.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from lob_platform.core.columns import BOOK_CROSSED, SOURCE_ROW, book_columns
from lob_platform.core.tables import TableKind
from lob_platform.validation.rules import applicable, rule_context, rules_of


def _columns(kind: TableKind, levels: int, nullable: bool, rebuilt: bool) -> dict[str, pa.Column]:
    # Core nulls are the no_nulls rule's concern, so they are allowed at the dtype level.
    columns = {name: pa.Column(dtype, nullable=True) for name, dtype in kind.core_columns.items()}
    columns.update({name: pa.Column(pl.Float64, nullable=nullable or "_price_" in name) for name in book_columns(levels)})
    if rebuilt:
        columns[BOOK_CROSSED] = pa.Column(pl.Boolean, nullable=nullable)
    columns[SOURCE_ROW] = pa.Column(pl.UInt32, nullable=False)
    return columns


def table_schema(kind: TableKind, levels: int, tick: float | None, with_rules: bool = True,
                 rebuilt: bool = False) -> pa.DataFrameSchema:
    """Schema of a table of ``kind`` with ``levels`` book levels (``rebuilt``: rebuilt from its
    messages, with ``book_crossed``)."""
    ctx = rule_context(list(kind.core_columns) + book_columns(levels) + [BOOK_CROSSED] * rebuilt + [SOURCE_ROW], tick)
    checks = [
        pa.Check(lambda data, expr=expr: data.lazyframe.select(~expr), name=rule.name, description=rule.description)
        for rule, expr in applicable(rules_of(kind), ctx) if rule.holds_after_quarantine
    ]
    return pa.DataFrameSchema(
        _columns(kind, levels, nullable=False, rebuilt=rebuilt),
        checks=checks if with_rules else [],
        strict=True,
        name=f"{kind.validated if with_rules else kind.raw}_{levels}_levels",
    )


def rejected_schema(kind: TableKind, levels: int, rebuilt: bool = False) -> pa.DataFrameSchema:
    """Schema of a quarantine table: every row names only known rules and its source line."""
    known = {rule.name for rule in rules_of(kind)}
    columns = {
        "rules": pa.Column(pl.String, pa.Check(lambda data: data.lazyframe.select(
            pl.col(data.key).str.split(",").list.eval(pl.element().is_in(list(known))).list.all()),
            name="known_rule_names"), nullable=False),
        "source_file": pa.Column(pl.String, nullable=False),
        **_columns(kind, levels, nullable=True, rebuilt=rebuilt),
    }
    return pa.DataFrameSchema(columns, strict=True, name=f"{kind.rejected}_{levels}_levels")
