"""The venue registry: everything the platform knows about a venue, in one place.

A ``Venue`` says which kind of table it produces (messages or depth snapshots), whether it ships
a book, its time zone and trading days, its tick per instrument, where its files are, and, through
its format, how to find and read them and what file a missing day should have been. The loader,
validation, features, the Dagster wiring and the synthetic generator ask the venue; nothing else
branches on a venue's name.

Venues are the built-in ones (``lobster``, ``mic``, ``crypto``) plus those declared in
``{data root}/venues.toml``: one table of ``ExchangeConfig`` fields per venue, ``data_path``
relative to the data root (default: the venue's name). A broken file is refused with an error
naming the file, the line and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from datetime import date as Date
from pathlib import Path
from typing import Protocol

import polars as pl

from lob_platform.core.columns import REBUILT_BOOK
from lob_platform.core.settings import data_root
from lob_platform.core.tables import MESSAGES, SNAPSHOTS, TableKind
from lob_platform.errors import ConfigError
from lob_platform.features.order_book import RebuiltBook, with_rebuilt_book
from lob_platform.validation.report import broken_rows
from lob_platform.sources.catalog import Catalogue, DayFile
from lob_platform.sources.crypto import SnapshotFormat
from lob_platform.sources.lobster import LobsterFormat
from lob_platform.sources.tabular import ExchangeFormat
from lob_platform.sources.venues import MIC, ExchangeConfig

VENUES_FILE = "venues.toml"
_VENUE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class VenueFormat(Protocol):
    """How one layout of raw files is found and read (LobsterFormat, SnapshotFormat, ExchangeFormat)."""

    timezone: str
    weekdays_only: bool
    book: str | None  # SHIPPED_BOOK, REBUILT_BOOK or None; a rebuilt one also has book_levels
    event_types: frozenset[str]  # the event types its messages can carry
    clock_ns: int  # the resolution of its timestamps, in nanoseconds

    def tick_for(self, instrument: str) -> float | None: ...
    def discover(self, venue: str, folder: Path) -> list[DayFile]: ...
    def read(self, day: DayFile) -> pl.DataFrame: ...
    def expected_file(self, folder: Path, instrument: str, day: Date) -> str: ...


@dataclass(frozen=True)
class Venue:
    """A source of raw data as every layer sees it."""

    name: str
    kind: TableKind
    description: str
    folder: Path
    format: VenueFormat

    @property
    def book(self) -> str | None:
        """Where the venue's book comes from: its files (SHIPPED_BOOK), its order-by-order
        messages (REBUILT_BOOK, ``book_levels`` levels), or nowhere (None)."""
        return self.format.book

    @property
    def has_book(self) -> bool:
        return self.format.book is not None

    @property
    def reports_executions(self) -> bool:
        """Whether its messages report visible executions (what a market maker's quotes fill against)."""
        return "execute_visible" in self.format.event_types

    @property
    def rebuilds_book(self) -> bool:
        return self.format.book == REBUILT_BOOK

    def with_book(self, messages: pl.DataFrame, tick: float | None) -> tuple[pl.DataFrame, RebuiltBook | None]:
        """The messages with their rebuilt book where the venue rebuilds one (else as they are).
        The rows a message rule rejects do not enter the book: a corrupted order would otherwise
        stay in it and every later row break the book rules."""
        if not self.rebuilds_book:
            return messages, None
        return with_rebuilt_book(messages, self.format.book_levels, skip=broken_rows(messages, self.kind, tick))

    @property
    def timezone(self) -> str:
        """The zone of the venue's trading date and of ``load_messages`` times."""
        return self.format.timezone

    @property
    def weekdays_only(self) -> bool:
        return self.format.weekdays_only

    def tick_for(self, instrument: str) -> float | None:
        """The instrument's price tick, or None where the venue does not know it."""
        return self.format.tick_for(instrument)

    def discover(self) -> list[DayFile]:
        return self.format.discover(self.name, self.folder)

    def catalogue(self) -> Catalogue:
        return Catalogue.scan([self])

    def expected_file(self, instrument: str, day: Date) -> str:
        return self.format.expected_file(self.folder, instrument, day)


def built_in_venues(root: Path) -> list[Venue]:
    return [
        Venue("lobster", MESSAGES, "NASDAQ LOBSTER days (message + orderbook CSV pairs, sample zips or converted "
              "parquet), with the book after each message.", root / "lobster", LobsterFormat()),
        Venue("mic", MESSAGES, "MIC exchange-futures order logs (MOEX codes: 1 add, 0 delete, 2 trade).", root / "mic",
              ExchangeFormat(MIC)),
        Venue("crypto", SNAPSHOTS, "Crypto L2 depth snapshots (book_snapshot_N CSV) per exchange.symbol.", root / "crypto",
              SnapshotFormat()),
    ]


def exchange_venue(name: str, config: ExchangeConfig, description: str | None = None) -> Venue:
    """A message venue read through an ``ExchangeConfig`` (its ``data_path`` is the folder)."""
    return Venue(name, MESSAGES, description or f"Custom venue {name!r}.", config.folder(), ExchangeFormat(config))


def load_venues(root: Path | None = None) -> list[Venue]:
    """The built-in venues plus those declared in ``{root}/venues.toml`` (root: the data root)."""
    root = data_root() if root is None else Path(root)
    return [*built_in_venues(root), *declared_venues(root)]


def venue_named(name: str, root: Path | None = None) -> Venue:
    venues = load_venues(root)
    found = next((v for v in venues if v.name == name), None)
    if found is None:
        raise ConfigError(
            f"unknown source {name!r}: the venues are {[v.name for v in venues]}; for another venue pass "
            f"config=ExchangeConfig(...) or declare it in {(data_root() if root is None else root) / VENUES_FILE}.")
    return found


def declared_venues(root: Path) -> list[Venue]:
    path = root / VENUES_FILE
    if not path.exists():
        return []
    text = path.read_text()
    try:
        declared = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error}).") from None
    reserved = {v.name for v in built_in_venues(root)}
    allowed = {f.name for f in fields(ExchangeConfig)}
    venues = []
    for name, table in declared.items():
        where = f"{path}, line {_line_of(text, name)}"
        if not _VENUE_NAME.match(name) or name in reserved:
            raise ConfigError(f"{where}: venue name [{name}] must be lower_snake_case and not one of {sorted(reserved)}.")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{name}] must be a table of ExchangeConfig fields.")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise ConfigError(f"{path}, line {_line_of(text, name, unknown[0])}: [{name}] field {unknown[0]!r} is not an "
                              f"ExchangeConfig field; the fields are {sorted(allowed - {'data_path'}) + ['data_path']}.")
        try:
            config = ExchangeConfig(**{**table, "data_path": str(root / table.get("data_path", name))})
        except (TypeError, ConfigError) as error:
            field = next((f for f in table if f in str(error)), None)
            raise ConfigError(f"{path}, line {_line_of(text, name, field)}: [{name}]: {error}") from None
        venues.append(exchange_venue(name, config, f"Custom venue {name!r} declared in {VENUES_FILE}."))
    return venues


def _line_of(text: str, table: str, field: str | None = None) -> int:
    """Line (1-based) of ``[table]`` or of ``field`` inside it or its sub-tables; the table's line
    when the field is not written there."""
    header = re.compile(rf"^\s*\[\s*{re.escape(table)}(\.[^\]]*)?\s*\]")
    key = re.compile(rf"^\s*\"?{re.escape(field)}\"?\s*=") if field else None
    table_line, inside = 1, False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("["):
            inside = bool(header.match(line))
            if inside and table_line == 1:
                table_line = number
        elif inside and key is not None and key.match(line):
            return number
    return table_line

