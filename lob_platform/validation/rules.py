"""Validation rules as polars expressions, one place for both the fast row masks (quarantine,
``validate_messages``) and the pandera schemas built from them.

Each rule is True on the rows that break it. Documented exceptions, from real data:
- hidden executions (``execute_hidden``) may trade at the mid-point, so they sit on a
  half-tick grid;
- anonymous rows (order id 0: hidden fills, status rows) have no identity, so identical
  anonymous rows at one timestamp are separate fills, not duplicates (the AMZN sample day
  has 48 such pairs);
- status rows (halt, quoting/trading resumed) carry no size or price;
- a delete may carry size 0 where the table ships no book of its own: order-by-order feeds
  delete fully filled orders that way.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import reduce
from typing import Callable

import numpy as np
import polars as pl

from lob_platform.core.columns import BOOK_CROSSED, ORDER_EVENT_TYPES, SHIPPED_BOOK, SOURCE_ROW, book_levels
from lob_platform.core.tables import MESSAGES, SNAPSHOTS, TableKind
from lob_platform.validation.book_consistency import book_breaks_messages

TICK_TOLERANCE = 1e-6  # in ticks: float prices may be off the grid by rounding noise only
# Beyond these a number is a corrupted field, not an order (e.g. 9.2e18, near the int64 limit).
# Prices: the dearest quotes are about 1e9 (bitcoin in Indonesian rupiah or Vietnamese dong), so
# the bound leaves three orders of magnitude above them. Sizes: no asset has more than about 1e15
# units in existence (the largest token supplies are some 1e14).
MAX_PLAUSIBLE_PRICE = 1e12
MAX_PLAUSIBLE_SIZE = 1e15

Context = dict  # {"levels": int, "tick": float | None, "columns": list[str], "rebuilt": bool}


@dataclass(frozen=True)
class Rule:
    """A named data rule; ``violations`` builds the row mask, or None where it does not apply."""

    name: str
    description: str
    violations: Callable[[Context], pl.Expr | None]
    needs_book: bool = False  # applies only where the table carries the book after each event
    shipped_book_only: bool = False  # and only where that book is the venue's own, not rebuilt from its messages
    holds_after_quarantine: bool = True  # False: judges rows against their neighbours, so not the stored valid rows


def _is_order_event() -> pl.Expr:
    return pl.col("event_type").is_in(list(ORDER_EVENT_TYPES))


def _off_grid(price: pl.Expr, tick: float) -> pl.Expr:
    ticks = price / tick
    return (ticks - ticks.round()).abs() > TICK_TOLERANCE


def _prices(side: str, levels: int) -> list[pl.Expr]:
    return [pl.col(f"{side}_price_{level}") for level in range(1, levels + 1)]


def _book_levels(levels: int) -> list[tuple[pl.Expr, pl.Expr]]:
    """(price, size) of every book level, both sides."""
    return [(pl.col(f"{side}_price_{level}"), pl.col(f"{side}_size_{level}"))
            for side in ("ask", "bid") for level in range(1, levels + 1)]


def _unsorted(ctx: Context) -> pl.Expr:
    return pl.col("ts_ns").map_batches(out_of_order_rows, return_dtype=pl.Boolean)


def out_of_order_rows(ts: pl.Series) -> pl.Series:
    """The fewest rows whose removal leaves time non-decreasing: the rows outside one longest
    non-decreasing subsequence. A single row that jumps ahead or back is the one flagged, not
    its innocent neighbour. Sorted input (the usual case) costs one vectorised comparison."""
    values = ts.fill_null(strategy="forward").fill_null(strategy="backward")
    if values.len() < 2 or bool((values.diff().drop_nulls() >= 0).all()):
        return pl.Series(ts.name, [False] * ts.len(), dtype=pl.Boolean)
    tails: list[int] = []  # smallest last value of a non-decreasing run of each length
    tail_rows: list[int] = []
    previous = np.full(values.len(), -1)
    for row, value in enumerate(values.to_list()):
        length = bisect.bisect_right(tails, value)
        if length == len(tails):
            tails.append(value)
            tail_rows.append(row)
        else:
            tails[length], tail_rows[length] = value, row
        previous[row] = tail_rows[length - 1] if length else -1
    keep = np.zeros(values.len(), dtype=bool)
    row = tail_rows[-1]
    while row >= 0:
        keep[row] = True
        row = previous[row]
    return pl.Series(ts.name, ~keep)


def _duplicates(anonymous_allowed: bool) -> Callable[[Context], pl.Expr]:
    """Rows after the first with the same values in every column (source_row aside).

    Rows are compared by a 64-bit hash (XOR of independently seeded column hashes): 3x faster
    than comparing structs; a false match has odds of about n^2 / 2^65 (1e-9 for a day of
    150k events), and would be quarantined and reported, never dropped silently.
    """

    def build(ctx: Context) -> pl.Expr:
        columns = [c for c in ctx["columns"] if c != SOURCE_ROW]
        row_hash = reduce(lambda a, b: a.xor(b), [pl.col(c).hash(seed=i) for i, c in enumerate(columns)])
        repeated = ~row_hash.is_first_distinct()
        return repeated & (pl.col("order_id") != 0) if anonymous_allowed else repeated

    return build


def _crossed(ctx: Context) -> pl.Expr | None:
    if ctx["levels"] == 0:
        return None
    return (pl.col("bid_price_1") >= pl.col("ask_price_1")).fill_null(False)


def _inconsistent_levels(ctx: Context) -> pl.Expr | None:
    """Occupied levels strictly worse with depth, empty levels only behind occupied ones and
    with size 0."""
    levels = ctx["levels"]
    if levels == 0:
        return None
    broken = []
    for side, worse in (("ask", pl.Expr.__le__), ("bid", pl.Expr.__ge__)):
        for level in range(1, levels + 1):
            price, size = pl.col(f"{side}_price_{level}"), pl.col(f"{side}_size_{level}")
            broken.append(price.is_null() & (size != 0))
            if level > 1:
                previous = pl.col(f"{side}_price_{level - 1}")
                broken.append(previous.is_null() & price.is_not_null())
                broken.append(worse(price, previous).fill_null(False))
    return pl.any_horizontal(broken)


def _not_positive_size(ctx: Context) -> pl.Expr:
    broken = _is_order_event() & ~(pl.col("size") > 0)
    if ctx["levels"] and not ctx["rebuilt"]:  # a shipped book: its deletes carry the size deleted
        return broken
    return broken & ~((pl.col("event_type") == "delete") & (pl.col("size") == 0))


def _book_breaks_messages(ctx: Context) -> pl.Expr | None:
    """A sequential rule: the compiled replay of validation.book_consistency over the whole table."""
    if ctx["levels"] == 0:
        return None
    columns = ["event_type", "side", "price", "size", *[c for c in ctx["columns"] if c.startswith(("ask_", "bid_"))],
               *[SOURCE_ROW] * (SOURCE_ROW in ctx["columns"])]
    return pl.struct(columns).map_batches(lambda rows: pl.Series(book_breaks_messages(rows.struct.unnest())),
                                          return_dtype=pl.Boolean)


def _submission_not_in_book(ctx: Context) -> pl.Expr | None:
    """A new order whose price lies inside the visible book must show as a level in the row
    after it; a shifted or foreign orderbook file breaks this on many rows."""
    levels = ctx["levels"]
    if levels == 0:
        return None
    checks = []
    for side, deepest in (("bid", pl.min_horizontal), ("ask", pl.max_horizontal)):
        prices = _prices(side, levels)
        full = prices[-1].is_not_null()
        inside = ~full | ((pl.col("price") >= deepest(prices)) if side == "bid" else (pl.col("price") <= deepest(prices)))
        shown = pl.any_horizontal([(p == pl.col("price")).fill_null(False) for p in prices])
        checks.append((pl.col("side") == side) & inside & ~shown)
    return (pl.col("event_type") == "submit") & pl.any_horizontal(checks)


def _book_size_not_positive(ctx: Context) -> pl.Expr | None:
    """An occupied level (one with a price) holding no size: a corrupted size, or an empty-level
    marker with a typo (9999999998 is read as a price)."""
    if ctx["levels"] == 0:
        return None
    empty_occupied = [price.is_not_null() & ~(size > 0) for price, size in _book_levels(ctx["levels"])]
    return pl.any_horizontal(empty_occupied).fill_null(False)


def _book_price_off_grid(ctx: Context) -> pl.Expr | None:
    """An occupied level priced at or below zero or off the tick grid (NaN is off every grid)."""
    if ctx["levels"] == 0 or ctx["tick"] is None:
        return None
    off = [(price <= 0) | _off_grid(price, ctx["tick"]) for price, _ in _book_levels(ctx["levels"])]
    return pl.any_horizontal(off).fill_null(False)  # null: an empty level


def _implausible_magnitude(ctx: Context) -> pl.Expr:
    """A price or size (message or book) beyond its plausible bound, or not finite (polars orders
    NaN above every number)."""
    book = _book_levels(ctx["levels"])
    prices = [pl.col("price"), *(price for price, _ in book)]
    sizes = [pl.col("size"), *(size for _, size in book)]
    too_large = [price.abs() > MAX_PLAUSIBLE_PRICE for price in prices] + [size.abs() > MAX_PLAUSIBLE_SIZE for size in sizes]
    return pl.any_horizontal(too_large).fill_null(False)


MESSAGE_RULES: tuple[Rule, ...] = (
    Rule("no_nulls", "time, order id, size and price are present", lambda ctx: pl.any_horizontal(
        [pl.col(c).is_null() for c in ("ts_ns", "order_id", "size", "price")])),
    Rule("known_codes", "event type and side are codes the venue mapping knows",
         lambda ctx: pl.col("event_type").is_null() | pl.col("side").is_null()),
    Rule("timestamps_sorted", "event time never goes backwards", _unsorted),
    Rule("positive_size", "order events have a size above zero (where no book is shipped, a delete may carry 0: "
         "order-by-order feeds delete filled orders so)", _not_positive_size),
    Rule("price_on_tick_grid", "order events have a positive price on the tick grid (hidden fills: half tick)",
         lambda ctx: None if ctx["tick"] is None else _is_order_event() & (
             ~(pl.col("price") > 0) | pl.when(pl.col("event_type") == "execute_hidden")
             .then(_off_grid(pl.col("price"), ctx["tick"] / 2)).otherwise(_off_grid(pl.col("price"), ctx["tick"])))),
    Rule("order_id_not_negative", "order ids are zero (anonymous) or positive",
         lambda ctx: (pl.col("order_id") < 0).fill_null(False)),
    Rule("magnitudes_plausible", "prices (message and book) are finite and at most 1e12, sizes at most 1e15: "
         "larger is a corrupted field, not an order", _implausible_magnitude),
    Rule("book_not_crossed", "best bid is below best ask (a rebuilt book flags crossed rows in book_crossed instead)", _crossed,
         needs_book=True, shipped_book_only=True),
    Rule("book_follows_messages", "each orderbook row is the previous one with its message applied (levels entering "
         "from beyond the visible window accepted as given)", _book_breaks_messages, needs_book=True, shipped_book_only=True,
         holds_after_quarantine=False),
    Rule("book_levels_consistent", "levels get strictly worse with depth; empty levels (null price, size 0) only at the back",
         _inconsistent_levels, needs_book=True),
    Rule("book_sizes_positive", "occupied book levels have a size above zero", _book_size_not_positive, needs_book=True),
    Rule("book_prices_on_tick_grid", "occupied book levels have a positive price on the tick grid", _book_price_off_grid,
         needs_book=True),
    Rule("book_matches_message", "message and orderbook rows are aligned: a new order inside the visible book shows as a level in its row",
         _submission_not_in_book, needs_book=True),
    Rule("no_duplicate_rows", "no row repeats another exactly (anonymous hidden fills excepted)", _duplicates(True)),
)

SNAPSHOT_RULES: tuple[Rule, ...] = (
    Rule("no_nulls", "exchange and local timestamps and the best level are present", lambda ctx: pl.any_horizontal(
        [pl.col(c).is_null() for c in ("ts_ns", "local_ts_ns", "ask_price_1", "bid_price_1")])),
    Rule("timestamps_sorted", "exchange time never goes backwards", _unsorted),
    Rule("positive_size", "occupied levels have a size above zero", lambda ctx: pl.any_horizontal(
        [pl.col(f"{side}_price_{lv}").is_not_null() & ~(pl.col(f"{side}_size_{lv}") > 0)
         for side in ("ask", "bid") for lv in range(1, ctx["levels"] + 1)])),
    Rule("price_on_tick_grid", "book prices are positive and on the tick grid", lambda ctx: None if ctx["tick"] is None else pl.any_horizontal(
        [(~(p > 0) | _off_grid(p, ctx["tick"])).fill_null(False) for side in ("ask", "bid") for p in _prices(side, ctx["levels"])])),
    Rule("book_not_crossed", "best bid is below best ask", _crossed, needs_book=True),
    Rule("book_levels_consistent", "levels get strictly worse with depth; empty levels only at the back", _inconsistent_levels,
         needs_book=True),
    Rule("no_duplicate_rows", "no snapshot repeats another exactly", _duplicates(False)),
)


_RULES = {MESSAGES: MESSAGE_RULES, SNAPSHOTS: SNAPSHOT_RULES}


def rules_of(kind: TableKind, book: str | None = SHIPPED_BOOK) -> tuple[Rule, ...]:
    """The rules of a table kind for a venue whose book is ``book`` (shipped, rebuilt or None):
    without a book the rules that need one are left out, and with a rebuilt one those that
    judge the venue's own book."""
    return tuple(rule for rule in _RULES[kind]
                 if (book or not rule.needs_book) and (book == SHIPPED_BOOK or not rule.shipped_book_only))


def rule_context(frame_columns: list[str], tick: float | None) -> Context:
    """What the rules need to know of a table; its book is rebuilt when it has ``book_crossed``."""
    return {"levels": book_levels(frame_columns), "tick": tick, "columns": frame_columns,
            "rebuilt": BOOK_CROSSED in frame_columns}


def applicable(rules: tuple[Rule, ...], ctx: Context) -> list[tuple[Rule, pl.Expr]]:
    """The rules that apply to a table with this context, with their violation masks."""
    return [(rule, expr) for rule in rules
            if not (rule.shipped_book_only and ctx["rebuilt"]) and (expr := rule.violations(ctx)) is not None]
