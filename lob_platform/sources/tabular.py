"""Read one message file of any ``ExchangeConfig`` venue (parquet or CSV) into the unified schema."""

from __future__ import annotations

import logging
import re
from datetime import date as Date, datetime
from pathlib import Path
from typing import Any, Mapping

import polars as pl

from lob_platform.errors import ConfigError, MalformedFileError
from lob_platform.sources.csv_input import header_columns, read_bytes, read_typed_csv
from lob_platform.core.columns import REBUILT_BOOK, EventType, Side
from lob_platform.sources.catalog import DayFile
from lob_platform.sources.venues import DATE_DIRECTIVES, TIME_UNITS, ExchangeConfig

log = logging.getLogger(__name__)

_NUMERIC = {"volume": pl.Float64(), "price": pl.Float64(), "order_id": pl.Int64()}


def read_exchange_file(path: Path, config: ExchangeConfig) -> pl.DataFrame:
    """One file in the unified message schema; every row kept, unknown codes become null
    (the validation rule ``known_codes`` then names their lines)."""
    mapping = config.column_mapping
    if path.name.endswith(".parquet"):
        raw, first_row = _read_parquet(path, mapping), 1
    elif path.name.endswith((".csv", ".csv.gz")):
        raw, first_row = _read_csv(path, mapping, config.time_unit), 2
    else:
        raise ConfigError(f"{path}: unsupported file type; ExchangeConfig reads .parquet, .csv and .csv.gz.")
    _require_representable_times(raw, mapping["timestamp"], config.time_unit, path, first_row)
    return raw.select(
        ts_ns=_timestamp_ns(raw.schema[mapping["timestamp"]], mapping["timestamp"], config.time_unit, path),
        event_type=_translate(mapping["event_type"], config.event_code_map, EventType),
        order_id=pl.col(mapping["order_id"]).cast(pl.Int64) if "order_id" in mapping else pl.lit(0, pl.Int64),
        size=pl.col(mapping["volume"]).cast(pl.Float64),
        price=pl.col(mapping["price"]).cast(pl.Float64) * config.price_scale,
        side=_translate(mapping["side"], config.side_map, Side),
        source_row=pl.int_range(first_row, pl.len() + first_row, dtype=pl.UInt32),
    )


def _read_parquet(path: Path, mapping: Mapping[str, str]) -> pl.DataFrame:
    available = pl.read_parquet_schema(path)
    _require_columns(path, mapping, list(available))
    frame = pl.read_parquet(path, columns=list(dict.fromkeys(mapping.values())))
    holes = {name: n for name, n in zip(frame.columns, frame.null_count().row(0)) if n}
    if holes:
        first = frame.with_row_index("row", 1).filter(pl.any_horizontal(pl.all().is_null()))["row"].head(5).to_list()
        raise MalformedFileError(
            f"{path}: null values in {holes} (first rows {first}); every message needs all "
            "mapped fields. Repair the file; nothing from it was loaded."
        )
    return frame


def _read_csv(path: Path, mapping: Mapping[str, str], time_unit: str) -> pl.DataFrame:
    """Typed read of the mapped columns; timestamps are integers except in seconds, so epoch
    nanoseconds keep every digit (a float holds only about 16)."""
    data = read_bytes(path)
    _require_columns(path, mapping, header_columns(data, str(path)))
    schema = {column: _NUMERIC.get(key, pl.String()) for key, column in mapping.items()}
    schema[mapping["timestamp"]] = pl.Float64() if time_unit == "s" else pl.Int64()
    return read_typed_csv(data, str(path), schema, has_header=True, columns=list(schema))


def _require_columns(path: Path, mapping: Mapping[str, str], available: list[str]) -> None:
    missing = {key: column for key, column in mapping.items() if column not in available}
    if missing:
        raise ConfigError(
            f"{path}: ExchangeConfig.column_mapping names column(s) the file does not have: "
            f"{missing}. The file's columns are {available}; fix the mapping."
        )


