"""The code location: ingest and feature assets per venue, the crypto panel, their checks, the DuckDB
catalogue, jobs, sensor."""


import dagster as dg

from lob_platform.defs.automation import ingest_jobs, new_raw_files, refresh_catalogue_job
from lob_platform.defs.crypto_panel import crypto_panel, panel_job
from lob_platform.defs.features import feature_assets
from lob_platform.defs.raw import raw_assets, raw_checks
from lob_platform.defs.resources import WarehouseIOManager
from lob_platform.defs.validated import validated_assets
from lob_platform.defs.warehouse import duckdb_catalog

defs = dg.Definitions(
    assets=[*raw_assets, *validated_assets, *feature_assets, crypto_panel, duckdb_catalog],
    asset_checks=raw_checks,
    jobs=[*ingest_jobs.values(), panel_job, refresh_catalogue_job],
    sensors=[new_raw_files],
    resources={"io_manager": WarehouseIOManager()},
)
