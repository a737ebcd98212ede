"""LOBSTER (NASDAQ) readers: the original message + orderbook CSV pair, the sample zip archives,
and the converted ``{product}_{date}_messages.parquet`` layout.

LOBSTER rules applied here (from LOBSTER's ReadMe, 01 Sept 2013):
- time is seconds after midnight, New York time; it becomes UTC epoch nanoseconds;
- prices are dollars x 10000 and become dollars;
- event type 7 (trading halt) rows carry a status in their price field: -1 halt, 0 quoting
  resumes, 1 trading resumes; they become ``halt`` / ``quoting_resumed`` / ``trading_resumed``
  with price and size 0. No row is dropped: the output has exactly the file's rows;
- empty book levels (price +-9999999999, size 0) become a null price with size 0;
- a file's rows belong to the time window in its name (StartTime_EndTime, ms after midnight),
  and the orderbook has the number of levels its name says; a row outside the window (a
  corrupted time, nan, inf) or a book of another depth is a MalformedFileError, never filtered.
  The converted parquet layout has no window in its name: its rows must lie in its own day.
"""

from __future__ import annotations

import logging
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date as Date, timedelta
from functools import lru_cache
from pathlib import Path

import polars as pl

from lob_platform.errors import MalformedFileError
from lob_platform.sources.catalog import DayFile
from lob_platform.sources.csv_input import read_typed_csv
from lob_platform.sources.tabular import read_exchange_file
from lob_platform.core.columns import SHIPPED_BOOK, EventType, Side, book_columns
from lob_platform.sources.timezones import iso_date, local_midnight_utc_ns
from lob_platform.sources.venues import LOBSTER_EVENT_CODES, LOBSTER_PARQUET, LOBSTER_TICK, LOBSTER_TIMEZONE

log = logging.getLogger(__name__)
EMPTY_LEVEL_PRICE = 9_999_999_999
PRICE_SCALE = 1e-4
DAY_MS = 86_400_000
_MAX_REPORTED = 5

