"""Backtest assets of every venue with a book, per (date, instrument), walk-forward by construction:
the models of day D were trained before D (or on the first part of D, the intraday split) and
trade D's test rows.

    {family}/predictions + features + validated messages -> {family}/backtest_metrics + {family}/equity_curves
    validated messages (training window and D)           -> market_making/backtest_metrics + market_making/equity_curves
    every backtest_metrics partition                     -> warehouse/backtest_summary (one table, warehouse/reports/index.html)

Each backtest shows its plots (equity against the comparisons, drawdown, calibration, inventory)
in its materialization metadata and writes them beside an HTML report under
``warehouse/reports/{venue}/{instrument}/{date}/{model}/``; DuckDB views ``backtest_metrics`` and
``equity_curves`` hold every partition's figures.
"""

import dataclasses

import dagster as dg
import numpy as np
import polars as pl

from lob_platform.backtest import market_making as mm
from lob_platform.backtest.direction import STRATEGIES, DirectionBacktest, backtest_label, equity_curves
from lob_platform.backtest.execution import Book, ExecutionConfig, StrategyRun
from lob_platform.backtest.performance import NS, performance
from lob_platform.backtest.report import (Section, equity_figure, inventory_figure,
                                          report_folder, rounded, write_report)
from lob_platform.backtest.signals import SignalConfig
from lob_platform.backtest.spec import BacktestSpec
from lob_platform.backtest.summary import summary_rows, write_summary
from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.core.splits import chronological_split
from lob_platform.defs.features import resolve_window, tick_of
from lob_platform.defs.models import markdown_table, model_key
from lob_platform.defs.partitions import by_date_and_instrument, day_of, earlier_days
from lob_platform.defs.run_config import spec_config
from lob_platform.defs.raw import venue_key
from lob_platform.lineage import (BACKTEST_METRICS, BACKTEST_TABLES, EQUITY_CURVES, FEATURES, MARKET_MAKING, PREDICTIONS,
                                  InputsNotReady, Warehouse)
from lob_platform.models.specs import FAMILIES, FAMILY_TITLES
from lob_platform.sources.registry import Venue
from lob_platform.training import plots
from lob_platform.training.metrics import OFI_BASELINE_FEATURE

UPPER_BOUND_TOLERANCE = 1e-9  # share of capital


def market_making_keys(venue: Venue) -> list[dg.AssetKey]:
    """The market maker's tables where the venue reports executions (its quotes fill against them)."""
    return [model_key(venue, MARKET_MAKING, t) for t in BACKTEST_TABLES] if venue.reports_executions else []


def backtest_keys(venue: Venue, settings: Settings, families: tuple[str, ...] | None = None) -> list[dg.AssetKey]:
    """The backtests of ``families`` (default: every family), and the market maker when every
    family is meant; none when backtests are off (``LOB_BACKTESTS=0``)."""
    if not settings.backtest.enabled:
        return []
    traded = [f for f in (settings.models.families if families is None else families) if f in FAMILIES]  # not the TPP
    keys = [model_key(venue, f, t) for f in traded for t in BACKTEST_TABLES]
    return keys + (market_making_keys(venue) if families is None else [])


def group(venue: Venue) -> str:
    return f"{venue.name}_backtests"


# ---- run configuration: every scalar field of the specs, overridable per run (launchpad, CLI)

VENUE_FACTS = {"tick_size"}
"""Spec fields the asset takes from the venue (its one home), never from run config."""


def spec_for_run(spec: BacktestSpec, config: dg.Config) -> BacktestSpec:
    values = {k: v for k, v in config.model_dump().items() if v is not None}
    own = lambda part: {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(part)}}  # noqa: E731
    return dataclasses.replace(spec, signal=dataclasses.replace(spec.signal, **own(spec.signal)),
                               execution=dataclasses.replace(spec.execution, **own(spec.execution)),
                               market_making=dataclasses.replace(spec.market_making, **own(spec.market_making)),
                               **own(spec))


BacktestConfig = spec_config("BacktestConfig", "Overrides of the direction backtest's signal, execution and bars for one run.",
                             (SignalConfig, ExecutionConfig, BacktestSpec))
MarketMakingConfig = spec_config("MarketMakingConfig", "Overrides of the market maker's settings for one run.",
                                 (mm.MarketMakerConfig, BacktestSpec), VENUE_FACTS)


# ---- inputs

