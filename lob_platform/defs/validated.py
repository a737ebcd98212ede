"""Validated assets: the raw partition split into valid rows and quarantined (rejected) rows,
and a one-row validation report. Each validation rule is a blocking asset check reporting how
many rows of the raw partition broke it; the pandera schemas, built from the same rule
expressions, check the stored validated table (columns, dtypes, every rule) and the rejected
table.

With the default ``max_rejected_fraction`` of 0, any broken rule fails its check, which stops
the partition's downstream assets; the valid rows and the rejected rows (rule, source file and
line) are still written, so nothing is lost. A user who accepts a few bad rows reruns with a
higher fraction.
"""


import dagster as dg
import polars as pl

from lob_platform.defs.checks import pandera_check, pandera_check_spec
from lob_platform.defs.partitions import VENUES, by_date_and_instrument
from lob_platform.defs.raw import day_of, raw_key, time_span
from lob_platform.sources.catalog import Venue, find_day, parse_date
from lob_platform.sources.schema import book_levels
from lob_platform.validation.report import RuleResult, ValidationReport, split_valid_rejected
from lob_platform.validation.rules import MESSAGE_RULES, SNAPSHOT_RULES
from lob_platform.validation.schemas import rejected_schema, table_schema

VALID_TABLE = {"messages": "validated_messages", "snapshots": "validated_depth_snapshots"}
REPORT_TABLE = "validation_reports"
REJECTED_TABLE = {"messages": "rejected_messages", "snapshots": "rejected_depth_snapshots"}
BOOK_RULES = {"book_not_crossed", "book_levels_consistent", "book_matches_message"}


class ValidationConfig(dg.Config):
    max_rejected_fraction: float = 0.0
    """Share of a partition's rows a rule may reject before its check fails (0: any)."""


def rule_names(venue: Venue) -> list[str]:
    rules = MESSAGE_RULES if venue.table == "messages" else SNAPSHOT_RULES
    return [r.name for r in rules if venue.has_book or r.name not in BOOK_RULES]


def rule_check(
    result: RuleResult | None, name: str, rows: int, allowed: float, asset_key: dg.AssetKey, source: str, quarantine: str
) -> dg.AssetCheckResult:
    """One rule's verdict on a partition: fails when it rejects more than ``allowed`` of the rows."""
    if result is None:  # the rule needs something this source lacks (e.g. no book, no tick)
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


def build_validated_assets(venue: Venue) -> dg.AssetsDefinition:
    table = venue.table
    valid_key = dg.AssetKey([venue.name, VALID_TABLE[table]])
    rejected_key = dg.AssetKey([venue.name, REJECTED_TABLE[table]])
    report_key = dg.AssetKey([venue.name, REPORT_TABLE])
    checks = [dg.AssetCheckSpec(name, asset=valid_key, blocking=True) for name in rule_names(venue)]
    checks += [pandera_check_spec(valid_key, "columns, dtypes and every rule, on the rows stored"),
               pandera_check_spec(rejected_key, "known rule names, source file and line, the raw columns")]

    @dg.multi_asset(
        name=f"{venue.name}_validate",
        outs={
            "valid": dg.AssetOut(key=valid_key, description=f"{venue.name} {table} that pass every rule, unified schema.",
                                 kinds={"polars", "parquet"}),
            "rejected": dg.AssetOut(key=rejected_key, description=f"{venue.name} rows that break a rule: rules, source_file, source_row, then the row.",
                                    kinds={"polars", "parquet"}),
            "report": dg.AssetOut(key=report_key, description=f"One row per {venue.name} partition: counts per rule and whether "
                                  "every check passed (the DuckDB views of validated tables show passed partitions only).",
                                  kinds={"polars", "parquet"}),
        },
        ins={"raw": dg.AssetIn(key=raw_key(venue))},
        partitions_def=by_date_and_instrument[venue.name],
        check_specs=checks,
        group_name=venue.name,
    )
    def validate(context: dg.AssetExecutionContext, config: ValidationConfig, raw: pl.DataFrame):
        date, instrument = day_of(context)
        day = find_day(venue.name, instrument, parse_date(date, "partition date"))
        source = day.source if day else "(no longer in the data folder)"
        tick = day.tick if day else None
        valid, rejected, report = split_valid_rejected(raw, table, tick, source)
        by_rule = {r.rule: r for r in report.results}
        levels = book_levels(raw.columns)
        results = [
            *(rule_check(by_rule.get(name), name, raw.height, config.max_rejected_fraction, valid_key, source,
                         rejected_key.to_user_string()) for name in rule_names(venue)),
            pandera_check(valid, table_schema(table, levels, tick), valid_key),
            pandera_check(rejected, rejected_schema(table, levels), rejected_key),
        ]
        failed = [r.check_name for r in results if not r.passed]
        yield dg.Output(valid, "valid", metadata={
            "rows": valid.height, "rejected_rows": rejected.height, "source_file": dg.MetadataValue.path(source),
            "checks_passed": not failed, **{f"rejected_by_{r.rule}": r.violations for r in report.results}, **time_span(valid)})
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


validated_assets = [build_validated_assets(venue) for venue in VENUES]
