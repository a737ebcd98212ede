"""``book_follows_messages``: each orderbook row of a venue that ships its book must equal the
previous row with its message applied.

Per row k > 1 (the first row is the opening book, accepted as given), on the side of the
message's resting order:

- a submit adds its size at its price: to the level at that price, or as a new level where the
  price lies inside the visible window (the deepest level then drops out of a full window), or
  nothing visible where it lies beyond a full window;
- a partial cancel, a delete and a visible execution remove their size at their price; a level
  that empties leaves the window, and a full window then shows a level from beyond it, which is
  accepted as given when it is strictly worse than the previous deepest level (or empty); a
  removal beyond a full window changes nothing visible;
- hidden executions, crosses and status rows (halts, resumptions) leave the visible book
  unchanged; so does every message for the other side.

The first row of each file in the table (where source rows start over) is taken as given, and
a file's visible window is as deep as the most levels any of its rows shows. A row missing its
event type, side, price or size is not judged (``no_nulls`` and ``known_codes`` name it); the
next row is compared with its book.

Anything else breaks the rule at that row: a size that does not add up, a level that appears or
vanishes without a message, a removal at a price inside the window where no level is. Where the
row before broke the rule and what it should have shown is fully known, a row is also accepted
when it follows that, so a single changed orderbook row names itself, not its successor too.

Every row of the real LOBSTER samples (AMZN 5 and 1 levels, AAPL 1 level, 2012-06-21) follows:
no exception had to be documented.
"""

from __future__ import annotations

import numba
import numpy as np
import polars as pl

from lob_platform.core.columns import SOURCE_ROW, EventType, book_levels, per_event_type

UNCHANGED, ADDS, REMOVES = 0, 1, 2
UNJUDGED, FIRST = 3, 4  # a field is missing (no_nulls, known_codes say so); the first row of a file (taken as given)
_EFFECT = {"submit": ADDS, "cancel": REMOVES, "delete": REMOVES, "execute_visible": REMOVES}
_SIZE_TOLERANCE = 1e-9  # sizes are whole shares on LOBSTER; float noise only elsewhere


def book_breaks_messages(frame: pl.DataFrame) -> np.ndarray:
    """True on the rows whose book is not the previous row's book with their message applied."""
    levels = book_levels(frame.columns)
    if levels == 0 or frame.height < 2:
        return np.zeros(frame.height, dtype=bool)
    # one row per book column (bid levels, then ask levels): how polars hands columns over
    prices, sizes = (np.ascontiguousarray(frame.select(
        pl.col(f"{s}_{field}_{lv}").fill_null(np.nan) for s in ("bid", "ask") for lv in range(1, levels + 1)
    ).to_numpy().T, dtype=np.float64) for field in ("price", "size"))
    # A table of several files (a multi-day load) starts over where source rows do; each file's
    # visible depth is the most levels any of its rows shows (a 1-level day padded to 5 has 1).
    file_start = (pl.col(SOURCE_ROW).cast(pl.Int64).diff() <= 0).fill_null(True) if SOURCE_ROW in frame.columns else pl.int_range(pl.len()) == 0
    shown = pl.max_horizontal(pl.sum_horizontal(pl.col(f"{s}_price_{lv}").is_not_null() for lv in range(1, levels + 1))
                              for s in ("bid", "ask"))
    usable = pl.all_horizontal(pl.col("event_type", "side", "price", "size").is_not_null())
    messages = frame.select(judged=pl.when(file_start).then(FIRST).when(~usable).then(UNJUDGED).otherwise(-1).cast(pl.Int8),
                            side=(pl.col("side") == "ask").fill_null(False).cast(pl.Int8),
                            price=pl.col("price").fill_null(0.0), size=pl.col("size").fill_null(0.0),
                            depth=shown.max().over(file_start.cum_sum()).cast(pl.Int64))
    judged = messages["judged"].to_numpy()
    effect = np.where(judged >= 0, judged, per_event_type(frame["event_type"].cast(EventType), _EFFECT, UNCHANGED))
    return _breaks(effect, *(messages[c].to_numpy() for c in ("side", "price", "size", "depth")), prices, sizes)


