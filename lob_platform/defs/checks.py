"""Asset-check results built from pandera schemas, shared by the raw and validated layers."""

import dagster as dg
import pandera.errors
import pandera.polars as pa
import polars as pl

PANDERA_CHECK = "pandera_schema"


def pandera_check(frame: pl.DataFrame, schema: pa.DataFrameSchema, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    """pandera's verdict on a table about to be stored, with the failure cases in metadata."""
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        failures = errors.failure_cases.select("schema_context", "column", "check", "failure_case").head(20)
        return dg.AssetCheckResult(
            asset_key=asset_key, check_name=PANDERA_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"schema": schema.name, "failures": dg.MetadataValue.md(f"```\n{failures}\n```")},
        )
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=PANDERA_CHECK, passed=True,
        metadata={"schema": schema.name, "columns": len(schema.columns)},
    )


def pandera_check_spec(asset_key: dg.AssetKey, what: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(PANDERA_CHECK, asset=asset_key, blocking=True, description=f"the table matches its pandera schema ({what})")
