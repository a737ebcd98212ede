"""Validated assets: the raw partition split into valid rows and quarantined (rejected) rows,
and a one-row validation report. Each validation rule is a blocking asset check reporting how
many rows of the raw partition broke it; the pandera schemas, built from the same rule
expressions, check the stored validated table (columns, dtypes, every rule) and the rejected
table. A venue whose book is rebuilt from its order ids (MIC, declared order-by-order feeds)
gets the book after every event added to its validated (and rejected) rows before the rules run;
its metadata counts the events naming unknown or reused orders and the rows where the rebuilt book
is crossed (flagged in ``book_crossed``).

With the default ``max_rejected_fraction`` of 0, any broken rule fails its check, which stops
the partition's downstream assets; the valid rows and the rejected rows (rule, source file and
line) are still written, so nothing is lost. A user who accepts a few bad rows reruns with a
higher fraction.

A day that fails leaves nothing derived from an earlier delivery of it: its features, fit,
tokens, labels, models, predictions and model metrics, the fits (and their tokens and labels) and
the models (and their predictions) of later days that learned from it, and, for crypto, the panel of its date are deleted (so no SQL view shows them), wiped from the
asset catalogue where the instance's storage can wipe one partition, and each gets an observation
saying why. The automation refits and rebuilds them without the failed day.
"""

import contextlib
from datetime import date as Date, timedelta

import dagster as dg
import polars as pl

from lob_platform.core.columns import book_levels
from lob_platform.core.settings import TrainingWindowSpec, warehouse_root
from lob_platform.core.tables import MESSAGES, REPORT_TABLE
from lob_platform.defs.checks import pandera_check, pandera_check_spec
from lob_platform.defs.models import model_key
from lob_platform.defs.partitions import by_date_and_instrument, day_of
from lob_platform.defs.raw import find_day, time_span, venue_key
from lob_platform.deploy.pools import CPU_POOL
from lob_platform.lineage import BACKTEST_TABLES, DERIVED_PER_DAY, FIT_CHAIN, MARKET_MAKING, MODEL_TABLES, PANEL, Warehouse
from lob_platform.models.specs import FAMILIES
from lob_platform.sources.registry import Venue
from lob_platform.storage import delete_partition
from lob_platform.validation.report import RuleResult, ValidationReport, split_valid_rejected
from lob_platform.validation.rules import rules_of
from lob_platform.validation.schemas import rejected_schema, table_schema


class ValidationConfig(dg.Config):
    max_rejected_fraction: float = 0.0
    """Share of a partition's rows a rule may reject before its check fails (0: any)."""


def rule_names(venue: Venue) -> list[str]:
    return [rule.name for rule in rules_of(venue.kind, venue.book)]


def rule_check(
    result: RuleResult | None, name: str, rows: int, allowed: float, asset_key: dg.AssetKey, source: str, quarantine: str
) -> dg.AssetCheckResult:
    """One rule's verdict on a partition: fails when it rejects more than ``allowed`` of the rows."""
    if result is None:  # the rule needs something this source lacks (e.g. no tick)
        return dg.AssetCheckResult(asset_key=asset_key, check_name=name, passed=True,
                                   metadata={"applies": False, "source_file": source})
    fraction = result.violations / rows if rows else 0.0
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=fraction <= allowed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.description,
        metadata={
            "rows_breaking_rule": result.violations,
            "fraction": fraction,
            "first_source_rows": str(result.first_rows),
            "source_file": source,
            "quarantined_to": quarantine,
        },
    )


