"""Seed 000's public API: ``load_messages`` and ``validate_messages`` over every venue, plus
``load_snapshots`` for crypto depth."""

from __future__ import annotations

import re
from datetime import date as Date, datetime, timedelta
from pathlib import Path

import polars as pl

from lob_platform.core.settings import data_root
from lob_platform.core.tables import MESSAGES, SNAPSHOTS
from lob_platform.errors import ConfigError, DataFileNotFound
from lob_platform.sources.crypto import instrument_name
from lob_platform.sources.registry import Venue, exchange_venue, load_venues, venue_named
from lob_platform.sources.timezones import local_datetime_utc_ns
from lob_platform.sources.venues import ExchangeConfig
from lob_platform.validation.report import check_rules, raise_on_failures

_TIME = re.compile(r"^\d{6}\.\d{6}$")


def parse_times(times) -> tuple[datetime, datetime]:
    """``["YYMMDD.HHMMSS", "YYMMDD.HHMMSS"]`` -> (start, end) naive local datetimes."""
    if isinstance(times, str) or len(times) != 2:
        raise ConfigError(f"times must be a pair [start, end] like ['200622.093000', '200622.160000'], got {times!r}.")
    parsed = []
    for value in times:
        try:
            if not _TIME.match(str(value)):
                raise ValueError
            parsed.append(datetime.strptime(str(value), "%y%m%d.%H%M%S"))
        except ValueError:
            raise ConfigError(f"time {value!r} is not YYMMDD.HHMMSS (e.g. 200622.093000 = 2020-06-22 09:30:00).") from None
    if parsed[0] > parsed[1]:
        raise ConfigError(f"times start {times[0]} is after end {times[1]}.")
    return parsed[0], parsed[1]


def _days(start: datetime, end: datetime, weekdays_only: bool) -> list[Date]:
    span = (end.date() - start.date()).days
    days = [start.date() + timedelta(d) for d in range(span + 1)]
    return [d for d in days if not weekdays_only or d.weekday() < 5]


def load_messages(
    product: str,
    source: str,
    times,
    config: ExchangeConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    on_missing: str = "raise",
) -> pl.DataFrame:
    """Messages of ``product`` from ``source`` between two local times, in the unified schema.

    ``source`` is a venue of the registry (``lobster``, ``mic``, one declared in venues.toml), or
    any name with a ``config`` (custom venue). Times are ``YYMMDD.HHMMSS`` in the venue's time
    zone; every trading day in the range is read (weekends skipped for weekday venues). A trading
    day without a file raises DataFileNotFound unless ``on_missing="skip"``.
    """
    venue = _message_venue(source, config, data_dir)
    return _read_range(venue, product, times, on_missing)


def load_snapshots(
    exchange: str, symbol: str, times, *, data_dir: str | Path | None = None, on_missing: str = "raise"
) -> pl.DataFrame:
    """Crypto depth snapshots of ``exchange``/``symbol`` between two UTC times (YYMMDD.HHMMSS)."""
    venue = venue_named("crypto", _root(data_dir))
    return _read_range(venue, instrument_name(exchange, symbol), times, on_missing)


def _root(data_dir: str | Path | None) -> Path:
    return Path(data_dir) if data_dir is not None else data_root()


def _message_venue(source: str, config: ExchangeConfig | None, data_dir) -> Venue:
    if config is not None:
        return exchange_venue(source, config)
    venues = load_venues(_root(data_dir))
    if any(source == v.name or source in getattr(v.format, "exchanges", ()) for v in venues if v.kind is not MESSAGES):
        raise ConfigError(f"{source!r} publishes depth snapshots, not messages: use load_snapshots(exchange, symbol, times).")
    return venue_named(source, _root(data_dir))


def _read_range(venue: Venue, instrument: str, times, on_missing: str) -> pl.DataFrame:
    """Every trading day's frame in the range, concatenated and cut to the requested span; days
    without a file raise or are skipped (``on_missing``). The venue's folder is indexed once."""
    if on_missing not in ("raise", "skip"):
        raise ConfigError(f"on_missing must be 'raise' or 'skip', not {on_missing!r}.")
    start, end = parse_times(times)
    catalogue = venue.catalogue()
    frames = []
    for day in _days(start, end, venue.weekdays_only):
        found = catalogue.find(venue.name, instrument, day)
        if found is None:
            if on_missing == "skip":
                continue
            raise DataFileNotFound(
                f"no {venue.name} data for {instrument} on {day}: expected {venue.expected_file(instrument, day)}. "
                "Add the file, narrow `times`, or pass on_missing='skip' to skip days without data."
            )
        frames.append(found.read())
    if not frames:
        return pl.DataFrame(schema=venue.kind.dtypes(0))
    # Days with fewer book levels than others get those levels as empty: null price, size 0.
    combined = pl.concat(frames, how="diagonal_relaxed").with_columns(pl.col(r"^(ask|bid)_size_\d+$").fill_null(0.0))
    span = (local_datetime_utc_ns(start, venue.timezone), local_datetime_utc_ns(end, venue.timezone))
    return combined.filter(pl.col("ts_ns").is_between(*span))


def validate_messages(
    df: pl.DataFrame, source: str, tick_size: float | None = None, config: ExchangeConfig | None = None,
    product: str | None = None,
) -> None:
    """Raise ValidationError naming each broken rule, its row count and first source rows.

    The tick-grid rule uses ``tick_size``, else the venue's tick for ``product`` (the one the
    asset path uses): the ``config`` passed, or the registry's venue ``source``. Where the venue
    is unknown, or has no single tick and no product is given, the rule is skipped.
    """
    if tick_size is None:
        venue = exchange_venue(source, config) if config else next((v for v in load_venues() if v.name == source), None)
        tick_size = venue.tick_for(product or "") if venue else None
    raise_on_failures(check_rules(df, MESSAGES, tick_size), f"from {source}")


def validate_snapshots(df: pl.DataFrame, symbol: str | None = None, tick_size: float | None = None) -> None:
    """Raise ValidationError naming each rule the depth snapshots break."""
    tick = tick_size if tick_size is not None else venue_named("crypto").tick_for(instrument_name("", symbol or ""))
    raise_on_failures(check_rules(df, SNAPSHOTS, tick), f"of {symbol or 'the depth book'}")