def day_book(warehouse: Warehouse, venue: Venue, date: str, instrument: str) -> tuple[Book, pl.DataFrame]:
    """The day's best prices after every event, and its features' mid and OFI."""
    where = f"{date}|{instrument}"
    messages, features = (warehouse.path(t, venue.name, date, instrument) for t in (venue.kind.validated, FEATURES))
    for table, path in ((venue.kind.validated, messages), (FEATURES, features)):
        if not path.exists():
            raise InputsNotReady(f"{venue.name}/{table} {where} is not materialized ({path}): materialize it first.")
    book_frame = pl.read_parquet(messages, columns=["ts_ns", "bid_price_1", "ask_price_1"])
    feature_frame = pl.read_parquet(features, columns=["event_row", "mid", OFI_BASELINE_FEATURE])
    if book_frame.height != feature_frame.height:
        raise InputsNotReady(f"{venue.name} {where}: {venue.kind.validated} has {book_frame.height:,} rows but features "
                             f"{feature_frame.height:,}: one of them is stale; rematerialize features for this partition.")
    return Book.from_messages(book_frame, feature_frame["mid"]), feature_frame


def upper_bound_violations(metrics: pl.DataFrame) -> list[str]:
    """Strategies whose PnL exceeds perfect foresight's on the same label (there must be none)."""
    bound = metrics.filter(pl.col("strategy") == "perfect_foresight").select("label", bound="total_return")
    above = metrics.join(bound, on="label").filter(pl.col("total_return") > pl.col("bound") + UPPER_BOUND_TOLERANCE)
    return [f"{r['label']}: {r['strategy']} {r['total_return']:.6g} > {r['bound']:.6g}" for r in above.iter_rows(named=True)]


# ---- the direction backtest of a family's predictions

def build_backtest_asset(venue: Venue, family: str, settings: Settings) -> dg.AssetsDefinition:
    metrics_key, curves_key = model_key(venue, family, BACKTEST_METRICS), model_key(venue, family, EQUITY_CURVES)
    title = FAMILY_TITLES[family]

    @dg.multi_asset(
        name=f"{venue.name}_{family}_backtest",
        outs={
            "backtest_metrics": dg.AssetOut(key=metrics_key, kinds={"polars", "parquet"}, description=(
                f"Backtest of the {title} predictions of this date, per label and strategy: the model's signal traded at "
                "the touch with fees and latency, beside perfect foresight (upper bound), buy and hold, a random signal "
                "and the OFI sign under the same costs; returns, Sharpe, Sortino, Calmar, drawdown, VaR, ES, hit rate, "
                "profit factor, turnover, trades, the share of perfect foresight captured; calibration (ECE, Brier).")),
            "equity_curves": dg.AssetOut(key=curves_key, kinds={"polars", "parquet"}, description=(
                "Equity (share of capital), drawdown and position of every strategy at each bar's end.")),
        },
        ins={"predictions": dg.AssetIn(key=model_key(venue, family, PREDICTIONS))},
        deps=[venue_key(venue, FEATURES), venue_key(venue, venue.kind.validated)],
        partitions_def=by_date_and_instrument(venue.name),
        group_name=group(venue),
        check_specs=[dg.AssetCheckSpec("perfect_foresight_is_upper_bound", asset=metrics_key, description=(
            "no strategy earns more than perfect foresight on the same fills and costs (a failure is a bug in the "
            "backtest, not in the model)"))],
    )
    def backtest(context: dg.AssetExecutionContext, config: BacktestConfig, predictions: pl.DataFrame):
        date, instrument = day_of(context)
        spec = spec_for_run(settings.backtest, config)
        warehouse = Warehouse(warehouse_root())
        book, features = day_book(warehouse, venue, date, instrument)
        results, skipped = [], {}
        for (label,), frame in sorted(predictions.group_by("label"), key=lambda item: item[0]) if predictions.height else []:
            outcome = backtest_label(book, frame, features[OFI_BASELINE_FEATURE].to_numpy(), spec.signal, spec.execution,
                                     spec.bar_seconds, spec.days_per_year(venue.weekdays_only), spec.seed)
            if isinstance(outcome, str):
                skipped[label] = outcome
                context.log.warning(f"{title} {label}: no backtest: {outcome}")
            else:
                results.append(outcome)
        metrics = metrics_frame(results, predictions)
        curves = pl.concat([r.curves.with_columns(label=pl.lit(r.label)) for r in results]) if results else pl.DataFrame()
        folder = report_folder(warehouse.root, venue.name, instrument, date, family)
        sections = [direction_section(family, r) for r in results]
        page = write_report(folder, f"{title} backtest, {venue.name} {instrument} {date}", (
            f"Walk-forward: the models of {date} were trained before its test rows; signal {spec.signal}; execution "
            f"{spec.execution}."), sections)
        images = [plots.markdown_image(image, name) for s in sections for name, image in s.images.items()]
        tables = {
            "model": dg.MetadataValue.md(markdown_table(rounded(metrics.filter(pl.col("strategy") == "model").select(
                "label", "total_return", "sharpe", "max_drawdown", "trades", "hit_rate", "pf_capture", "ece",
                "brier").to_dicts()))),
            "against_comparisons": dg.MetadataValue.md(markdown_table(rounded(metrics.select(
                "label", "strategy", "total_return", "sharpe", "trades", "costs").to_dicts()))),
        } if metrics.height else {}
        yield dg.Output(metrics, "backtest_metrics", metadata={
            **tables,
            "plots": dg.MetadataValue.md("\n\n".join(images) or "no backtest"),
            "report": dg.MetadataValue.path(str(page.resolve())),
            "skipped": dg.MetadataValue.json(skipped),
        })
        yield dg.Output(curves, "equity_curves", metadata={"strategies": list(STRATEGIES), "bar_seconds": spec.bar_seconds})
        violations = upper_bound_violations(metrics) if metrics.height else []
        yield dg.AssetCheckResult(check_name="perfect_foresight_is_upper_bound", passed=not violations,
                                  description="; ".join(violations) or "perfect foresight bounds every strategy")

    return backtest