def build_validated_assets(venue: Venue, training: TrainingWindowSpec) -> dg.AssetsDefinition:
    kind = venue.kind
    valid_key, rejected_key = venue_key(venue, kind.validated), venue_key(venue, kind.rejected)
    report_key = venue_key(venue, REPORT_TABLE)
    checks = [dg.AssetCheckSpec(name, asset=valid_key, blocking=True) for name in rule_names(venue)]
    checks += [pandera_check_spec(valid_key, "columns, dtypes and every rule, on the rows stored"),
               pandera_check_spec(rejected_key, "known rule names, source file and line, the raw columns")]

    @dg.multi_asset(
        name=f"{venue.name}_validate",
        outs={
            "valid": dg.AssetOut(key=valid_key, description=f"{venue.name} {kind} that pass every rule, unified schema.",
                                 kinds={"polars", "parquet"}),
            "rejected": dg.AssetOut(key=rejected_key, description=f"{venue.name} rows that break a rule: rules, source_file, source_row, then the row.",
                                    kinds={"polars", "parquet"}),
            "report": dg.AssetOut(key=report_key, description=f"One row per {venue.name} partition: counts per rule and whether "
                                  "every check passed (the DuckDB views of validated tables show passed partitions only).",
                                  kinds={"polars", "parquet"}),
        },
        ins={"raw": dg.AssetIn(key=venue_key(venue, kind.raw))},
        partitions_def=by_date_and_instrument(venue.name),
        check_specs=checks,
        group_name=venue.name,
        pool=CPU_POOL,
    )
    def validate(context: dg.AssetExecutionContext, config: ValidationConfig, raw: pl.DataFrame):
        date, instrument = day_of(context)
        day = find_day(venue, context)
        source = day.source if day else "(no longer in the data folder)"
        tick = venue.tick_for(instrument)
        table, rebuilt = venue.with_book(raw, tick)
        valid, rejected, report = split_valid_rejected(table, kind, tick, source)
        by_rule = {r.rule: r for r in report.results}
        levels = book_levels(table.columns)
        results = [
            *(rule_check(by_rule.get(name), name, raw.height, config.max_rejected_fraction, valid_key, source,
                         rejected_key.to_user_string()) for name in rule_names(venue)),
            pandera_check(valid, table_schema(kind, levels, tick, rebuilt=venue.rebuilds_book), valid_key),
            pandera_check(rejected, rejected_schema(kind, levels, rebuilt=venue.rebuilds_book), rejected_key),
        ]
        failed = [r.check_name for r in results if not r.passed]
        if failed:
            retract_derived(context, venue, training, date, instrument,
                            f"the delivery of {source} failed validation ({', '.join(failed)})")
        yield dg.Output(valid, "valid", metadata={
            "rows": valid.height, "rejected_rows": rejected.height, "source_file": dg.MetadataValue.path(source),
            "checks_passed": not failed, **{f"rejected_by_{r.rule}": r.violations for r in report.results}, **time_span(valid),
            **(rebuilt.summary() if rebuilt else {})})
        yield dg.Output(rejected, "rejected", metadata={"rows": rejected.height})
        yield dg.Output(report_row(source, raw.height, valid.height, report, config.max_rejected_fraction, failed), "report",
                        metadata={"passed": not failed, "failed_checks": ", ".join(failed)})
        yield from results

    return validate


def report_row(source: str, rows: int, valid_rows: int, report: ValidationReport, allowed: float, failed: list[str]) -> pl.DataFrame:
    """The partition's validation outcome as one queryable row."""
    return pl.DataFrame({
        "source_file": [source], "rows": [rows], "valid_rows": [valid_rows], "rejected_rows": [rows - valid_rows],
        "max_rejected_fraction": [allowed], "passed": [not failed], "failed_checks": [",".join(failed)],
        **{f"rejected_by_{r.rule}": [r.violations] for r in report.results},
    })


def retract_derived(context, venue: Venue, training: TrainingWindowSpec, date: str, instrument: str, reason: str) -> None:
    """Delete and wipe what was derived from an earlier delivery of a day that now fails (module docstring)."""
    warehouse = Warehouse(warehouse_root())
    if venue.kind is MESSAGES:
        last = (Date.fromisoformat(date) + timedelta(days=training.lookback_days)).isoformat()
        later = [d.isoformat() for d in venue.catalogue().dates_of(venue.name, instrument) if date < d.isoformat() <= last]
        partitions = [(table, date, instrument, None) for table in DERIVED_PER_DAY]
        partitions += [(table, later_date, instrument, None)
                       for later_date in warehouse.fits_trained_on(venue.name, instrument, date, later) for table in FIT_CHAIN]
        if venue.has_book:  # the models and backtests of the day and of the later days trained on it
            partitions += [(table, day, instrument, family) for family in FAMILIES for table in MODEL_TABLES + BACKTEST_TABLES
                           for day in [date, *warehouse.fits_trained_on(venue.name, instrument, date, later, model=family)]]
            partitions += [(table, day, instrument, MARKET_MAKING) for table in BACKTEST_TABLES
                           for day in [date, *warehouse.fits_trained_on(venue.name, instrument, date, later)]]
    else:
        partitions = [(PANEL, date, None, None)]
    for table, day, name, family in partitions:
        if delete_partition(warehouse.path(table, venue.name, day, name, family)):
            key = model_key(venue, family, table) if family else venue_key(venue, table)
            partition = f"{day}|{name}" if name is not None else day
            # PostgreSQL event logs drop the partition from the catalogue; SQLite ones cannot wipe one
            # partition, so there the observation below is what the UI shows
            with contextlib.suppress(NotImplementedError):
                context.instance.wipe_asset_partitions(key, [partition])
            context.log_event(dg.AssetObservation(asset_key=key, partition=partition, metadata={"retracted": reason},
                                                  description=f"removed: {reason}; it is remade without that day"))
            context.log.warning(f"retracted {key.to_user_string()} {partition}: {reason}")