_HALT_STATUS = {-1: "halt", 0: "quoting_resumed", 1: "trading_resumed"}
_MESSAGE_SCHEMA = {
    "time_s": pl.Float64(),
    "event_code": pl.Int64(),
    "order_id": pl.Int64(),
    "size": pl.Int64(),
    "price": pl.Int64(),
    "direction": pl.Int64(),
}
_PAIR_NAME = re.compile(
    r"^(?P<product>.+?)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)


@dataclass(frozen=True)
class LobsterFilePair:
    """One LOBSTER day: where its message and orderbook files are (on disk or in a zip)."""

    product: str
    date: Date
    levels: int
    message: str  # path, or member name when ``archive`` is set; "" when missing
    orderbook: str
    archive: Path | None = None
    problem: str | None = None  # why the day cannot be read (e.g. a file of the pair is missing)
    window_ms: tuple[int, int] = (0, DAY_MS)  # StartTime, EndTime of the name: ms after midnight

    @property
    def source(self) -> str:
        """What a person opens to see the messages: the message file, or archive!member."""
        return self.describe(self.message or self.orderbook)

    @property
    def files(self) -> list[Path]:
        """The files on disk this day is read from."""
        return [self.archive] if self.archive else [Path(name) for name in (self.message, self.orderbook) if name]

    def read_member(self, name: str) -> bytes:
        """One file's bytes; safe to call from several threads (each opens its own handle)."""
        if self.archive is None:
            return Path(name).read_bytes()
        with zipfile.ZipFile(self.archive) as zf:
            return zf.read(name)

    def describe(self, member: str) -> str:
        return f"{self.archive}!{member}" if self.archive else member


def parse_pair_name(name: str) -> dict | None:
    """Fields of a LOBSTER file name (product, date, kind, levels) or None if it is not one."""
    match = _PAIR_NAME.match(Path(name).name)
    return match.groupdict() if match else None


def pairs_in_archive(archive: Path) -> list[LobsterFilePair]:
    """Every message/orderbook pair inside a LOBSTER zip archive (incomplete ones carry a problem).
    An archive is opened once per version of it (path, size, modification time), not per lookup."""
    stat = archive.stat()
    return list(_archive_pairs(archive, stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=4096)
def _archive_pairs(archive: Path, size: int, mtime_ns: int) -> tuple[LobsterFilePair, ...]:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        log.warning("%s is not a readable zip archive (%s); it is not read: download it again", archive, error)
        return ()
    return tuple(_pair_up(names, archive))


def pairs_in_folder(folder: Path) -> list[LobsterFilePair]:
    """Every message/orderbook pair of CSV files in a folder (incomplete ones carry a problem)."""
    return _pair_up([str(p) for p in sorted(folder.glob("*.csv"))], None)


def _pair_up(names: list[str], archive: Path | None) -> list[LobsterFilePair]:
    found: dict[tuple, dict[str, str]] = {}
    for name in names:
        fields = parse_pair_name(name)
        if fields and iso_date(fields["date"], name) is not None:
            key = (fields["product"], fields["date"], fields["start"], fields["end"], int(fields["levels"]))
            found.setdefault(key, {})[fields["kind"]] = name
    pairs = []
    for (product, day, start, end, levels), kinds in sorted(found.items()):
        present = next(iter(kinds.values()))
        problem = None
        if "message" not in kinds or "orderbook" not in kinds:
            absent = "orderbook" if "message" in kinds else "message"
            problem = (
                f"{archive or present}: LOBSTER {absent} file for {product} {day} ({levels} levels) is missing "
                f"beside {Path(present).name}; LOBSTER days come as a message + orderbook pair: add the missing file."
            )
        elif not int(start) <= int(end) <= DAY_MS:
            problem = (
                f"{archive or present}: the time window {start}_{end} in the name of {Path(present).name} is not "
                "StartTime <= EndTime within one day (ms after midnight, e.g. 34200000_57600000): rename the pair."
            )
        pairs.append(LobsterFilePair(product, Date.fromisoformat(day), levels, kinds.get("message", ""),
                                     kinds.get("orderbook", ""), archive, problem, (int(start), int(end))))
    return pairs


def read_lobster_pair(pair: LobsterFilePair) -> pl.DataFrame:
    """One LOBSTER day in the unified message schema, book levels included, every row kept.

    The two files are inflated and parsed in parallel threads (zlib and polars release the GIL).
    """
    if pair.problem:
        raise MalformedFileError(pair.problem)
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending_book = pool.submit(_read_orderbook, pair)
        messages = read_typed_csv(
            pair.read_member(pair.message), pair.describe(pair.message), _MESSAGE_SCHEMA, has_header=False
        )
        book = pending_book.result()
    _require_window(messages, pair)
    if book.height != messages.height:
        raise MalformedFileError(
            f"{pair.describe(pair.orderbook)} has {book.height} rows but "
            f"{pair.describe(pair.message)} has {messages.height}: row k of the orderbook is the "
            "book after message k, so the files must have equal rows. Re-export the pair."
        )
    midnight_ns = local_midnight_utc_ns(pair.date, LOBSTER_TIMEZONE)
    return pl.concat([_unify_messages(messages, midnight_ns), _unify_book(book)], how="horizontal")


def _read_orderbook(pair: LobsterFilePair) -> pl.DataFrame:
    data, origin = pair.read_member(pair.orderbook), pair.describe(pair.orderbook)
    levels = _count_fields(data, origin) // 4
    if levels != pair.levels:
        raise MalformedFileError(
            f"{origin}: line 1 has {4 * levels} fields ({levels} levels) but the file name says {pair.levels} "
            f"levels (..._orderbook_{pair.levels}.csv). Re-export the pair, or rename both files to the real depth."
        )
    return read_typed_csv(data, origin, {name: pl.Int64() for name in book_columns(levels)}, has_header=False)


def _require_window(messages: pl.DataFrame, pair: LobsterFilePair) -> None:
    """Every message time lies in the window of the file name (nan and inf do not)."""
    start_s, end_s = (ms / 1000 for ms in pair.window_ms)
    outside = ~pl.col("time_s").is_between(start_s, end_s)
    if not messages.select(outside.any()).item():
        return
    bad = messages.with_row_index("line", 1).filter(outside).select("line", "time_s")
    shown = ", ".join(f"line {line} has time {time_s}" for line, time_s in bad.head(_MAX_REPORTED).iter_rows())
    raise MalformedFileError(
        f"{pair.describe(pair.message)}: {bad.height} row(s) lie outside the file's time window "
        f"{start_s:g}-{end_s:g} s after midnight ({_clock(start_s)}-{_clock(end_s)}, from its name): {shown}. "
        "A LOBSTER file holds only its window's events: repair the time field or re-export the pair "
        "(nothing from it was loaded)."
    )


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 3600:02d}:{int(seconds) % 3600 // 60:02d}:{int(seconds) % 60:02d}"


def _unify_messages(messages: pl.DataFrame, midnight_ns: int) -> pl.DataFrame:
    is_status = pl.col("event_code") == 7
    event_type = (
        pl.when(is_status)
        .then(pl.col("price").replace_strict(_HALT_STATUS, default=None, return_dtype=EventType))
        .otherwise(pl.col("event_code").replace_strict(LOBSTER_EVENT_CODES, default=None, return_dtype=EventType))
    )
    return messages.select(
        ts_ns=(pl.col("time_s") * 1e9).round().cast(pl.Int64) + midnight_ns,
        event_type=event_type,
        order_id=pl.col("order_id"),
        size=pl.when(is_status).then(0).otherwise(pl.col("size")).cast(pl.Float64),
        price=pl.when(is_status).then(0).otherwise(pl.col("price")).cast(pl.Float64) * PRICE_SCALE,
        side=pl.col("direction").replace_strict({1: "bid", -1: "ask"}, default=None, return_dtype=Side),
        source_row=pl.int_range(1, pl.len() + 1, dtype=pl.UInt32),
    )


def _unify_book(book: pl.DataFrame) -> pl.DataFrame:
    def convert(name: str) -> pl.Expr:
        column = pl.col(name)
        if "_price_" in name:
            return pl.when(column.abs() == EMPTY_LEVEL_PRICE).then(None).otherwise(column * PRICE_SCALE).alias(name)
        return column.cast(pl.Float64)

    return book.select([convert(name) for name in book.columns])


def _count_fields(data: bytes, origin: str) -> int:
    first_line = data.split(b"\n", 1)[0].strip()
    n_fields = len(first_line.split(b",")) if first_line else 0
    if n_fields == 0 or n_fields % 4:
        raise MalformedFileError(
            f"{origin}: line 1 has {n_fields} fields; a LOBSTER orderbook row has 4 per level "
            "(ask price, ask size, bid price, bid size). Is this the orderbook file?"
        )
    return n_fields



# --------------------------------------------------------------------------- the LOBSTER venue format

_FORM_RANK = {"csv": 0, "zip": 1, "parquet": 2}
_CONVERTED = re.compile(r"^(?P<product>.+)_(?P<date>\d{4}-\d{2}-\d{2})_messages\.parquet$")


class LobsterFormat:
    """LOBSTER days in a folder: CSV pairs, sample zips, or the converted parquet layout.

    When one day exists in several forms the deepest book wins, then CSV over zip over parquet
    (the choice is reported as the asset's source file); several time windows of one day are
    refused, not guessed.
    """

    timezone = LOBSTER_TIMEZONE
    weekdays_only = True
    book = SHIPPED_BOOK
    event_types = frozenset(LOBSTER_EVENT_CODES.values())
    clock_ns = 1  # seconds after midnight with 9 decimals

    def tick_for(self, instrument: str) -> float:
        return LOBSTER_TICK

    def discover(self, venue: str, folder: Path) -> list[DayFile]:
        if not folder.is_dir():
            return []
        pairs = pairs_in_folder(folder) + [p for z in sorted(folder.glob("*.zip")) for p in pairs_in_archive(z)]
        candidates = [
            DayFile(venue, pair.product, pair.date, pair.source, "zip" if pair.archive else "csv", tuple(pair.files),
                    self.read, pair.levels, pair, pair.problem)
            for pair in pairs
        ]
        for path in sorted(folder.glob("*_messages.parquet")):
            match = _CONVERTED.match(path.name)
            if match and (day := iso_date(match["date"], str(path))):
                candidates.append(DayFile(venue, match["product"], day, str(path), "parquet", (path,), self.read, 0, path))
        by_day: dict[tuple, list[DayFile]] = {}
        for day in sorted(candidates, key=lambda d: (-d.levels, _FORM_RANK[d.form], d.source)):
            by_day.setdefault((day.instrument, day.date), []).append(day)
        return [_one_form(days) for days in by_day.values()]

    def read(self, day: DayFile) -> pl.DataFrame:
        if isinstance(day.handle, LobsterFilePair):
            return read_lobster_pair(day.handle)
        return _require_own_day(read_exchange_file(day.handle, LOBSTER_PARQUET), day.date, day.handle)

    def expected_file(self, folder: Path, instrument: str, day: Date) -> str:
        return (f"{folder}/{instrument}_{day}_*_message_N.csv + orderbook, a zip of them, "
                f"or {folder}/{instrument}_{day}_messages.parquet")


def _require_own_day(frame: pl.DataFrame, day: Date, path: Path) -> pl.DataFrame:
    """The converted layout names a day, not a window: every row lies in that New York day."""
    start, end = (local_midnight_utc_ns(d, LOBSTER_TIMEZONE) for d in (day, day + timedelta(days=1)))
    outside = ~pl.col("ts_ns").is_between(start, end, closed="left")
    if not frame.select(outside.any()).item():
        return frame
    bad = frame.filter(outside)
    times = bad.head(_MAX_REPORTED).select("source_row", pl.from_epoch("ts_ns", "ns").dt.to_string("%Y-%m-%dT%H:%M:%S%.f"))
    shown = ", ".join(f"row {row} has time {time} UTC" for row, time in times.iter_rows())
    raise MalformedFileError(
        f"{path}: {bad.height} row(s) lie outside the file's own day {day} ({LOBSTER_TIMEZONE}, from its name): "
        f"{shown}. A day's file holds only that day's events: repair the time field or move the rows to their "
        "own day's file (nothing from it was loaded)."
    )


def _one_form(days: list[DayFile]) -> DayFile:
    """The preferred form of a LOBSTER day; several time windows of it are refused, not guessed."""
    best = days[0]
    windows = [d for d in days if (d.levels, d.form) == (best.levels, best.form)]
    if len(windows) == 1:
        return best
    sources = ", ".join(d.source for d in windows)
    return replace(best, problem=(
        f"{best.instrument} {best.date} comes in {len(windows)} time windows ({sources}); the platform reads "
        "one file pair per day: merge them into one pair or keep one."))
