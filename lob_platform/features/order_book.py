"""Books rebuilt from order-by-order messages: the book after every event, to N levels, in the
unified book columns, for venues that publish orders but no book (MIC futures, order-by-order
crypto feeds declared through ``ExchangeConfig``).

What each event does to the order it names (order ids are the venue's; 0 is anonymous):

- ``submit`` rests a new order (side, price, size). A submit of an id that is already resting
  replaces that order and is counted (``reused_order_rows``).
- ``cancel`` (partial cancel) and ``execute_visible`` take their size off the order; an order
  with nothing left leaves the book.
- ``delete`` removes the order, whatever size the row carries: real feeds delete fully filled
  orders with size 0, and LOBSTER deletes carry the size deleted.
- ``modify`` sets the order's price and size to the row's (its side stays): a price move, a
  shrink, or a fill reported as a modify to a smaller size. Size 0 removes the order.
- hidden executions, crosses and status rows leave the visible book unchanged.

A day may start with orders resting from before: either as a burst of submits at the start (as
real feeds deliver their snapshot: nothing special to do), or as a ``resting`` table given to
``rebuild_book`` (side, price, size, and optionally order_id; rows without an id are volume at
their level that no later message can name). An event naming an order that is not resting
(unknown id) is counted and reported, never a crash: a cancel, delete or execution of an unknown
order takes its size off such anonymous volume at its price where there is some (that is how a
LOBSTER day seeded with its first orderbook row is replayed), and otherwise changes nothing; a
modify of an unknown order changes nothing.

A book crossed by feed latency (best bid at or above best ask) is flagged in ``book_crossed``
on that row and kept as it is: it is never silently uncrossed.

The replay is compiled (numba) over dense order and price indices: a few million events per
second on one core (``benchmarks/book.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import polars as pl

from lob_platform.core.columns import BOOK_CROSSED, SOURCE_ROW, EventType, book_columns, book_levels, per_event_type

DEFAULT_LEVELS = 10

NO_CHANGE, ADD, REDUCE, DELETE, MODIFY, EXECUTE = 0, 1, 2, 3, 4, 5
_ACTION = {"submit": ADD, "cancel": REDUCE, "execute_visible": EXECUTE, "delete": DELETE, "modify": MODIFY}
_EMPTY_SIZE = 1e-9  # volume at or below this is an empty level (float noise of fractional coin sizes)
_FIRST_ROWS_SHOWN = 5


@dataclass(frozen=True)
class RebuiltBook:
    """The book after every message (``levels`` levels, ``book_crossed``), and what the replay met."""

    book: pl.DataFrame
    unknown_order_rows: int = 0
    reused_order_rows: int = 0
    crossed_rows: int = 0
    first_rows: dict[str, list[int]] = field(default_factory=dict)  # source rows of the first of each kind

    def summary(self) -> dict[str, int | str]:
        """Counts and first source rows, for metadata and reports."""
        return {"book_unknown_order_rows": self.unknown_order_rows, "book_reused_order_rows": self.reused_order_rows,
                "book_crossed_rows": self.crossed_rows,
                **{f"book_first_{kind}_rows": str(rows) for kind, rows in self.first_rows.items() if rows}}


def rebuild_book(messages: pl.DataFrame, levels: int = DEFAULT_LEVELS, resting: pl.DataFrame | None = None,
                 prune_passed_levels: bool = False, skip: np.ndarray | None = None) -> RebuiltBook:
    """The book after each message of one day (unified message columns, in event order).

    ``resting``: orders resting before the first message (columns side, price, size, optional
    order_id), e.g. a snapshot table or a LOBSTER day's opening book. Rows whose event type, side,
    price or size is missing or not finite change nothing (validation rejects them), and so do the
    rows ``skip`` marks (the validate step passes the rows a message rule rejects, so one
    corrupted message does not leave a wrong order in the book for the rest of the day).

    ``prune_passed_levels``: for a feed known to be free of latency but to omit some events (a
    LOBSTER file holds only those touching its visible levels): a visible execution at a price
    proves every level better than it on its side gone, and a submit every level of the other
    side at or through its price, so those levels are cleared (orders in them become unknown).
    Off by default: on a live feed a crossed book is feed latency, flagged, never uncrossed.
    """
    if levels < 1:
        raise ValueError(f"a book needs at least one level, not {levels}")
    opening = _resting_events(resting)
    events = messages.select(opening.columns)
    if opening.height:
        events = pl.concat([opening, events], how="vertical_relaxed")
    usable = pl.col("side").is_not_null() & pl.col("price").is_finite().fill_null(False) & pl.col("size").is_finite().fill_null(False)
    ids = pl.col("order_id").fill_null(0)
    # dense order indices: the id's offset where ids are compact (the usual case), else its rank
    span = events.select(ids.filter(ids != 0).min().alias("low"), ids.filter(ids != 0).max().alias("high")).row(0)
    compact = span[0] is not None and span[0] > 0 and span[1] - span[0] <= 4 * events.height
    dense = ids - span[0] if compact else ids.rank("dense").cast(pl.Int64) - 1
    columns = events.select(
        usable=usable,
        side=(pl.col("side") == "ask").fill_null(False).cast(pl.Int8),
        order=pl.when(ids <= 0).then(-1).otherwise(dense),
        size=pl.col("size").fill_null(0.0))
    prices = events["price"]
    price_values = prices.drop_nulls().drop_nans().unique().sort().to_numpy()
    price_index = np.searchsorted(price_values, prices.fill_null(0.0).to_numpy()).astype(np.int64)
    order_index = columns["order"].to_numpy()

    usable = columns["usable"].to_numpy()
    if skip is not None:
        usable[opening.height:] &= ~np.asarray(skip, dtype=bool)
    action = np.where(usable, per_event_type(events["event_type"].cast(EventType), _ACTION, NO_CHANGE), NO_CHANGE)
    out, crossed, unknown, reused = _replay(action, columns["side"].to_numpy(), order_index,
                                            price_index, columns["size"].to_numpy(), price_values,
                                            int(order_index.max(initial=-1)) + 1, opening.height, levels,
                                            prune_passed_levels)
    names = book_columns(levels)
    book = pl.DataFrame({name: pl.Series(name, out[i]).fill_nan(None) if "_price_" in name else out[i]
                         for i, name in enumerate(names)}).with_columns(pl.Series(BOOK_CROSSED, crossed))
    rows = messages[SOURCE_ROW] if SOURCE_ROW in messages.columns else pl.int_range(1, messages.height + 1, eager=True)
    first = {kind: rows.filter(pl.Series(mask)).head(_FIRST_ROWS_SHOWN).to_list()
             for kind, mask in (("unknown_order", unknown), ("reused_order", reused), ("crossed", crossed))}
    return RebuiltBook(book, int(unknown.sum()), int(reused.sum()), int(crossed.sum()), first)


def with_rebuilt_book(messages: pl.DataFrame, levels: int = DEFAULT_LEVELS,
                      skip: np.ndarray | None = None) -> tuple[pl.DataFrame, RebuiltBook]:
    """The messages with their rebuilt book columns and ``book_crossed`` (source_row stays last)."""
    rebuilt = rebuild_book(messages, levels, skip=skip)
    rest = [c for c in messages.columns if c != SOURCE_ROW]
    last = [c for c in messages.columns if c == SOURCE_ROW]
    return pl.concat([messages.select(rest), rebuilt.book, messages.select(last)], how="horizontal"), rebuilt


def reproduction_share(shipped: pl.DataFrame) -> dict[str, float]:
    """How much of a shipped book (e.g. a LOBSTER day) the rebuild reproduces when seeded with its
    first row as anonymous resting volume: the share of the later rows equal on level 1 and on
    every level. A LOBSTER message file holds only the events that touch its visible levels, so
    orders deeper in the book come and go unseen and the share is well below 1 on real days."""
    levels = book_levels(shipped.columns)
    if levels == 0 or shipped.height < 2:
        raise ValueError("reproduction_share needs a table with a book and at least two rows")
    first = shipped.row(0, named=True)
    resting = pl.DataFrame(
        [{"side": side, "price": first[f"{side}_price_{lv}"], "size": first[f"{side}_size_{lv}"]}
         for side in ("bid", "ask") for lv in range(1, levels + 1) if first[f"{side}_price_{lv}"] is not None],
        schema={"side": pl.String, "price": pl.Float64, "size": pl.Float64})
    rebuilt = rebuild_book(shipped[1:], levels, resting, prune_passed_levels=True).book
    same = [(rebuilt[c].fill_null(-1.0) == shipped[1:][c].fill_null(-1.0)).to_numpy() for c in book_columns(levels)]
    return {"rows": shipped.height - 1, "level_1": float(np.logical_and.reduce(same[:4]).mean()),
            "every_level": float(np.logical_and.reduce(same).mean())}


def _resting_events(resting: pl.DataFrame | None) -> pl.DataFrame:
    """Resting orders as submits ahead of the day's messages (anonymous where no order id)."""
    columns = {"event_type": pl.String, "order_id": pl.Int64, "side": pl.String, "price": pl.Float64, "size": pl.Float64}
    if resting is None or resting.is_empty():
        return pl.DataFrame(schema=columns)
    order_id = pl.col("order_id") if "order_id" in resting.columns else pl.lit(0)
    return resting.select(event_type=pl.lit("submit"), order_id=order_id, side=pl.col("side").cast(pl.String),
                          price="price", size="size").cast(columns)


