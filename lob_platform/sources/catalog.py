"""What raw data the data folder holds: one ``DayFile`` per (venue, instrument, trading date), and
the ``Catalogue`` index over them, built once per call or run.

Which files a venue reads, and how, is the venue's format (``lob_platform.sources.registry``);
this module only holds the result of looking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date as Date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from lob_platform.errors import ConfigError, MalformedFileError

if TYPE_CHECKING:
    from lob_platform.sources.registry import Venue


@dataclass(frozen=True)
class DayFile:
    """One instrument-day of raw data and how to read it."""

    venue: str
    instrument: str
    date: Date
    source: str  # what a person should open: a path, or archive!member
    form: str  # csv, zip, parquet
    files: tuple[Path, ...]  # the files on disk it is read from
    read_day: Any = field(repr=False, compare=False)  # the venue format's reader: DayFile -> frame
    levels: int = 0
    handle: Any = None  # what the format needs to read it (a LOBSTER file pair, a path)
    problem: str | None = None  # why this day cannot be read; raised when it is, so only this day fails

    @property
    def stamp_ns(self) -> int:
        """Latest modification time of its files: a new value means the day was delivered again."""
        return max(path.stat().st_mtime_ns for path in self.files)

    def read(self) -> pl.DataFrame:
        """The day in the unified schema, every row of the file kept."""
        if self.problem:
            raise MalformedFileError(self.problem)
        return self.read_day(self)


@dataclass(frozen=True)
class Catalogue:
    """Every instrument-day found in the data folder, looked up without scanning it again."""

    days: tuple[DayFile, ...]

    @classmethod
    def scan(cls, venues: list["Venue"]) -> "Catalogue":
        found = [day for venue in venues for day in venue.discover()]
        return cls(tuple(sorted(found, key=lambda d: (d.venue, d.instrument, d.date))))

    @cached_property
    def _by_key(self) -> dict[tuple[str, str, Date], DayFile]:
        return {(d.venue, d.instrument, d.date): d for d in self.days}

    def find(self, venue: str, instrument: str, day: Date) -> DayFile | None:
        return self._by_key.get((venue, instrument, day))

    def dates_of(self, venue: str, instrument: str) -> list[Date]:
        """Trading dates with a file for this instrument, in order."""
        return [d.date for d in self.days if (d.venue, d.instrument) == (venue, instrument)]

    def instruments_on(self, venue: str, day: Date) -> list[str]:
        return [d.instrument for d in self.days if d.venue == venue and d.date == day]


def discover(root: Path | None = None, only: str | None = None) -> list[DayFile]:
    """Every instrument-day in the data folder (or of venue ``only``), one file each, sorted by
    venue, instrument, date."""
    from lob_platform.sources.registry import load_venues

    return list(Catalogue.scan([v for v in load_venues(root) if only in (None, v.name)]).days)


def parse_date(value: str, what: str = "date") -> Date:
    """An ISO date (YYYY-MM-DD), or a ConfigError saying what was expected."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a date of the form YYYY-MM-DD (e.g. 2012-06-21).") from None
