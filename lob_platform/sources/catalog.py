"""What raw data the data folder holds: one ``DayFile`` per (venue, instrument, trading date).

Layout under the data root:
- ``lobster/``: LOBSTER CSV pairs, LOBSTER sample zips, or ``{product}_{date}_messages.parquet``.
  When one day exists in several forms the deepest book wins, then CSV over zip over parquet
  (the choice is reported as the asset's source file).
- ``mic/``: ``{date}__RTSX_FUT__{product}.parquet``.
- ``crypto/``: ``{exchange}_book_snapshot_{N}_{date}_{SYMBOL}.csv[.gz]``; the instrument is
  ``{exchange}.{SYMBOL}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date as Date, datetime
from pathlib import Path

import polars as pl

from lob_platform.errors import ConfigError
from lob_platform.paths import data_root
from lob_platform.sources import crypto, lobster
from lob_platform.sources.tabular import read_exchange_file
from lob_platform.sources.venues import LOBSTER_PARQUET, LOBSTER_TICK, MIC

VENUES = ("lobster", "mic", "crypto")
_FORM_RANK = {"csv": 0, "zip": 1, "parquet": 2}
_LOBSTER_PARQUET = re.compile(r"^(?P<product>.+)_(?P<date>\d{4}-\d{2}-\d{2})_messages\.parquet$")
_MIC_FILE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})__RTSX_FUT__(?P<product>.+)\.parquet$")


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

    @property
    def tick(self) -> float | None:
        if self.venue == "lobster":
            return LOBSTER_TICK
        if self.venue == "mic":
            return MIC.tick_for(self.instrument)
        return crypto.CRYPTO_TICKS.get(self.instrument.split(".", 1)[1])

    def read(self) -> pl.DataFrame:
        """The day in the unified schema, every row of the file kept."""
        if self.lobster_pair is not None:
            return lobster.read_lobster_pair(self.lobster_pair)
        path = Path(self.source)
        if self.venue == "crypto":
            return crypto.read_book_snapshots(path)
        return read_exchange_file(path, LOBSTER_PARQUET if self.venue == "lobster" else MIC)


def discover(root: Path | None = None) -> list[DayFile]:
    """Every instrument-day in the data folder, one file each, sorted by venue, instrument, date."""
    root = data_root() if root is None else root
    found = _lobster_days(root / "lobster") + _mic_days(root / "mic") + _crypto_days(root / "crypto")
    return sorted(found, key=lambda d: (d.venue, d.instrument, d.date))


def find_day(venue: str, instrument: str, day: Date, root: Path | None = None) -> DayFile | None:
    return next((d for d in discover(root) if (d.venue, d.instrument, d.date) == (venue, instrument, day)), None)


def _lobster_days(folder: Path) -> list[DayFile]:
    if not folder.is_dir():
        return []
    candidates = [
        DayFile("lobster", pair.product, pair.date, pair.origin, "zip" if pair.archive else "csv", pair.levels, pair)
        for pair in lobster.pairs_in_folder(folder) + [p for z in sorted(folder.glob("*.zip")) for p in lobster.pairs_in_archive(z)]
    ]
    for path in sorted(folder.glob("*_messages.parquet")):
        match = _LOBSTER_PARQUET.match(path.name)
        if match:
            candidates.append(DayFile("lobster", match["product"], Date.fromisoformat(match["date"]), str(path), "parquet"))
    best: dict[tuple, DayFile] = {}
    for day in sorted(candidates, key=lambda d: (-d.levels, _FORM_RANK[d.form], d.source)):
        best.setdefault((day.instrument, day.date), day)
    return list(best.values())


def _mic_days(folder: Path) -> list[DayFile]:
    days = []
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        match = _MIC_FILE.match(path.name)
        if match:
            days.append(DayFile("mic", match["product"], Date.fromisoformat(match["date"]), str(path), "parquet"))
    return days


def _crypto_days(folder: Path) -> list[DayFile]:
    days = []
    for path in sorted(folder.glob("*book_snapshot_*.csv*")) if folder.is_dir() else []:
        match = crypto.SNAPSHOT_FILE.match(path.name)
        if match:
            instrument = f"{match['exchange']}.{match['symbol'].upper()}"
            days.append(DayFile("crypto", instrument, Date.fromisoformat(match["date"]), str(path), "csv", int(match["levels"])))
    return days


def parse_date(value: str, what: str = "date") -> Date:
    """An ISO date (YYYY-MM-DD), or a ConfigError saying what was expected."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a date of the form YYYY-MM-DD (e.g. 2012-06-21).") from None
