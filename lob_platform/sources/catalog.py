"""What raw data the data folder holds: the venues, and one ``DayFile`` per (venue, instrument,
trading date).

Layout under the data root:
- ``lobster/``: LOBSTER CSV pairs, LOBSTER sample zips, or ``{product}_{date}_messages.parquet``.
  When one day exists in several forms the deepest book wins, then CSV over zip over parquet
  (the choice is reported as the asset's source file).
- ``mic/``: ``{date}__RTSX_FUT__{product}.parquet``.
- ``crypto/``: ``{exchange}_book_snapshot_{N}_{date}_{SYMBOL}.csv[.gz]``; the instrument is
  ``{exchange}.{SYMBOL}``.
- ``venues.toml`` (optional): custom message venues, one table of ``ExchangeConfig`` fields per
  venue, ``data_path`` relative to the data root. Each becomes a venue of the asset graph with
  no code change (see data/README.md).
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import dataclass, replace
from datetime import date as Date, datetime
from pathlib import Path

import polars as pl

from lob_platform.errors import ConfigError, MalformedFileError
from lob_platform.paths import data_root
from lob_platform.sources import crypto, lobster
from lob_platform.sources.tabular import read_exchange_file
from lob_platform.sources.timezones import iso_date
from lob_platform.sources.venues import DATE_DIRECTIVES, LOBSTER_PARQUET, LOBSTER_TICK, MIC, ExchangeConfig

log = logging.getLogger(__name__)
VENUES_FILE = "venues.toml"
_FORM_RANK = {"csv": 0, "zip": 1, "parquet": 2}
_LOBSTER_PARQUET = re.compile(r"^(?P<product>.+)_(?P<date>\d{4}-\d{2}-\d{2})_messages\.parquet$")
_VENUE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Venue:
    """A source of raw data as the asset graph sees it."""

    name: str
    table: str  # "messages" or "snapshots"
    has_book: bool
    description: str
    config: ExchangeConfig | None = None  # venues read through an ExchangeConfig

    def tick_for(self, instrument: str) -> float | None:
        """The instrument's price tick, or None where the venue does not know it."""
        return tick_size(self.name, instrument, self.config)


def tick_size(venue: str, instrument: str, config: ExchangeConfig | None) -> float | None:
    if venue == "lobster":
        return LOBSTER_TICK
    if venue == "crypto":
        return crypto.CRYPTO_TICKS.get(instrument.split(".", 1)[-1])
    return config.tick_for(instrument) if config else None


BUILT_IN = (
    Venue("lobster", "messages", True, "NASDAQ LOBSTER days (message + orderbook CSV pairs, sample zips or "
          "converted parquet), with the book after each message."),
    Venue("mic", "messages", False, "MIC exchange-futures order logs (MOEX codes: 1 add, 0 delete, 2 trade).", MIC),
    Venue("crypto", "snapshots", True, "Crypto L2 depth snapshots (book_snapshot_N CSV) per exchange.symbol."),
)


def venues(root: Path | None = None) -> list[Venue]:
    """The built-in venues plus those declared in ``{data root}/venues.toml``."""
    root = data_root() if root is None else root
    built_in = [replace(v, config=replace(v.config, data_path=str(root / v.name))) if v.config else v for v in BUILT_IN]
    custom = [
        Venue(name, "messages", False, f"Custom venue {name!r} declared in {VENUES_FILE}.", config)
        for name, config in custom_venue_configs(root).items()
    ]
    return [*built_in, *custom]


def custom_venue_configs(root: Path) -> dict[str, ExchangeConfig]:
    path = root / VENUES_FILE
    if not path.exists():
        return {}
    try:
        declared = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error}).") from None
    configs = {}
    for name, fields in declared.items():
        if not _VENUE_NAME.match(name) or name in {v.name for v in BUILT_IN}:
            raise ConfigError(f"{path}: venue name [{name}] must be lower_snake_case and not one of lobster, mic, crypto.")
        if not isinstance(fields, dict):
            raise ConfigError(f"{path}: [{name}] must be a table of ExchangeConfig fields.")
        fields = {**fields, "data_path": str(root / fields.get("data_path", name))}
        try:
            configs[name] = ExchangeConfig(**fields)
        except TypeError as error:
            raise ConfigError(f"{path}: [{name}]: {error}; the fields are those of ExchangeConfig.") from None
    return configs