def _require_representable_times(raw: pl.DataFrame, column: str, unit: str, path: Path, first_row: int) -> None:
    """Float timestamps must be finite and fit epoch nanoseconds in 64 bits (nan, inf and 1e30 do not)."""
    if not raw.schema[column].is_float():
        return
    unrepresentable = ~((pl.col(column) * TIME_UNITS[unit]).abs() < 2.0**63)
    if not raw.select(unrepresentable.any()).item():
        return
    place = "line" if first_row > 1 else "row"  # CSV lines count the header; parquet rows do not
    bad = raw.with_row_index("at", first_row).filter(unrepresentable).select("at", column)
    shown = ", ".join(f"{place} {at} = {value}" for at, value in bad.head(5).iter_rows())
    raise MalformedFileError(
        f"{path}: timestamp column {column!r} holds {bad.height} value(s) that are no time in {unit!r}: {shown}. "
        "Times must be finite and within 292 years of 1970; repair the file (nothing from it was loaded)."
    )


def _timestamp_ns(dtype: pl.DataType, column: str, unit: str, path: Path) -> pl.Expr:
    """Epoch nanoseconds, UTC. Datetime columns carry their own unit (naive ones are read as UTC)."""
    factor = TIME_UNITS[unit]
    if dtype == pl.Datetime:
        return pl.col(column).dt.epoch("ns")
    if not dtype.is_numeric():
        raise ConfigError(f"{path}: timestamp column {column!r} is {dtype}; it must be numbers in time_unit or a datetime.")
    if dtype.is_integer():
        return pl.col(column).cast(pl.Int64) * factor
    return (pl.col(column).cast(pl.Float64) * factor).round().cast(pl.Int64)


def _translate(column: str, mapping: Mapping[Any, str], dtype: pl.DataType) -> pl.Expr:
    """Venue values -> unified names, compared as text so 1, "1", True and "true" all match."""
    as_text = {_text(code): name for code, name in mapping.items()}
    source = pl.col(column)
    text = source.cast(pl.String).str.to_lowercase()
    return text.replace_strict(as_text, default=None, return_dtype=dtype)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower()


class ExchangeFormat:
    """The files of an ``ExchangeConfig`` venue: paths under its folder (templates may contain folders)
    that fit ``filename_template``, read with ``read_exchange_file``."""

    def __init__(self, config: ExchangeConfig):
        self.config = config
        # order ids let the book be rebuilt from the messages; without them there is none
        self.book = REBUILT_BOOK if "order_id" in config.column_mapping else None
        self.book_levels = config.book_levels
        self.timezone = config.timezone
        self.weekdays_only = config.trading_days == "weekdays"
        self.event_types = frozenset(config.event_code_map.values())
        self.clock_ns = 1 if config.time_unit == "s" else TIME_UNITS[config.time_unit]  # seconds come with decimals
        self._pattern = _template_pattern(config)

    def tick_for(self, instrument: str) -> float | None:
        return self.config.tick_for(instrument)

    def path_of(self, folder: Path, instrument: str, day: Date) -> Path:
        return folder / self.config.filename_template.format(product=instrument, date=day.strftime(self.config.date_format))

    def discover(self, venue: str, folder: Path) -> list[DayFile]:
        days = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
            match = self._pattern.match(path.relative_to(folder).as_posix())
            if match:
                try:
                    day = datetime.strptime(match["date"], self.config.date_format).date()
                except ValueError:
                    log.warning("%s: %r is not a date in %s; the file is not read", path, match["date"], self.config.date_format)
                    continue
                form = "parquet" if path.name.endswith(".parquet") else "csv"
                days.append(DayFile(venue, match["product"], day, str(path), form, (path,), self.read, 0, path))
        return days

    def read(self, day: DayFile) -> pl.DataFrame:
        return read_exchange_file(day.handle, self.config)

    def expected_file(self, folder: Path, instrument: str, day: Date) -> str:
        return str(self.path_of(folder, instrument, day))


def _template_pattern(config: ExchangeConfig) -> re.Pattern:
    """A file-name pattern from ``filename_template``: {product} and {date} become groups."""
    date = re.escape(config.date_format)
    for directive, digits in DATE_DIRECTIVES.items():
        date = date.replace(re.escape(directive), digits)
    pattern = re.escape(config.filename_template)
    pattern = pattern.replace(re.escape("{product}"), r"(?P<product>.+?)").replace(re.escape("{date}"), f"(?P<date>{date})")
    return re.compile(f"^{pattern}$")