@numba.njit(cache=True)
def _breaks(effect, side, price, size, depth, prices, sizes):
    """prices, sizes: (2 sides (bid, ask) x levels, rows), NaN price on an empty level.

    A row is compared with the previous row's book; where the previous row broke the rule and
    what it should have shown is fully known, the row also passes when it follows that, so one
    corrupted orderbook row does not take its innocent successor down with it. (Books are passed
    as the whole array and a row index: slicing out a row per call costs more than the check.)"""
    levels, n = prices.shape[0] // 2, prices.shape[1]
    broken = np.zeros(n, dtype=np.bool_)
    expected_price = np.empty((2, levels))
    expected_size = np.empty((2, levels))
    fallback_price = np.empty((2 * levels, 1))  # what the last broken row should have shown
    fallback_size = np.empty((2 * levels, 1))
    has_fallback = False
    for row in range(1, n):
        d = depth[row]
        if effect[row] == UNJUDGED or effect[row] == FIRST or d == 0:  # d == 0: a file that shows no book
            has_fallback = False
            continue
        known = _expected(prices, sizes, row - 1, effect[row], side[row], price[row], size[row], d,
                          expected_price, expected_size)
        ok = known != IMPOSSIBLE and _matches(expected_price, expected_size, known == ENTERING, side[row], d,
                                              prices, row - 1, prices, sizes, row)
        if not ok and has_fallback:
            fallback = _expected(fallback_price, fallback_size, 0, effect[row], side[row], price[row], size[row], d,
                                 expected_price, expected_size)
            ok = fallback != IMPOSSIBLE and _matches(expected_price, expected_size, fallback == ENTERING, side[row], d,
                                                     fallback_price, 0, prices, sizes, row)
        if ok:
            has_fallback = False
            continue
        broken[row] = True
        # what this row should have shown (from what the previous row should have shown, where
        # known) is in expected_*: the last book computed above
        known = fallback if has_fallback else known
        for s in range(2):
            for i in range(levels):
                fallback_price[s * levels + i, 0] = expected_price[s, i]
                fallback_size[s * levels + i, 0] = expected_size[s, i]
        has_fallback = known == DETERMINED
    return broken


DETERMINED, ENTERING, IMPOSSIBLE = 0, 1, 2


@numba.njit(cache=True)
def _expected(book_price, book_size, row, effect, message_side, x, q, levels, out_price, out_size):
    """The book after the message, from the book before it (column ``row`` of ``book_*``, ``levels`` of its
    columns visible), into ``out_*``; returns DETERMINED, ENTERING (the deepest visible slot of
    the message's side may show a level from beyond the window) or IMPOSSIBLE (the message
    cannot apply to this book)."""
    width = out_price.shape[1]
    for side in range(2):
        for i in range(width):
            out_price[side, i] = book_price[side * width + i, row]
            out_size[side, i] = book_size[side * width + i, row]
    if effect == UNCHANGED:
        return DETERMINED
    s = message_side
    sign = 1.0 if s == 1 else -1.0  # ask: lower is better; bid: higher is better
    m = 0
    while m < levels and not np.isnan(out_price[s, m]):
        m += 1
    full = m == levels
    at = -1
    for i in range(m):
        if out_price[s, i] == x:
            at = i
    beyond = full and sign * (x - out_price[s, m - 1]) > 0
    if effect == ADDS:
        if at >= 0:
            out_size[s, at] += q
        elif not beyond:
            position = 0
            while position < m and sign * (x - out_price[s, position]) > 0:
                position += 1
            for i in range(min(m, levels - 1), position, -1):
                out_price[s, i] = out_price[s, i - 1]
                out_size[s, i] = out_size[s, i - 1]
            out_price[s, position] = x
            out_size[s, position] = q
        return DETERMINED
    if at < 0:
        return DETERMINED if beyond else IMPOSSIBLE
    left = out_size[s, at] - q
    if left < -_SIZE_TOLERANCE:
        return IMPOSSIBLE
    if left > _SIZE_TOLERANCE:
        out_size[s, at] = left
        return DETERMINED
    for i in range(at, m - 1):
        out_price[s, i] = out_price[s, i + 1]
        out_size[s, i] = out_size[s, i + 1]
    out_price[s, m - 1] = np.nan
    out_size[s, m - 1] = 0.0
    return ENTERING if full else DETERMINED


@numba.njit(cache=True)
def _matches(expected_price, expected_size, entering, message_side, depth, before_price, before_row, price, size, row):
    """Row ``row`` of the book equals the expected book; where a level may be ``entering`` from
    beyond the window, the deepest visible slot of the message's side may instead show any level
    worse than the one there before (column ``before_row`` of ``before_price``)."""
    width = expected_price.shape[1]
    for s in range(2):
        sign = 1.0 if s == 1 else -1.0
        for i in range(width):
            shown = price[s * width + i, row]
            if entering and s == message_side and i == depth - 1 and not np.isnan(shown):
                if not sign * (shown - before_price[s * width + i, before_row]) > 0:
                    return False
            elif np.isnan(expected_price[s, i]) != np.isnan(shown):
                return False
            elif not np.isnan(shown) and (shown != expected_price[s, i]
                                          or abs(size[s * width + i, row] - expected_size[s, i]) > _SIZE_TOLERANCE):
                return False
            elif np.isnan(shown) and abs(size[s * width + i, row]) > _SIZE_TOLERANCE and not entering:
                return False
    return True
