"""From a model's probabilities to target positions (pure, vectorised).

- **Decisions.** One decision per block of ``hold_events`` events: the first prediction of each
  block decides the position held until the next decision (the holding period). By default the
  block is the label's horizon (``move_10ev``: 10 events; ``next_mid_up``: 1), so a position is
  held for as long as the model's forecast speaks about.
- **Direction.** ``rule="threshold"``: long when p(up) ≥ ``entry_probability``, short when
  p(down) ≥ it, flat otherwise. ``rule="always_in"`` (the LOB-LSTM project's strategy): long when
  p(up) > p(down), otherwise short, never flat.
- **Size.** ``sizing="fixed"``: ``size`` units; ``sizing="confidence"``: ``size`` × |p(up) − p(down)|.
  Either is clipped to ±``position_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lob_platform.errors import ConfigError

RULES = ("threshold", "always_in")
SIZINGS = ("fixed", "confidence")


@dataclass(frozen=True)
class SignalConfig:
    rule: str = "threshold"
    entry_probability: float = 0.55  # "threshold": the probability of a side needed to hold it
    sizing: str = "fixed"
    size: float = 1.0  # units per position ("fixed"), or at full confidence ("confidence")
    position_limit: float = 1.0  # largest |position|, units
    hold_events: int | None = None  # events per decision; None: the label's horizon

    def __post_init__(self) -> None:
        if self.rule not in RULES or self.sizing not in SIZINGS:
            raise ConfigError(f"SignalConfig: rule must be one of {RULES} and sizing one of {SIZINGS}; got {self}")
        if not 0 < self.entry_probability < 1 or self.size <= 0 or self.position_limit <= 0:
            raise ConfigError(f"SignalConfig: need 0 < entry_probability < 1 and size, position_limit > 0; got {self}")
        if self.hold_events is not None and self.hold_events < 1:
            raise ConfigError(f"SignalConfig.hold_events must be at least 1, got {self.hold_events}")


def label_horizon(label: str) -> int:
    """Events a label looks ahead: k for ``move_{k}ev``, 1 for ``next_mid_up``."""
    return int(label.removeprefix("move_").removesuffix("ev")) if label.startswith("move_") else 1


def decision_rows(event_rows: np.ndarray, hold_events: int) -> np.ndarray:
    """Indices (into ``event_rows``, ascending) of the first prediction of each block of
    ``hold_events`` events, counted from the first prediction."""
    if len(event_rows) == 0:
        return np.zeros(0, dtype=np.int64)
    block = (event_rows - event_rows[0]) // hold_events
    return np.flatnonzero(np.r_[True, block[1:] != block[:-1]])


def directions(p_up: np.ndarray, p_down: np.ndarray, config: SignalConfig) -> np.ndarray:
    """+1 long, -1 short, 0 flat per prediction."""
    if config.rule == "always_in":
        return np.where(p_up > p_down, 1.0, -1.0)
    return np.where(p_up >= config.entry_probability, 1.0, np.where(p_down >= config.entry_probability, -1.0, 0.0))


def target_positions(direction: np.ndarray, p_up: np.ndarray, p_down: np.ndarray, config: SignalConfig) -> np.ndarray:
    """Units to hold after each decision."""
    size = config.size * (np.abs(p_up - p_down) if config.sizing == "confidence" else 1.0)
    return np.clip(direction * size, -config.position_limit, config.position_limit)
