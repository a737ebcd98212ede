"""How much of the crypto panel's grid each instrument actually fills (pure functions, no dagster).

The panel (``lob_platform.features.crypto_panel``) has one row per 5-second grid time and, per
instrument ``"{exchange}.{pair}"``, columns such as ``f"{instrument}.bid_price_1"``. A value is null
when the instrument had no fresh enough book at that time, so the share of rows with a best bid
and a best ask tells whether the instrument is usable on that day.
"""

from __future__ import annotations

import polars as pl

# Share of the day's 5-second grid (17280 rows; 0.01 is about 15 minutes). An instrument included
# in the panel must have fresh values on at least this share of the grid, otherwise its columns
# are nearly all null and a model would read noise.
MIN_PANEL_COVERAGE = 0.01


def panel_coverage(frame: pl.DataFrame, instruments: list[str]) -> dict[str, float]:
    """Per instrument, the share of panel rows with both a best bid and a best ask price.

    A row counts when ``f"{instrument}.bid_price_1"`` and ``f"{instrument}.ask_price_1"`` are both
    non-null. An empty frame, or an instrument whose columns are missing, gives 0.0.
    """
    coverage = {}
    for instrument in instruments:
        bid, ask = f"{instrument}.bid_price_1", f"{instrument}.ask_price_1"
        if frame.is_empty() or bid not in frame.columns or ask not in frame.columns:
            coverage[instrument] = 0.0
            continue
        both = frame.select((pl.col(bid).is_not_null() & pl.col(ask).is_not_null()).sum()).item()
        coverage[instrument] = both / frame.height
    return coverage


def coverage_failures(coverage: dict[str, float], included: list[str], minimum: float) -> dict[str, float]:
    """The included instruments whose coverage is below ``minimum``, with their coverage.

    An included instrument absent from ``coverage`` counts as coverage 0.0.
    """
    return {
        instrument: coverage.get(instrument, 0.0)
        for instrument in included
        if coverage.get(instrument, 0.0) < minimum
    }