@numba.njit(cache=True)
def _replay(action, side, order_index, price_index, size, price_values, n_orders, n_opening, levels, prune):
    """Apply every event; return the top ``levels`` per side after each message (rows after the
    opening ones), the crossed flags, and the rows naming an unknown or reused order.

    A level cleared by pruning starts a new generation; an order rests in the generation of its
    level when it arrived, and one from an older generation is no longer in the book."""
    n = action.shape[0]
    n_prices = price_values.shape[0]
    live = np.zeros(n_orders, dtype=np.bool_)
    order_side = np.zeros(n_orders, dtype=np.int8)
    order_price = np.zeros(n_orders, dtype=np.int64)
    order_size = np.zeros(n_orders)
    order_generation = np.zeros(n_orders, dtype=np.int64)
    generation = np.zeros((2, n_prices), dtype=np.int64)
    known = np.zeros((2, n_prices))  # volume of named orders per side and price
    count = np.zeros((2, n_prices), dtype=np.int64)  # named orders per side and price
    anonymous = np.zeros((2, n_prices))  # volume no message can name (given resting levels)
    best = np.array([-1, -1])  # price index of the best bid / ask, -1 when the side is empty
    out = np.empty((4 * levels, n - n_opening))  # column-major: one contiguous array per book column
    crossed = np.zeros(n - n_opening, dtype=np.bool_)
    unknown = np.zeros(n - n_opening, dtype=np.bool_)
    reused = np.zeros(n - n_opening, dtype=np.bool_)
    for row in range(n):
        kind = action[row]
        o = order_index[row]
        s = side[row]
        p = price_index[row]
        q = size[row]
        named = o >= 0 and live[o] and order_generation[o] == generation[order_side[o], order_price[o]]
        if kind == ADD:
            if o < 0:
                _add(anonymous, count, best, s, p, q, False)
            else:
                if named:
                    _take(known, count, anonymous, best, order_side[o], order_price[o], order_size[o], True)
                    if row >= n_opening:
                        reused[row - n_opening] = True
                live[o] = True
                order_side[o] = s
                order_price[o] = p
                order_size[o] = q
                order_generation[o] = generation[s, p]
                _add(known, count, best, s, p, q, True)
            if prune:  # a submit at or through the other side's levels would have traded
                _clear_through(known, count, anonymous, generation, best, 1 - s, p, True)
        elif kind != NO_CHANGE and not named:
            if row >= n_opening:
                unknown[row - n_opening] = True
            if kind != MODIFY and q > 0:
                _take(known, count, anonymous, best, s, p, min(q, anonymous[s, p]), False)
        elif kind == REDUCE or kind == EXECUTE:
            if q >= order_size[o] - _EMPTY_SIZE:
                live[o] = False
                _take(known, count, anonymous, best, order_side[o], order_price[o], order_size[o], True)
            else:
                order_size[o] -= q
                known[order_side[o], order_price[o]] -= q
        elif kind == DELETE:
            live[o] = False
            _take(known, count, anonymous, best, order_side[o], order_price[o], order_size[o], True)
        elif kind == MODIFY:
            _take(known, count, anonymous, best, order_side[o], order_price[o], order_size[o], True)
            if q > _EMPTY_SIZE:
                order_price[o] = p
                order_size[o] = q
                order_generation[o] = generation[order_side[o], p]
                _add(known, count, best, order_side[o], p, q, True)
            else:
                live[o] = False
        if prune and kind == EXECUTE:  # nothing better than a traded price rests on its side
            _clear_through(known, count, anonymous, generation, best, s, p, False)
        if row >= n_opening:
            k = row - n_opening
            _write_levels(out, k, known, anonymous, count, best, price_values, levels)
            crossed[k] = best[0] >= 0 and best[1] >= 0 and best[0] >= best[1]
    return out, crossed, unknown, reused


