"""The platform's settings: one typed object, read from one place.

- Paths come from the environment (``LOB_DATA_DIR``, default ``./data``; ``LOB_WAREHOUSE_DIR``,
  default ``./warehouse``), so a fresh clone works with no edited file. ``LOB_MODEL_SIZE=tiny``
  selects the small model configurations (``ModelSpecs.tiny``) that CI and the main job train;
  the default, ``full``, is the seeds' values. ``LOB_MODEL_FAMILIES`` (comma-separated, empty for
  none) limits which model families get assets (``panel_transformer`` and ``ssm_hippo`` are the
  crypto panel's, ``mamba_tpp`` the event stream's). ``LOB_BACKTESTS=0`` leaves out the backtest and market-making assets.
- Everything else is a frozen spec whose defaults are the documented ones: event/book features
  and labels (``FeatureConfig``), bins (an unfitted ``BinEdges``), the training window of every fit
  (``TrainingWindowSpec``), token sequences (``SequenceSpec``) and the crypto panel
  (``PanelConfig``), the models (``ModelSpecs``) and the backtests (``BacktestSpec``). The Dagster run config of an asset overrides the spec it names, per run.

Every fitted table records ``spec_hash`` of the specs that made it, so a consumer (a model, a
tokeniser) can refuse a table made under other settings: ``require_spec`` says what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lob_platform.backtest.spec import BacktestSpec
from lob_platform.errors import ConfigError
from lob_platform.features.crypto_panel import PanelConfig
from lob_platform.features.table import FeatureConfig
from lob_platform.models.specs import EVENT_FAMILIES, PANEL_FAMILIES, ModelSpecs
from lob_platform.tokens.bins import BinEdges
from lob_platform.tokens.sequences import SEQ_LEN, STRIDE


def data_root() -> Path:
    """Raw inputs: ``$LOB_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("LOB_DATA_DIR", "data"))


def warehouse_root() -> Path:
    """Partitioned parquet outputs and the DuckDB catalogue: ``$LOB_WAREHOUSE_DIR`` or ``./warehouse``."""
    return Path(os.environ.get("LOB_WAREHOUSE_DIR", "warehouse"))


@dataclass(frozen=True)
class TrainingWindowSpec:
    """Which rows a fit for day D learns from (``lob_platform.features.training_window``)."""

    train_days: int = 5  # the last this many earlier trading days whose validation passed
    lookback_days: int = 14  # ... within this many calendar days before D
    train_fraction: float = 0.6  # with no earlier day: the first part of D; the rest splits evenly into validation, test
    flat_share: float = 1 / 3  # share of training rows the ternary label threshold leaves flat

    def __post_init__(self) -> None:
        if self.train_days < 1 or self.lookback_days < 1 or not 0 < self.train_fraction < 1 or not 0 < self.flat_share < 1:
            raise ConfigError(f"TrainingWindowSpec: need train_days, lookback_days >= 1 and fractions in (0, 1); got {self}")


@dataclass(frozen=True)
class SequenceSpec:
    seq_len: int = SEQ_LEN
    stride: int = STRIDE


@dataclass(frozen=True)
class Settings:
    data_root: Path
    warehouse_root: Path
    features: FeatureConfig = field(default_factory=FeatureConfig)
    bins: BinEdges = field(default_factory=BinEdges)
    training: TrainingWindowSpec = field(default_factory=TrainingWindowSpec)
    sequences: SequenceSpec = field(default_factory=SequenceSpec)
    panel: PanelConfig = field(default_factory=PanelConfig)
    models: ModelSpecs = field(default_factory=ModelSpecs)
    backtest: BacktestSpec = field(default_factory=BacktestSpec)


MODEL_SIZES = {"full": ModelSpecs, "tiny": ModelSpecs.tiny}


def load_settings() -> Settings:
    size = os.environ.get("LOB_MODEL_SIZE", "full")
    if size not in MODEL_SIZES:
        raise ConfigError(f"LOB_MODEL_SIZE={size!r}: use one of {sorted(MODEL_SIZES)}.")
    models = MODEL_SIZES[size]()
    if "LOB_MODEL_FAMILIES" in os.environ:  # e.g. "lightgbm,lstm,ssm_hippo"; empty: no model assets
        named = [f for f in os.environ["LOB_MODEL_FAMILIES"].split(",") if f]
        models = dataclasses.replace(models, families=tuple(f for f in named if f not in PANEL_FAMILIES + EVENT_FAMILIES),
                                     event_families=tuple(f for f in named if f in EVENT_FAMILIES),
                                     panel_families=tuple(f for f in named if f in PANEL_FAMILIES))
    backtest = BacktestSpec(enabled=os.environ.get("LOB_BACKTESTS", "1") != "0")
    return Settings(data_root=data_root(), warehouse_root=warehouse_root(), models=models, backtest=backtest)


def spec_hash(*specs: Any) -> str:
    """A short, stable hash of specs (dataclasses, dicts, numbers): equal specs, equal hash."""
    text = json.dumps([_plain(spec) for spec in specs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(spec: Any) -> Any:
    if dataclasses.is_dataclass(spec):
        return {type(spec).__name__: {f.name: _plain(getattr(spec, f.name)) for f in dataclasses.fields(spec)}}
    if isinstance(spec, dict):
        return {str(k): _plain(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_plain(v) for v in spec]
    return spec


def require_spec(table_name: str, recorded: str, expected: str) -> None:
    """Refuse a fitted table made under other settings, saying which."""
    if recorded != expected:
        raise ConfigError(f"{table_name} was made with spec {recorded}, but this run's settings hash to {expected}: "
                          "its vocabulary or thresholds do not match; refit it with these settings or use its own.")
