"""What the feature asset checks measure: finite values and label balance (pure functions)."""

from __future__ import annotations

import polars as pl


UP_SHARE_RANGE = (0.2, 0.8)
NULLABLE = {"level"}  # null by rule on status rows and where the venue has no book


def non_finite_counts(frame: pl.DataFrame) -> dict[str, int]:
    """NaN or infinite values per float column (only columns that have any)."""
    floats = [c for c, dtype in frame.schema.items() if dtype.is_float()]
    if not floats or frame.is_empty():
        return {}
    counts = frame.select((~pl.col(c).is_finite()).sum() for c in floats).row(0, named=True)
    return {c: n for c, n in counts.items() if n}


def unexpected_null_counts(frame: pl.DataFrame) -> dict[str, int]:
    """Nulls in feature columns outside what the rules allow: labels may be null, ``level`` may be
    null, and book price features may be null only before the day's first two-sided book."""
    if frame.is_empty():
        return {}
    checked = [c for c in frame.columns if not c.startswith("label_") and c not in NULLABLE]
    ready = pl.col("book_two_sided").cum_max() if "book_two_sided" in frame.columns else pl.lit(True)
    counts = frame.filter(ready).select(pl.col(c).null_count() for c in checked).row(0, named=True) if checked else {}
    return {c: n for c, n in counts.items() if n}


def label_balance(frame: pl.DataFrame, up_share_range: tuple[float, float] = UP_SHARE_RANGE) -> tuple[bool, dict]:
    """Whether the next-move labels are usable: some rows labelled, neither direction dominating."""
    labels = frame["label_next_mid_up"].drop_nulls()
    up_share = labels.mean() if len(labels) else None
    passed = up_share is not None and up_share_range[0] <= up_share <= up_share_range[1]
    return passed, {"labelled_rows": len(labels), "unlabelled_rows": frame.height - len(labels),
                    "up_share": up_share, "up_share_range": list(up_share_range)}


def summary_table(frame: pl.DataFrame, columns: list[str]) -> str:
    """Markdown table of count, nulls, mean, std, min, quartiles and max per column."""
    stats = frame.select(columns).describe()
    header = "| statistic | " + " | ".join(columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for row in stats.iter_rows():
        lines.append("| " + " | ".join([str(row[0])] + [_short(v) for v in row[1:]]) + " |")
    return "\n".join(lines)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