def metrics_frame(results: list[DirectionBacktest], predictions: pl.DataFrame) -> pl.DataFrame:
    version = dict(predictions.select("label", "model_version").unique("label").iter_rows()) if predictions.height else {}
    rows = [{"label": r.label, **m, **(r.calibration_summary if m["strategy"] == "model" else {}),
             "model_version": version.get(r.label)} for r in results for m in r.metrics]
    return pl.DataFrame(rows, schema_overrides={"ece": pl.Float64, "brier": pl.Float64, "labelled": pl.Int64},
                        infer_schema_length=None)


def direction_section(family: str, result: DirectionBacktest) -> Section:
    images = {f"{result.label}_equity.png": equity_figure(f"{FAMILY_TITLES[family]}, {result.label}: equity and drawdown",
                                                           result.curves)}
    if result.calibration:
        images[f"{result.label}_calibration.png"] = plots.reliability_diagram(family, result.label, result.calibration)
    return Section(result.label, [rounded(result.metrics), rounded(result.calibration)], images)


# ---- the Avellaneda–Stoikov market maker against the day's real message flow

def build_market_making_asset(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    metrics_key, curves_key = market_making_keys(venue)
    window = earlier_days(settings.training.lookback_days)

    @dg.multi_asset(
        name=f"{venue.name}_market_making",
        outs={
            "backtest_metrics": dg.AssetOut(key=metrics_key, kinds={"polars", "parquet"}, description=(
                "Avellaneda–Stoikov market making on this date's real message flow (σ, A and k estimated on the training "
                "window) against the symmetric spread of the same width: PnL, Sharpe, drawdown, fills, fill rate, spread "
                "captured, inventory.")),
            "equity_curves": dg.AssetOut(key=curves_key, kinds={"polars", "parquet"}, description=(
                "Equity (share of capital), drawdown and inventory of each market maker at each bar's end.")),
        },
        deps=[dg.AssetDep(venue_key(venue, venue.kind.validated), partition_mapping=window)],
        partitions_def=by_date_and_instrument(venue.name),
        group_name=group(venue),
    )
    def market_making(context: dg.AssetExecutionContext, config: MarketMakingConfig):
        date, instrument = day_of(context)
        spec = spec_for_run(settings.backtest, config)
        warehouse = Warehouse(warehouse_root())
        plan = resolve_window(venue, instrument, date, settings.training)
        if not plan.ready:
            raise InputsNotReady(f"the training window of {venue.name} {date}|{instrument} is not ready: materialize "
                                 + ", ".join(f"{venue.name}/{venue.kind.validated} {d}|{instrument}" for d in plan.waiting_for))
        training, trading, day_seconds = market_days(warehouse, venue, instrument, date, plan, settings)
        params = mm.estimate_parameters(training)
        quoting = dataclasses.replace(spec.market_making, tick_size=tick_of(venue, instrument))
        runs = {name: mm.simulate_on_messages(trading, params, quoting, strategy)
                for name, strategy in (("avellaneda_stoikov", "inventory"), ("symmetric", "symmetric"))}
        metrics, curves = market_making_tables(runs, trading, day_seconds, spec, venue)
        folder = report_folder(warehouse.root, venue.name, instrument, date, MARKET_MAKING)
        title = f"Avellaneda–Stoikov market making, {venue.name} {instrument} {date}"
        images = {"equity.png": equity_figure(f"{title}: equity and drawdown", curves),
                  "inventory.png": inventory_figure(f"{title}: inventory", curves)}
        page = write_report(folder, title, f"Parameters from {', '.join(plan.dates)} ({plan.scope}): {params}; "
                            f"settings {spec.market_making}.", [Section("Market maker against the symmetric spread",
                                                                         [rounded(metrics.to_dicts())], images)])
        yield dg.Output(metrics, "backtest_metrics", metadata={
            "market_making": dg.MetadataValue.md(markdown_table(rounded(metrics.to_dicts()))),
            "parameters": dg.MetadataValue.json(dataclasses.asdict(params)),
            "plots": dg.MetadataValue.md("\n\n".join(plots.markdown_image(i, n) for n, i in images.items())),
            "report": dg.MetadataValue.path(str(page.resolve())),
        })
        yield dg.Output(curves, "equity_curves", metadata={"bar_seconds": spec.bar_seconds})

    return market_making


def market_days(warehouse: Warehouse, venue: Venue, instrument: str, date: str, plan, settings: Settings):
    """(the training days' message arrays, the traded part of ``date``, the seconds ``date`` spans):
    every earlier day of the window and all of ``date``, or, with a same-day split, the day before
    its test part and its test part (the part the models are tested on)."""
    read = lambda d: pl.read_parquet(warehouse.path(venue.kind.validated, venue.name, d, instrument))  # noqa: E731
    day = read(date)
    seconds = (day["ts_ns"][-1] - day["ts_ns"][0]) / NS if day.height else 0.0
    earlier = [d for d in plan.dates if d != date]
    if earlier:
        return [mm.message_arrays(read(d)) for d in earlier], mm.message_arrays(day), seconds
    start = first_test_row(day.height, settings.training.train_fraction)
    return [mm.message_arrays(day[:start])], mm.message_arrays(day[start:]), seconds


def first_test_row(rows: int, train_fraction: float) -> int:
    """First row of a same-day split's test part: the models' chronological split (``evaluation_rows``)."""
    held_out = (1 - train_fraction) / 2
    return int((chronological_split(rows, (train_fraction, held_out, held_out)) != "test").sum())


def market_making_tables(runs: dict[str, mm.MarketMakingResult], trading: mm.MessageArrays, day_seconds: float,
                         spec: BacktestSpec, venue: Venue) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per strategy: the direction backtest's performance metrics (on the traded events, with the
    market maker's own mid; capital = the inventory limit's notional) and the market maker's own;
    the equity curves at every bar's end."""
    traded = Book(trading.ts_ns, trading.best_bid, trading.best_ask, trading.mid)
    capital = spec.market_making.inventory_limit * float(np.nanmedian(traded.mid))
    per_day = max(day_seconds / spec.bar_seconds, 1.0)
    rows, curves = [], {}
    for name, result in runs.items():
        run = StrategyRun(result.inventory, result.cash, result.equity, result.fills["event_index"].to_numpy(),
                          np.where(result.fills["side"].cast(pl.String).to_numpy() == "bid", 1.0, -1.0) * result.fills["size"].to_numpy(),
                          np.zeros(result.fills.height))
        figures = performance(run, traded, 0, capital, spec.bar_seconds, per_day, spec.days_per_year(venue.weekdays_only), None)
        rows.append({"strategy": name, **{k: v for k, v in figures.items() if k not in ("costs", "pf_capture")},
                     **{k: float(v) for k, v in result.metrics.items()}})
        curves[name] = run
    return pl.DataFrame(rows), equity_curves(curves, traded, 0, capital, spec.bar_seconds)


# ---- every model and day in one table

def build_summary_asset(backtests: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(key=["warehouse", "backtest_summary"], deps=[*backtests, dg.AssetKey(["warehouse", "duckdb_catalog"])],
              group_name="warehouse", kinds={"duckdb", "html"})
    def backtest_summary() -> dg.MaterializeResult:
        """Every model and day's backtest in one table (the DuckDB view ``backtest_metrics``): each strategy's return,
        Sharpe, drawdown, trades and share of perfect foresight beside the comparisons' returns; the page
        warehouse/reports/index.html links each row to its report with the plots."""
        root = warehouse_root()
        rows = summary_rows(root)
        page = write_summary(root, rows)
        return dg.MaterializeResult(metadata={
            "summary": dg.MetadataValue.md(markdown_table(rows)),
            "rows": len(rows),
            "report": dg.MetadataValue.path(str(page.resolve())),
        })

    return backtest_summary


def build_backtest_assets(venue: Venue, settings: Settings) -> list[dg.AssetsDefinition]:
    if not settings.backtest.enabled:
        return []
    return [build_backtest_asset(venue, f, settings) for f in settings.models.families] + (
        [build_market_making_asset(venue, settings)] if venue.reports_executions else [])
