"""Every model and day's backtest in one table (the DuckDB view ``backtest_metrics``), and the
report page that links to each partition's report."""

from __future__ import annotations

import html
from pathlib import Path

from lob_platform.backtest.report import REPORTS, STYLE, fmt
from lob_platform.training.store import write_atomically
from lob_platform.warehouse import query, tables

PRIMARY = ("model", "avellaneda_stoikov")
"""The strategy a row is about: a model's signal, or the market maker's inventory strategy."""
COMPARISONS = {"perfect_foresight": "foresight_return", "buy_and_hold": "buy_hold_return", "random": "random_return",
               "ofi_sign": "ofi_return", "symmetric": "symmetric_return"}


def _primary(column: str, name: str | None = None) -> str:
    return (f"round(any_value({column}) filter (where strategy in {PRIMARY}), 4) as {name or column}")


SUMMARY_SQL = (
    "select venue, model, instrument, date, coalesce(label, '') as label, "
    + ", ".join(_primary(c) for c in ("total_return", "sharpe", "max_drawdown", "trades", "pf_capture", "ece")) + ", "
    + ", ".join(f"round(any_value(total_return) filter (where strategy = '{s}'), 4) as {name}" for s, name in COMPARISONS.items())
    + " from backtest_metrics group by all order by venue, instrument, date, model, label"
)


def summary_rows(root: Path) -> list[dict]:
    """One row per venue, model, instrument, date and label: the strategy's figures beside each
    comparison's return (none before the first backtest partition)."""
    if "backtest_metrics" not in tables(root):
        return []
    columns, rows = query(root, SUMMARY_SQL)
    return [dict(zip(columns, (str(v) if c == "date" else v for c, v in zip(columns, row)))) for row in rows]


def write_summary(root: Path, rows: list[dict]) -> Path:
    """``{root}/reports/index.html``: the summary table, each row linking to its partition's report."""
    folder = Path(root, REPORTS)
    header = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) if rows else ""
    body = []
    for row in rows:
        link = f"{row['venue']}/{row['instrument']}/{row['date']}/{row['model']}/index.html"
        cells = [f"<td><a href='{html.escape(link)}'>{html.escape(fmt(v))}</a></td>" if c == "model"
                 else f"<td>{html.escape(fmt(v))}</td>" for c, v in row.items()]
        body.append("<tr>" + "".join(cells) + "</tr>")
    page = folder / "index.html"
    write_atomically(page, (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Backtests</title><style>{STYLE}</style></head><body>"
        "<h1>Backtests: every model and day</h1><p>Returns are PnL over the capital of a full position; each model "
        "row trades its label's signal on its day's test rows (walk-forward), beside perfect foresight (an upper "
        "bound), buy and hold, a random signal and the OFI sign under the same costs; the market maker's rows are "
        "Avellaneda–Stoikov against the symmetric spread. Click a model for its plots.</p>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table></body></html>").encode())
    return page
