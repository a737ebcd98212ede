"""pandera schemas for every table: column dtypes and nullability plus the validation rules as
dataframe-level checks, built from the same polars expressions the quarantine uses."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from lob_platform.sources.schema import (
    MESSAGE_COLUMNS,
    SNAPSHOT_COLUMNS,
    SOURCE_ROW,
    book_columns,
)
from lob_platform.validation.rules import MESSAGE_RULES, SNAPSHOT_RULES, applicable, rule_context


def _rule_checks(rules, ctx) -> list[pa.Check]:
    return [
        pa.Check(lambda data, expr=expr: data.lazyframe.select(~expr), name=rule.name, description=rule.description)
        for rule, expr in applicable(rules, ctx)
    ]


def _columns(core: dict[str, pl.DataType], levels: int, nullable_core: bool) -> dict[str, pa.Column]:
    columns = {name: pa.Column(dtype, nullable=nullable_core) for name, dtype in core.items()}
    columns.update(
        {name: pa.Column(pl.Float64, nullable="_price_" in name) for name in book_columns(levels)}
    )
    columns[SOURCE_ROW] = pa.Column(pl.UInt32, nullable=False)
    return columns


def message_schema(levels: int, tick: float | None) -> pa.DataFrameSchema:
    """Schema of a message table with ``levels`` book levels (0 for message-only venues)."""
    ctx = rule_context(list(MESSAGE_COLUMNS) + book_columns(levels) + [SOURCE_ROW], tick)
    return pa.DataFrameSchema(
        _columns(MESSAGE_COLUMNS, levels, nullable_core=True),  # nulls are the no_nulls rule's job
        checks=_rule_checks(MESSAGE_RULES, ctx),
        strict=True,
        name=f"messages_{levels}_levels",
    )


def snapshot_schema(levels: int, tick: float | None) -> pa.DataFrameSchema:
    """Schema of a depth-snapshot table with ``levels`` book levels."""
    ctx = rule_context(list(SNAPSHOT_COLUMNS) + book_columns(levels) + [SOURCE_ROW], tick)
    return pa.DataFrameSchema(
        _columns(SNAPSHOT_COLUMNS, levels, nullable_core=True),
        checks=_rule_checks(SNAPSHOT_RULES, ctx),
        strict=True,
        name=f"snapshots_{levels}_levels",
    )
