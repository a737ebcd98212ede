"""The crypto panel (seeds 002, 003): every exchange.pair's book on a 5-second UTC grid, one
partition per date, read from that date's validated depth snapshots of every instrument.

Which instruments the panel of date D reads is the catalogue's answer, not what happens to be
materialized: every crypto instrument with a file on D must have a validation outcome first (the
panel names the ones it waits for). Only instruments whose validation passed enter the panel;
the others are left null and listed as excluded, so a blocked day never reaches a model as if it
were clean. The versions of the snapshots it read are in its metadata (``inputs``); the
rebuild_crypto_panels sensor rebuilds a panel whose inputs changed.
"""

from datetime import date as Date

import dagster as dg
import polars as pl

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.core.tables import REPORT_TABLE
from lob_platform.defs.partitions import every_instrument_of_the_date, trading_date
from lob_platform.defs.raw import venue_key
from lob_platform.features.panel_quality import MIN_PANEL_COVERAGE, coverage_failures, panel_coverage
from lob_platform.features.crypto_panel import build_panel
from lob_platform.lineage import PANEL, InputsNotReady, Warehouse
from lob_platform.sources.catalog import Catalogue
from lob_platform.sources.registry import Venue

STALE_LIMIT = 0.5  # warn when an instrument is stale on more than this share of the grid


def panel_inputs(venue: Venue, date: str, catalogue: Catalogue | None = None) -> tuple[dict[str, str], list[str], list[str]]:
    """(versions of the validated snapshots the panel of ``date`` reads, instruments excluded by
    validation, instruments still waiting for validation), from the catalogue and the warehouse."""
    instruments = (catalogue or venue.catalogue()).instruments_on(venue.name, Date.fromisoformat(date))
    return Warehouse(warehouse_root()).panel_inputs(venue.name, date, instruments, venue.kind.validated)


def build_panel_asset(venue: Venue, settings: Settings) -> dg.AssetsDefinition:
    key = venue_key(venue, PANEL)
    every_instrument = every_instrument_of_the_date()

    @dg.multi_asset(
        name="crypto_panel_5s",
        outs={"panel": dg.AssetOut(key=key, kinds={"polars", "parquet"}, description=(
            "Crypto depth on a 5 s UTC grid: ts_ns, 240 values (exchange > pair > level > side > price/volume), "
            "a stale flag and age per exchange.pair; filled from the newest book received, never older than 60 s."))},
        deps=[dg.AssetDep(venue_key(venue, venue.kind.validated), partition_mapping=every_instrument),
              dg.AssetDep(venue_key(venue, REPORT_TABLE), partition_mapping=every_instrument)],
        partitions_def=trading_date,
        check_specs=[
            dg.AssetCheckSpec("panel_coverage", asset=key, description=(
                f"every instrument the panel includes has a best bid and ask on at least {MIN_PANEL_COVERAGE:.0%} of "
                "the grid, otherwise its columns are nearly all null (a warning: a short capture still gets a panel)")),
            dg.AssetCheckSpec("staleness", asset=key,
                              description=f"no instrument stale on more than {STALE_LIMIT:.0%} of the grid (a warning)"),
        ],
        group_name="crypto_panel",
    )
    def crypto_panel(context: dg.AssetExecutionContext):
        date = context.partition_key
        versions, excluded, pending = panel_inputs(venue, date)
        if pending:
            raise InputsNotReady(
                f"the panel of {date} is not ready: {', '.join(pending)} (crypto files of that date) have no validation "
                "outcome yet. Materialize them first; the rebuild_crypto_panels sensor builds this panel once they have.")
        warehouse = Warehouse(warehouse_root())
        snapshots = {i: warehouse.read(venue.kind.validated, venue.name, date, i) for i in versions}
        panel = build_panel(snapshots, Date.fromisoformat(date), settings.panel)
        summary = panel.summary()
        gaps = panel.gaps.with_columns(pl.from_epoch("gap_start_ns", "ns"), pl.from_epoch("gap_end_ns", "ns"))
        yield dg.Output(panel.frame, "panel", metadata={
            **{k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in summary.items()},
            "excluded_by_validation": dg.MetadataValue.json(excluded),
            "inputs": dg.MetadataValue.json(versions),
            "gaps": dg.MetadataValue.md(f"```\n{gaps}\n```" if gaps.height else "none"),
        })
        coverage = panel_coverage(panel.frame, settings.panel.instruments)
        thin = coverage_failures(coverage, list(versions), MIN_PANEL_COVERAGE)
        yield dg.AssetCheckResult(asset_key=key, check_name="panel_coverage", passed=not thin, severity=dg.AssetCheckSeverity.WARN,
                                  description=f"{len(thin)} included instrument(s) below {MIN_PANEL_COVERAGE:.0%}" if thin
                                  else "every included instrument is covered",
                                  metadata={"coverage": dg.MetadataValue.json({i: round(c, 4) for i, c in coverage.items()}),
                                            "below_minimum": dg.MetadataValue.json(thin)})
        stale = {i: share for i, share in summary["stale_fraction"].items() if share > STALE_LIMIT}
        yield dg.AssetCheckResult(asset_key=key, check_name="staleness", passed=not stale,
                                  severity=dg.AssetCheckSeverity.WARN, metadata={"stale_over_limit": dg.MetadataValue.json(stale)})

    return crypto_panel
