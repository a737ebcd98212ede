"""The DuckDB catalogue as an asset: views over every warehouse table, refreshed after ingest."""

from pathlib import Path

import dagster as dg

from lob_platform.core.settings import warehouse_root
from lob_platform.warehouse import CATALOGUE, refresh_views


def build_catalogue_asset(tables: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(key=["warehouse", "duckdb_catalog"], deps=tables, group_name="warehouse", kinds={"duckdb"})
    def duckdb_catalog() -> dg.MaterializeResult:
        """Views in warehouse/lob.duckdb over every table's parquet partitions (hive keys venue,
        instrument, date become columns), so `duckdb warehouse/lob.duckdb` answers SQL on all outputs."""
        root = warehouse_root()
        counts = refresh_views(root)
        return dg.MaterializeResult(metadata={
            "catalogue": dg.MetadataValue.path(str(Path(root, CATALOGUE).resolve())),
            "views": dg.MetadataValue.json(counts),
        })

    return duckdb_catalog
