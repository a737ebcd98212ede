"""Venue configuration: ``ExchangeConfig`` describes any message venue, so a new venue (CSV or
parquet) is configuration, not code. MIC futures and LOBSTER's converted parquet layout are
themselves ExchangeConfigs; LOBSTER's CSV pairs and crypto snapshots have readers of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lob_platform.errors import ConfigError
from lob_platform.core.columns import EVENT_TYPES

# The keys of ``column_mapping`` (seed 000's vocabulary) and whether each is required.
MAPPING_KEYS = {"timestamp": True, "event_type": True, "volume": True, "price": True, "side": True, "order_id": False}
TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
# strftime directives allowed in file names, with the digits they match
DATE_DIRECTIVES = {"%Y": r"\d{4}", "%m": r"\d{2}", "%d": r"\d{2}", "%y": r"\d{2}", "%j": r"\d{3}"}

LOBSTER_EVENT_CODES = {1: "submit", 2: "cancel", 3: "delete", 4: "execute_visible", 5: "execute_hidden", 6: "cross"}
LOBSTER_TIMEZONE = "America/New_York"
LOBSTER_TICK = 0.01
# LOBSTER's numeric codes plus the unified names themselves: the default for custom venues.
DEFAULT_EVENT_CODES: dict[Any, str] = {**LOBSTER_EVENT_CODES, **{name: name for name in EVENT_TYPES}}
DEFAULT_SIDES: dict[Any, str] = {
    1: "bid", -1: "ask", "true": "bid", "false": "ask",
    "bid": "bid", "ask": "ask", "buy": "bid", "sell": "ask", "b": "bid", "a": "ask",
}


@dataclass(frozen=True)
class ExchangeConfig:
    """How to find and read one venue's message files.

    ``filename_template`` uses ``{product}`` and ``{date}`` (formatted with ``date_format``);
    ``column_mapping`` maps the unified keys (timestamp, event_type, volume, price, side and
    optionally order_id) to the file's column names; timestamps are ``time_unit`` since the
    Unix epoch (UTC); ``price * price_scale`` is the price in currency units.
    ``event_code_map`` / ``side_map`` translate the venue's own values (e.g. ``created`` /
    ``changed`` / ``deleted``, ``bid`` / ``ask``); ``timezone`` is the zone of the trading
    date and of ``times``; ``trading_days`` is ``weekdays`` or ``all``; ``tick_size`` (one
    number, or per product) enables the tick-grid rule. A venue whose messages carry order ids
    gets its book rebuilt from them (``lob_platform.features.order_book``) to ``book_levels``
    levels in its validated table.
    """

    data_path: str
    filename_template: str
    date_format: str = "%Y-%m-%d"
    column_mapping: Mapping[str, str] = field(default_factory=dict)
    time_unit: str = "ns"
    price_scale: float = 1.0
    event_code_map: Mapping[Any, str] = field(default_factory=lambda: dict(DEFAULT_EVENT_CODES))
    side_map: Mapping[Any, str] = field(default_factory=lambda: dict(DEFAULT_SIDES))
    timezone: str = "UTC"
    trading_days: str = "weekdays"
    tick_size: float | Mapping[str, float] | None = None
    book_levels: int = 10

    def __post_init__(self) -> None:
        missing = [key for key, required in MAPPING_KEYS.items() if required and key not in self.column_mapping]
        unknown = [key for key in self.column_mapping if key not in MAPPING_KEYS]
        if missing or unknown:
            raise ConfigError(
                f"ExchangeConfig.column_mapping: missing keys {missing}, unknown keys {unknown}; "
                f"it maps {sorted(MAPPING_KEYS)} (order_id optional) to your file's column names."
            )
        if self.time_unit not in TIME_UNITS:
            raise ConfigError(f"ExchangeConfig.time_unit {self.time_unit!r} is not one of {sorted(TIME_UNITS)}.")
        if not isinstance(self.book_levels, int) or isinstance(self.book_levels, bool) or self.book_levels < 1:
            raise ConfigError(f"ExchangeConfig.book_levels must be a whole number of levels, 1 or more, not {self.book_levels!r}.")
        if self.trading_days not in ("weekdays", "all"):
            raise ConfigError(f"ExchangeConfig.trading_days must be 'weekdays' or 'all', not {self.trading_days!r}.")
        bad = {code: name for code, name in self.event_code_map.items() if name not in EVENT_TYPES}
        if bad:
            raise ConfigError(f"ExchangeConfig.event_code_map maps to unknown event types {bad}; use {EVENT_TYPES}.")
        bad = {code: name for code, name in self.side_map.items() if name not in ("bid", "ask")}
        if bad:
            raise ConfigError(f"ExchangeConfig.side_map must map to 'bid' or 'ask'; got {bad}.")
        if self.filename_template.count("{date}") != 1 or self.filename_template.count("{product}") != 1:
            raise ConfigError(
                f"ExchangeConfig.filename_template {self.filename_template!r} needs one {{product}} and one {{date}} field."
            )
        unsupported = set(re.findall(r"%.", self.date_format)) - set(DATE_DIRECTIVES)
        if unsupported:
            raise ConfigError(
                f"ExchangeConfig.date_format {self.date_format!r} uses {sorted(unsupported)}; "
                f"file names can use {sorted(DATE_DIRECTIVES)} (numbers only)."
            )

    def tick_for(self, product: str) -> float | None:
        if isinstance(self.tick_size, Mapping):
            return self.tick_size.get(product)
        return self.tick_size

    def folder(self) -> Path:
        return Path(self.data_path)


MIC_EVENT_CODES = {1: "submit", 0: "cancel", 2: "execute_visible"}  # MOEX order-log ACTION codes; 0 cancels vol (part or all)

MIC = ExchangeConfig(
    data_path="mic",
    filename_template="{date}__RTSX_FUT__{product}.parquet",
    column_mapping={"timestamp": "tst", "event_type": "event_code", "volume": "vol", "price": "prc", "side": "is_buy", "order_id": "order_id"},
    time_unit="ns",
    event_code_map=MIC_EVENT_CODES,
    side_map={True: "bid", False: "ask"},
    timezone="Europe/Moscow",
    tick_size=10.0,
)

LOBSTER_PARQUET = ExchangeConfig(
    data_path="lobster",
    filename_template="{product}_{date}_messages.parquet",
    column_mapping={"timestamp": "tst", "event_type": "event_code", "volume": "vol", "price": "prc", "side": "direction", "order_id": "order_id"},
    time_unit="ns",
    price_scale=1e-4,
    event_code_map=LOBSTER_EVENT_CODES,
    side_map={1: "bid", -1: "ask"},
    timezone=LOBSTER_TIMEZONE,
    tick_size=LOBSTER_TICK,
)
CRYPTO_EXCHANGES = ("binance_spot", "binance_perp", "bybit_spot")
