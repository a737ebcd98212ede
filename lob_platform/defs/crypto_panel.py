"""The crypto panel (seeds 002, 003): every exchange.pair's book on a 5-second UTC grid, one
partition per date, read from that date's validated depth snapshots of every instrument.

Only instruments whose validation passed enter the panel; the others are left null and listed
as excluded, so a blocked day never reaches a model as if it were clean."""


from datetime import date as Date

import dagster as dg
import polars as pl

from lob_platform.defs.partitions import trading_date
from lob_platform.defs.resources import MANY_PARTITIONS
from lob_platform.defs.validated import REPORT_TABLE, VALID_TABLE
from lob_platform.features.crypto_panel import PanelConfig, build_panel, has_panel_layout, panel_columns

PANEL_KEY = dg.AssetKey(["crypto", "panel_5s"])
STALE_LIMIT = 0.5  # warn when an instrument is stale on more than this share of the grid


def _every_instrument(table: str) -> dg.AssetIn:
    return dg.AssetIn(key=["crypto", table], metadata=MANY_PARTITIONS,
                      partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"))


def passed_instruments(snapshots: dict[str, pl.DataFrame], reports: dict[str, pl.DataFrame]) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """(snapshots of instruments whose validation report passed, instruments excluded)."""
    instrument = {key: key.split("|")[1] for key in snapshots}
    passed = {key for key, report in reports.items() if report["passed"].all()}
    kept = {instrument[key]: frame for key, frame in snapshots.items() if key in passed}
    return kept, sorted(instrument[key] for key in snapshots if key not in passed)


@dg.multi_asset(
    name="crypto_panel_5s",
    outs={"panel": dg.AssetOut(key=PANEL_KEY, kinds={"polars", "parquet"}, description=(
        "Crypto depth on a 5 s UTC grid: ts_ns, 240 values (exchange > pair > level > side > price/volume), "
        "a stale flag and age per exchange.pair; filled from the newest book received, never older than 60 s."))},
    ins={"snapshots": _every_instrument(VALID_TABLE["snapshots"]), "reports": _every_instrument(REPORT_TABLE)},
    partitions_def=trading_date,
    check_specs=[
        dg.AssetCheckSpec("panel_layout", asset=PANEL_KEY, blocking=True,
                          description="one row per 5 s of the day and the 240 value columns in the documented order"),
        dg.AssetCheckSpec("staleness", asset=PANEL_KEY,
                          description=f"no instrument stale on more than {STALE_LIMIT:.0%} of the grid (a warning)"),
    ],
    group_name="crypto_panel",
)
def crypto_panel(context: dg.AssetExecutionContext, snapshots: dict[str, pl.DataFrame], reports: dict[str, pl.DataFrame]):
    config = PanelConfig()
    kept, excluded = passed_instruments(snapshots, reports)
    panel = build_panel(kept, Date.fromisoformat(context.partition_key), config)
    summary = panel.summary()
    gaps = panel.gaps.with_columns(pl.from_epoch("gap_start_ns", "ns"), pl.from_epoch("gap_end_ns", "ns"))
    yield dg.Output(panel.frame, "panel", metadata={
        **{k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in summary.items()},
        "excluded_by_validation": dg.MetadataValue.json(excluded),
        "gaps": dg.MetadataValue.md(f"```\n{gaps}\n```" if gaps.height else "none"),
    })
    yield dg.AssetCheckResult(asset_key=PANEL_KEY, check_name="panel_layout", passed=has_panel_layout(panel.frame, config),
                              metadata={"rows": panel.frame.height, "value_columns": len(panel_columns(config))})
    stale = {i: share for i, share in summary["stale_fraction"].items() if share > STALE_LIMIT}
    yield dg.AssetCheckResult(asset_key=PANEL_KEY, check_name="staleness", passed=not stale,
                              severity=dg.AssetCheckSeverity.WARN, metadata={"stale_over_limit": dg.MetadataValue.json(stale)})


panel_job = dg.define_asset_job("build_crypto_panel", selection=dg.AssetSelection.assets(PANEL_KEY),
                                description="The 5 s crypto panel of one date, from every instrument's validated snapshots.")
