"""Backtest reports a person looks at: PNG plots and an HTML page beside them.

A partition's report is ``warehouse/reports/{venue}/{instrument}/{date}/{model}/index.html`` with
its PNG files in the same folder; the summary's is ``warehouse/reports/index.html`` and links to
every partition's. The same PNG bytes go into the Dagster materialization's metadata.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from lob_platform.training.plots import plt, png
from lob_platform.training.store import write_atomically

REPORTS = "reports"


@dataclass
class Section:
    heading: str
    tables: list[list[dict]] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG


def report_folder(root: Path, venue: str, instrument: str, date: str, model: str) -> Path:
    return Path(root, REPORTS, venue, instrument, date, model)


def equity_figure(title: str, curves: pl.DataFrame) -> bytes:
    """Equity of every strategy (share of capital) over the day, and their drawdowns below."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for (name,), curve in curves.group_by("strategy", maintain_order=True):
        times = curve["ts"].dt.replace_time_zone(None).to_numpy()
        width = 1.8 if name in ("model", "avellaneda_stoikov") else 0.9
        top.plot(times, curve["equity"].to_numpy(), linewidth=width, label=name)
        bottom.plot(times, -curve["drawdown"].to_numpy(), linewidth=width, label=name)
    top.axhline(0, color="grey", linewidth=0.6)
    top.set_ylabel("PnL / capital")
    top.set_title(title)
    top.legend(fontsize=7)
    bottom.set_ylabel("drawdown")
    figure.autofmt_xdate()
    figure.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.16, hspace=0.08)  # fixed margins: one draw, not two
    return png(figure)


def inventory_figure(title: str, curves: pl.DataFrame) -> bytes:
    """Inventory of each market-making strategy over the day."""
    figure, axis = plt.subplots(figsize=(8, 2.8))
    for (name,), curve in curves.group_by("strategy", maintain_order=True):
        axis.step(curve["ts"].dt.replace_time_zone(None).to_numpy(), curve["position"].to_numpy(), where="post",
                  linewidth=1, label=name)
    axis.set_ylabel("inventory (units)")
    axis.set_title(title)
    axis.legend(fontsize=7)
    figure.autofmt_xdate()
    figure.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.3)
    return png(figure)


def fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def html_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>nothing to show</p>"
    header = "".join(f"<th>{html.escape(str(h))}</th>" for h in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0;"
         "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#eee}"
         "img{display:block;margin:0.5em 0;max-width:100%}")


def write_report(folder: Path, title: str, intro: str, sections: list[Section]) -> Path:
    """Write each section's PNGs and ``index.html`` into ``folder``; return the page's path."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{intro}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [html_table(rows) for rows in section.tables]
        for name, image in section.images.items():
            write_atomically(folder / name, image)
            parts.append(f"<img src='{html.escape(name)}' alt='{html.escape(name)}'>")
    parts.append("</body></html>")
    page = folder / "index.html"
    write_atomically(page, "".join(parts).encode())
    return page


def rounded(rows: list[dict]) -> list[dict]:
    """Rows with floats at 4 significant digits, for metadata tables."""
    return [{k: (float(f"{v:.4g}") if isinstance(v, float) and np.isfinite(v) else v) for k, v in r.items()} for r in rows]
