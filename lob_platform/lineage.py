"""What derived partitions are made from, read off the warehouse files (pure logic, no Dagster).

Two kinds of partitions depend on more than their own day:

- the *fit chain* of a message venue's day D (``bin_edges``, ``label_thresholds``, then
  ``event_tokens``, ``token_sequences``, ``labels``) learns from a training window of earlier
  days (``lob_platform.features.training_window``);
- the crypto *panel* of date D reads every crypto instrument of D.

Both are defined by the catalogue of raw files, not by what is materialized: every day or
instrument the catalogue lists must have a validation outcome first. Their *inputs* are the
partitions they read, each with its version (a hash of its bytes, ``storage.partition_version``);
a materialized partition whose recorded inputs differ from the inputs it should have now is
stale, and the platform's automation remakes it.
"""

from __future__ import annotations

from datetime import date as Date
from pathlib import Path

import polars as pl

from lob_platform.core.tables import REPORT_TABLE
from lob_platform.errors import LobDataError
from lob_platform.features.training_window import DayStatus, WindowPlan, plan_training_window
from lob_platform.storage import partition_path, partition_version, scan_partitions

FEATURES = "features"
BIN_EDGES = "bin_edges"
LABEL_THRESHOLDS = "label_thresholds"
EVENT_TOKENS = "event_tokens"
TOKEN_SEQUENCES = "token_sequences"
LABELS = "labels"
PANEL = "panel_5s"
FIT_CHAIN = (BIN_EDGES, LABEL_THRESHOLDS, EVENT_TOKENS, TOKEN_SEQUENCES, LABELS)
"""Tables of day D made from D's training window (label tables only where the venue has a book)."""
TRAINED_MODELS = "trained_models"
PREDICTIONS = "predictions"
MODEL_METRICS = "model_metrics"
BACKTEST_METRICS = "backtest_metrics"
EQUITY_CURVES = "equity_curves"
MODEL_TABLES = (TRAINED_MODELS, PREDICTIONS, MODEL_METRICS)
"""Tables of each model family's day D (hive key ``model`` = the family): the models trained for D
on its window, their predictions on D and their out-of-sample metrics."""
GENERATION = "generation"
"""The Mamba TPP's generated order flow of D against the real continuation (``model=mamba_tpp``)."""
BACKTEST_TABLES = (BACKTEST_METRICS, EQUITY_CURVES)
MARKET_MAKING = "market_making"
"""The backtest of a family's predictions on D (per strategy: metrics, and equity at every bar),
under the family's ``model`` key; the market maker of D writes them under ``model=market_making``."""
FORECAST_METRICS = "forecast_metrics"
FORECASTS = "forecasts"
"""Tables of each crypto panel forecaster's date D (hive key ``model`` = the model): its errors on D
beside the baselines, and (SSM-HiPPO) its forecasts. Not ``model_metrics``: these partitions have
no instrument, and one view cannot mix the two layouts."""
DERIVED_PER_DAY = (FEATURES, *FIT_CHAIN)
"""Tables of a message venue's instrument-day derived from its validated messages."""


class InputsNotReady(LobDataError):
    """A partition this one is defined to read (by the catalogue) has no validation outcome yet."""


class Warehouse:
    """Partition files of the warehouse at ``root``, by table, venue, instrument and date."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, table: str, venue: str, date: str, instrument: str | None = None, model: str | None = None) -> Path:
        keys = {"venue": venue, **({"model": model} if model is not None else {}),
                **({"instrument": instrument} if instrument is not None else {}), "date": date}
        return partition_path(self.root, table, keys)

    def version(self, table: str, venue: str, date: str, instrument: str | None = None) -> str | None:
        return partition_version(self.path(table, venue, date, instrument))

    def read(self, table: str, venue: str, date: str, instrument: str | None = None) -> pl.DataFrame:
        return pl.read_parquet(self.path(table, venue, date, instrument))

    def scan(self, table: str, venue: str, dates: list[str], instrument: str | None = None) -> pl.LazyFrame | None:
        """The written partitions of ``dates`` as one lazy frame (a ``partition`` column says the date):
        nothing is read until collected, and then only the columns selected."""
        return scan_partitions({date: self.path(table, venue, date, instrument) for date in dates})

    def passed(self, venue: str, instrument: str, date: str) -> bool | None:
        """The validation outcome of an instrument-day, or None when it was never validated."""
        path = self.path(REPORT_TABLE, venue, date, instrument)
        if not path.exists():
            return None
        return bool(pl.read_parquet(path, columns=["passed"])["passed"].all())

    def status(self, venue: str, instrument: str, date: str, product: str) -> DayStatus:
        """``passed`` once validation passed and ``product`` (the table a window reads) is written."""
        outcome = self.passed(venue, instrument, date)
        if outcome is None:
            return "pending"
        if not outcome:
            return "failed"
        return "passed" if self.path(product, venue, date, instrument).exists() else "pending"

    # ---- the fit chain of a message venue

    def fit_plan(self, venue: str, instrument: str, date: str, catalogue_dates: list[Date],
                 train_days: int, lookback_days: int) -> WindowPlan:
        return plan_training_window(date, [d.isoformat() for d in catalogue_dates],
                                    lambda day: self.status(venue, instrument, day, FEATURES), train_days, lookback_days)

    def window_inputs(self, plan: WindowPlan, venue: str, instrument: str) -> str:
        """The feature partitions a model of ``plan.date`` learns from, with their versions
        (``features DATE=VERSION,...``): the window's days, or the day itself for a same-day split."""
        return ",".join(f"{FEATURES} {d}={self.version(FEATURES, venue, d, instrument)}" for d in plan.dates)

    def fit_inputs(self, plan: WindowPlan, venue: str, instrument: str) -> str:
        """The partitions the fit chain of ``plan.date`` reads, with their versions: the window's
        features and the day's own features (its tokens and labels), as ``features DATE=VERSION,...``."""
        dates = sorted({*plan.dates, plan.date})
        return ",".join(f"{FEATURES} {d}={self.version(FEATURES, venue, d, instrument)}" for d in dates)

    def recorded(self, table: str, venue: str, date: str, instrument: str | None, columns: list[str],
                 model: str | None = None) -> dict | None:
        """The first row's ``columns`` of a partition (provenance columns), or None when it is not written."""
        path = self.path(table, venue, date, instrument, model)
        if not path.exists() or not set(columns) <= set(pl.read_parquet_schema(path)):
            return None
        rows = pl.read_parquet(path, columns=columns, n_rows=1).rows(named=True)
        return rows[0] if rows else None

    def fits_trained_on(self, venue: str, instrument: str, day: str, later_dates: list[str], model: str | None = None) -> list[str]:
        """Those of ``later_dates`` whose recorded fit (or ``model`` family's trained models) learned from ``day``."""
        table = TRAINED_MODELS if model else BIN_EDGES
        fits = {date: self.recorded(table, venue, date, instrument, ["fit_dates"], model) for date in later_dates}
        return [date for date, fit in fits.items() if fit and day in fit["fit_dates"].split(",")]

    # ---- the crypto panel

    def panel_inputs(self, venue: str, date: str, instruments: list[str], validated: str) -> tuple[dict[str, str], list[str], list[str]]:
        """(version of each passed instrument's validated snapshots, instruments whose validation
        failed, instruments still pending) for the panel of ``date``."""
        versions, failed, pending = {}, [], []
        for instrument in sorted(instruments):
            state = self.status(venue, instrument, date, validated)
            if state == "passed":
                versions[instrument] = self.version(validated, venue, date, instrument)
            else:
                (failed if state == "failed" else pending).append(instrument)
        return versions, failed, pending
