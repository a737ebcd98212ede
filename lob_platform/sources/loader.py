"""Seed 000's public API: ``load_messages`` and ``validate_messages`` over every venue, plus
``load_snapshots`` for crypto depth."""

from __future__ import annotations

import re
from datetime import date as Date, datetime, timedelta
from pathlib import Path

import polars as pl

from lob_platform.errors import ConfigError, DataFileNotFound
from lob_platform.paths import data_root
from lob_platform.sources import catalog, crypto
from lob_platform.sources.schema import message_dtypes, snapshot_dtypes
from lob_platform.sources.tabular import read_exchange_file
from lob_platform.sources.timezones import local_datetime_utc_ns
from lob_platform.sources.venues import CRYPTO_EXCHANGES, LOBSTER_PARQUET, MIC, ExchangeConfig
from lob_platform.validation.report import check_rules, raise_on_failures

_TIME = re.compile(r"^\d{6}\.\d{6}$")
_BUILT_IN = {"lobster": LOBSTER_PARQUET, "mic": MIC}  # zone and tick of the built-in message venues


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

    ``source`` is ``lobster``, ``mic``, or any name with a ``config`` (custom venue). Times are
    ``YYMMDD.HHMMSS`` in the venue's time zone; every trading day in the range is read (weekends
    skipped for weekday venues). A trading day without a file raises DataFileNotFound unless
    ``on_missing="skip"``.
    """
    start, end = parse_times(times)
    root = Path(data_dir) if data_dir is not None else data_root()
    reader, timezone, weekdays_only = _message_reader(product, source, config, root)
    return _read_range(
        _days(start, end, weekdays_only), reader,
        lambda day: f"no {source} data for {product} on {day}: {_expected_file(product, source, config, day, root)}",
        on_missing, message_dtypes(0), (local_datetime_utc_ns(start, timezone), local_datetime_utc_ns(end, timezone)),
    )


def _read_range(days, read_day, describe_missing, on_missing: str, empty_schema, span_ns) -> pl.DataFrame:
    """Every day's frame, concatenated and cut to the requested span; days without a file raise
    or are skipped (``on_missing``)."""
    if on_missing not in ("raise", "skip"):
        raise ConfigError(f"on_missing must be 'raise' or 'skip', not {on_missing!r}.")
    frames = []
    for day in days:
        frame = read_day(day)
        if frame is None:
            if on_missing == "skip":
                continue
            raise DataFileNotFound(
                f"{describe_missing(day)}. Add the file, narrow `times`, or pass on_missing='skip' to skip days without data."
            )
        frames.append(frame)
    if not frames:
        return pl.DataFrame(schema=empty_schema)
    # Days with fewer book levels than others get those levels as empty: null price, size 0.
    combined = pl.concat(frames, how="diagonal_relaxed").with_columns(pl.col(r"^(ask|bid)_size_\d+$").fill_null(0.0))
    return combined.filter(pl.col("ts_ns").is_between(*span_ns))


def _message_reader(product: str, source: str, config: ExchangeConfig | None, root: Path):
    config = config or catalog.custom_venue_configs(root).get(source)
    if config is not None:
        def read_custom(day: Date) -> pl.DataFrame | None:
            path = _config_path(config, product, day)
            return read_exchange_file(path, config) if path.exists() else None

        return read_custom, config.timezone, config.trading_days == "weekdays"
    if source in CRYPTO_EXCHANGES or source == "crypto":
        raise ConfigError(f"{source!r} publishes depth snapshots, not messages: use load_snapshots(exchange, symbol, times).")
    if source not in _BUILT_IN:
        raise ConfigError(
            f"unknown source {source!r}: built-in message sources are {sorted(_BUILT_IN)}; "
            f"for another venue pass config=ExchangeConfig(...) or declare it in {root / catalog.VENUES_FILE}."
        )

    def read_cataloged(day: Date) -> pl.DataFrame | None:
        found = catalog.find_day(source, product, day, root)
        return found.read() if found else None

    return read_cataloged, _BUILT_IN[source].timezone, True


def _expected_file(product: str, source: str, config: ExchangeConfig | None, day: Date, root: Path) -> str:
    if config is not None:
        return f"expected {_config_path(config, product, day)}"
    if source == "lobster":
        return (f"expected {root}/lobster/{product}_{day}_*_message_N.csv + orderbook, a zip of them, "
                f"or {root}/lobster/{product}_{day}_messages.parquet")
    return f"expected {root}/mic/{day}__RTSX_FUT__{product}.parquet"


def _config_path(config: ExchangeConfig, product: str, day: Date) -> Path:
    return config.folder() / config.filename_template.format(product=product, date=day.strftime(config.date_format))


def load_snapshots(
    exchange: str, symbol: str, times, *, data_dir: str | Path | None = None, on_missing: str = "raise"
) -> pl.DataFrame:
    """Crypto depth snapshots of ``exchange``/``symbol`` between two UTC times (YYMMDD.HHMMSS)."""
    start, end = parse_times(times)
    root = Path(data_dir) if data_dir is not None else data_root()
    compact = symbol.replace("-", "").upper()

    def read_day(day: Date) -> pl.DataFrame | None:
        found = catalog.find_day("crypto", f"{exchange}.{compact}", day, root)
        return found.read() if found else None

    return _read_range(
        _days(start, end, weekdays_only=False), read_day,
        lambda day: f"no depth snapshots for {exchange}.{compact} on {day}: expected "
                    f"{root}/crypto/{exchange}_book_snapshot_N_{day}_{compact}.csv[.gz]",
        on_missing, snapshot_dtypes(0), (local_datetime_utc_ns(start, "UTC"), local_datetime_utc_ns(end, "UTC")),
    )


def validate_messages(
    df: pl.DataFrame, source: str, tick_size: float | None = None, config: ExchangeConfig | None = None
) -> None:
    """Raise ValidationError naming each broken rule, its row count and first source rows.

    The tick-grid rule uses ``tick_size``, else the venue's own: the ``config`` passed, a venue
    declared in venues.toml, or the built-in one (LOBSTER $0.01, MIC 10). Without a single
    tick (none, or one per product) the rule is skipped.
    """
    config = config or catalog.custom_venue_configs(data_root()).get(source) or _BUILT_IN.get(source)
    tick = tick_size if tick_size is not None else (config.tick_size if config else None)
    tick = tick if isinstance(tick, (int, float)) else None
    raise_on_failures(check_rules(df, "messages", tick), f"from {source}")


def validate_snapshots(df: pl.DataFrame, symbol: str | None = None, tick_size: float | None = None) -> None:
    """Raise ValidationError naming each rule the depth snapshots break."""
    tick = tick_size if tick_size is not None else crypto.CRYPTO_TICKS.get((symbol or "").replace("-", "").upper())
    raise_on_failures(check_rules(df, "snapshots", tick), f"of {symbol or 'the depth book'}")