@dataclass(frozen=True)
class DayFile:
    """One instrument-day of raw data and how to read it."""

    venue: str
    instrument: str
    date: Date
    source: str  # what a person should open: a path, or archive!member
    form: str  # csv, zip, parquet
    levels: int = 0
    lobster_pair: lobster.LobsterFilePair | None = None
    config: ExchangeConfig | None = None
    problem: str | None = None  # why this day cannot be read; raised when it is, so only this day fails

    @property
    def tick(self) -> float | None:
        return tick_size(self.venue, self.instrument, self.config)

    @property
    def files(self) -> list[Path]:
        """The files on disk this day is read from."""
        return self.lobster_pair.files if self.lobster_pair is not None else [Path(self.source)]

    @property
    def stamp_ns(self) -> int:
        """Latest modification time of its files: a new value means the day was delivered again."""
        return max(path.stat().st_mtime_ns for path in self.files)

    def read(self) -> pl.DataFrame:
        """The day in the unified schema, every row of the file kept."""
        if self.problem:
            raise MalformedFileError(self.problem)
        if self.lobster_pair is not None:
            return lobster.read_lobster_pair(self.lobster_pair)
        path = Path(self.source)
        if self.venue == "crypto":
            return crypto.read_book_snapshots(path)
        return read_exchange_file(path, self.config or LOBSTER_PARQUET)


def discover(root: Path | None = None, only: str | None = None) -> list[DayFile]:
    """Every instrument-day in the data folder (or of venue ``only``), one file each, sorted by
    venue, instrument, date."""
    root = data_root() if root is None else root
    found = []
    for venue in venues(root):
        if only not in (None, venue.name):
            continue
        if venue.config is not None:
            found += _config_days(venue.name, venue.config)
        else:
            found += (_lobster_days if venue.name == "lobster" else _crypto_days)(root / venue.name)
    return sorted(found, key=lambda d: (d.venue, d.instrument, d.date))


def find_day(venue: str, instrument: str, day: Date, root: Path | None = None) -> DayFile | None:
    return next((d for d in discover(root, only=venue) if (d.instrument, d.date) == (instrument, day)), None)


def _lobster_days(folder: Path) -> list[DayFile]:
    if not folder.is_dir():
        return []
    candidates = [
        DayFile("lobster", pair.product, pair.date, pair.source, "zip" if pair.archive else "csv", pair.levels, pair,
                problem=pair.problem)
        for pair in lobster.pairs_in_folder(folder) + [p for z in sorted(folder.glob("*.zip")) for p in lobster.pairs_in_archive(z)]
    ]
    for path in sorted(folder.glob("*_messages.parquet")):
        match = _LOBSTER_PARQUET.match(path.name)
        if match and (day := iso_date(match["date"], str(path))):
            candidates.append(DayFile("lobster", match["product"], day, str(path), "parquet"))
    by_day: dict[tuple, list[DayFile]] = {}
    for day in sorted(candidates, key=lambda d: (-d.levels, _FORM_RANK[d.form], d.source)):
        by_day.setdefault((day.instrument, day.date), []).append(day)
    return [_one_form(days) for days in by_day.values()]


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


def _template_pattern(config: ExchangeConfig) -> re.Pattern:
    """A file-name pattern from ``filename_template``: {product} and {date} become groups."""
    date = re.escape(config.date_format)
    for directive, digits in DATE_DIRECTIVES.items():
        date = date.replace(re.escape(directive), digits)
    pattern = re.escape(config.filename_template)
    pattern = pattern.replace(re.escape("{product}"), r"(?P<product>.+?)").replace(re.escape("{date}"), f"(?P<date>{date})")
    return re.compile(f"^{pattern}$")


def _config_days(venue: str, config: ExchangeConfig) -> list[DayFile]:
    """Files under the venue folder whose path (templates may contain folders) fits the template."""
    folder, pattern = config.folder(), _template_pattern(config)
    days = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
        match = pattern.match(path.relative_to(folder).as_posix())
        if match:
            try:
                day = datetime.strptime(match["date"], config.date_format).date()
            except ValueError:
                log.warning("%s: %r is not a date in %s; the file is not read", path, match["date"], config.date_format)
                continue
            form = "parquet" if path.name.endswith(".parquet") else "csv"
            days.append(DayFile(venue, match["product"], day, str(path), form, config=config))
    return days


def _crypto_days(folder: Path) -> list[DayFile]:
    days = []
    for path in sorted(folder.glob("*book_snapshot_*.csv*")) if folder.is_dir() else []:
        match = crypto.SNAPSHOT_FILE.match(path.name)
        if match and (day := iso_date(match["date"], str(path))):
            instrument = f"{match['exchange']}.{match['symbol'].upper()}"
            days.append(DayFile("crypto", instrument, day, str(path), "csv", int(match["levels"])))
    return days


def parse_date(value: str, what: str = "date") -> Date:
    """An ISO date (YYYY-MM-DD), or a ConfigError saying what was expected."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a date of the form YYYY-MM-DD (e.g. 2012-06-21).") from None