@numba.njit(cache=True)
def _clear_through(known, count, anonymous, generation, best, s, p, inclusive):
    """Empty side ``s``'s levels better than price index ``p`` (and ``p`` itself if ``inclusive``)."""
    step = -1 if s == 0 else 1  # from the best towards worse prices
    q = best[s]
    if q < 0:
        return
    while (q > p if s == 0 else q < p) or (inclusive and q == p):
        count[s, q] = 0
        known[s, q] = 0.0
        anonymous[s, q] = 0.0
        generation[s, q] += 1
        q += step
        if not 0 <= q < known.shape[1]:
            break
    while 0 <= q < known.shape[1] and not _occupied(count, anonymous, s, q):
        q += step
    best[s] = q if 0 <= q < known.shape[1] else -1


@numba.njit(cache=True)
def _occupied(count, anonymous, s, p):
    return count[s, p] > 0 or anonymous[s, p] > _EMPTY_SIZE


@numba.njit(cache=True)
def _add(volume, count, best, s, p, q, is_order):
    volume[s, p] += q
    if is_order:
        count[s, p] += 1
    if best[s] < 0 or (p > best[s] if s == 0 else p < best[s]):
        best[s] = p


@numba.njit(cache=True)
def _take(known, count, anonymous, best, s, p, q, is_order):
    """Remove a whole named order (``is_order``) or ``q`` of anonymous volume; move the best
    price past a level that empties."""
    if is_order:
        count[s, p] -= 1
        known[s, p] = 0.0 if count[s, p] == 0 else known[s, p] - q
    else:
        anonymous[s, p] -= q
    if p == best[s] and not _occupied(count, anonymous, s, p):
        step = -1 if s == 0 else 1
        n_prices = known.shape[1]
        while 0 <= p < n_prices and not _occupied(count, anonymous, s, p):
            p += step
        best[s] = p if 0 <= p < n_prices else -1


@numba.njit(cache=True)
def _write_levels(out, k, known, anonymous, count, best, price_values, levels):
    """Output row k: per level ask price, ask size, bid price, bid size (NaN price, 0 size when empty)."""
    n_prices = known.shape[1]
    for s in range(2):
        offset = 0 if s == 1 else 2  # asks first in each level's four columns
        step = -1 if s == 0 else 1
        p = best[s]
        level = 0
        while level < levels and 0 <= p < n_prices:
            if _occupied(count, anonymous, s, p):
                out[4 * level + offset, k] = price_values[p]
                out[4 * level + offset + 1, k] = known[s, p] + anonymous[s, p]
                level += 1
            p += step
        while level < levels:
            out[4 * level + offset, k] = np.nan
            out[4 * level + offset + 1, k] = 0.0
            level += 1
