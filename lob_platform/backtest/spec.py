"""The backtests' settings: one spec, overridable per run from the launchpad and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from lob_platform.backtest.execution import ExecutionConfig
from lob_platform.backtest.market_making import MarketMakerConfig
from lob_platform.backtest.signals import SignalConfig
from lob_platform.errors import ConfigError


@dataclass(frozen=True)
class BacktestSpec:
    signal: SignalConfig = field(default_factory=SignalConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    market_making: MarketMakerConfig = field(default_factory=MarketMakerConfig)
    bar_seconds: float = 60.0  # the clock of returns, Sharpe, VaR and the stored equity curves
    seed: int = 0  # the random-signal comparison's
    enabled: bool = True  # False (LOB_BACKTESTS=0): no backtest or market-making assets

    def __post_init__(self) -> None:
        if self.bar_seconds <= 0:
            raise ConfigError(f"BacktestSpec.bar_seconds must be positive, got {self.bar_seconds}")

    def days_per_year(self, weekdays_only: bool) -> int:
        """Trading days per year: 252 on an exchange calendar, 365 where the venue trades every day."""
        return 252 if weekdays_only else 365
