"""Out-of-sample errors of the panel forecasters beside persistence and DLinear, in market units.

Every error is computed on forecasts mapped back to prices and volumes, per horizon step:
MSE and MAE of prices in ticks (the venue's tick for the pair) and in basis points of the last
mid, of volumes in the pair's units (coins), and for other channels in their own units. The
direction of the mid (up or down from the last mid, over the steps where the real mid moved) is
scored for every forecaster; persistence has no direction and scores 0 there. A forecast book is
*crossed* when its best bid is at or above its best ask, and *non-monotone* when bid prices do not
fall or ask prices do not rise strictly from one level to the next; both are counted on the raw
forecasts, before any post-processing.
"""

from __future__ import annotations

import numpy as np

FORECASTERS = ("model", "persistence", "dlinear")
BOOK_FIELDS = 4  # per level: bid price, bid volume, ask price, ask volume (the panel's order)


def error_rows(true: np.ndarray, forecasts: dict[str, np.ndarray], quantities: dict[str, tuple[np.ndarray, np.ndarray | float]]) -> list[dict]:
    """One row per (quantity, horizon step, statistic) with each forecaster's value.

    ``quantities``: name -> (column positions, divisor), the divisor a number (a tick) or one per
    window (a mid / 10,000 for basis points)."""
    rows = []
    for quantity, (columns, divisor) in quantities.items():
        div = np.asarray(divisor, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(divisor) else float(divisor)
        errors = {name: (f[:, :, columns] - true[:, :, columns]) / div for name, f in forecasts.items()}
        for step in range(true.shape[1]):
            for stat, fn in (("mse", np.square), ("mae", np.abs)):
                rows.append({"quantity": quantity, "step": step + 1, "stat": stat,
                             **{name: float(np.nanmean(fn(e[:, step]))) for name, e in errors.items()}})
    return rows


def book_quantities(levels: int, tick: float | None, last_mid: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray | float]]:
    """The quantities of a forecast book (levels x bid price, bid volume, ask price, ask volume);
    prices in ticks only where the pair's tick is known."""
    index = np.arange(levels * BOOK_FIELDS).reshape(levels, BOOK_FIELDS)
    prices, volumes = index[:, [0, 2]].ravel(), index[:, [1, 3]].ravel()
    return {"price_bps": (prices, last_mid / 1e4), **({"price_ticks": (prices, tick)} if tick else {}), "volume": (volumes, 1.0)}


def book_mid(book: np.ndarray) -> np.ndarray:
    """(..., levels x 4) -> (...) mid of the best bid and ask."""
    return (book[..., 0] + book[..., 2]) / 2


def direction_accuracy(true_mid: np.ndarray, forecast_mid: np.ndarray, last_mid: np.ndarray) -> float:
    """Share of (window, step) where the real mid moved and the forecast moved the same way."""
    moved = np.sign(true_mid - last_mid[:, None])
    said = np.sign(forecast_mid - last_mid[:, None])
    mask = moved != 0
    return float(np.mean(said[mask] == moved[mask])) if mask.any() else float("nan")


def invalid_books(book: np.ndarray, levels: int) -> dict[str, float]:
    """Shares of forecast books (window x step) that are crossed and that are non-monotone."""
    b = book.reshape(-1, levels, BOOK_FIELDS)
    bid, ask = b[:, :, 0], b[:, :, 2]
    crossed = bid[:, 0] >= ask[:, 0]
    non_monotone = (np.diff(bid, axis=1) >= 0).any(axis=1) | (np.diff(ask, axis=1) <= 0).any(axis=1)
    return {"crossed_share": float(crossed.mean()) if len(b) else float("nan"),
            "non_monotone_share": float(non_monotone.mean()) if len(b) else float("nan")}


def mean_over_steps(rows: list[dict], quantity: str, stat: str) -> dict[str, float]:
    """Each forecaster's ``stat`` of ``quantity``, averaged over the horizon steps."""
    picked = [r for r in rows if r["quantity"] == quantity and r["stat"] == stat]
    return {name: float(np.mean([r[name] for r in picked])) for name in FORECASTERS if picked and name in picked[0]}


def verdict(true: np.ndarray, forecasts: dict[str, np.ndarray], quantity: str, columns: np.ndarray,
            divisor: np.ndarray | float, spacing: int) -> tuple[bool, float, str]:
    """(beats, z, words): whether the model's squared error on ``quantity`` is below persistence's
    by more than noise. The per-window difference of squared errors (mean over steps and columns)
    is taken on windows ``spacing`` apart, whose horizons do not overlap, and its mean over its
    standard error gives z; the model beats persistence when z < -2."""
    div = np.asarray(divisor, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(divisor) else float(divisor)
    squared = {name: np.nanmean(np.square((f[:, :, columns] - true[:, :, columns]) / div), axis=(1, 2))
               for name, f in forecasts.items()}
    difference = (squared["model"] - squared["persistence"])[::max(spacing, 1)]
    n = len(difference)
    z = float(difference.mean() / (difference.std(ddof=1) / np.sqrt(n))) if n > 1 and difference.std() > 0 else 0.0
    ratio = float(np.mean(squared["model"]) / np.mean(squared["persistence"]))
    linear = float(np.mean(squared["model"]) / np.mean(squared["dlinear"]))
    detail = f"{quantity} MSE {ratio:.3f} x persistence's (z = {z:.1f} on {n} non-overlapping windows), {linear:.3f} x DLinear's"
    if z < -2:
        return True, z, f"beats persistence: {detail}"
    if z > 2:
        return False, z, f"does NOT beat persistence on this day, it is worse: {detail}"
    return False, z, f"does NOT beat persistence on this day (within noise): {detail}"
