"""The Dagster wiring, built by one function from the venues and the settings."""

import dagster as dg

from lob_platform.core.settings import Settings, load_settings
from lob_platform.core.tables import MESSAGES, SNAPSHOTS
from lob_platform.defs.automation import build_automation, build_jobs
from lob_platform.defs.backtests import build_backtest_assets, build_summary_asset
from lob_platform.defs.crypto_panel import build_panel_asset
from lob_platform.defs.features import build_feature_assets
from lob_platform.defs.models import build_model_assets
from lob_platform.defs.panel_models import build_panel_model_assets
from lob_platform.defs.raw import build_raw_asset, build_raw_schema_check
from lob_platform.defs.resources import WarehouseIOManager
from lob_platform.defs.streaming import build_streaming_assets
from lob_platform.defs.tpp import build_tpp_assets
from lob_platform.defs.validated import build_validated_assets
from lob_platform.defs.warehouse import build_catalogue_asset
from lob_platform.deploy.profiles import active_profile
from lob_platform.sources.registry import Venue


def build_definitions(venues: list[Venue], settings: Settings | None = None) -> dg.Definitions:
    """Every venue's ingest and feature assets, the models and backtests of venues with a book, the crypto panel, their checks, the DuckDB catalogue,
    jobs, sensors and schedules, for exactly these venues; nothing reads the data folder until a run does.
    The executor is the deployment profile's (``LOB_PROFILE``: lob_platform.deploy.profiles)."""
    settings = settings or load_settings()
    assets = [build_raw_asset(v) for v in venues]
    assets += [build_validated_assets(v, settings.training) for v in venues]
    assets += [asset for v in venues if v.kind is MESSAGES for asset in build_feature_assets(v, settings)]
    assets += [asset for v in venues if v.kind is MESSAGES and v.has_book for asset in build_model_assets(v, settings)]
    assets += [asset for v in venues if v.kind is MESSAGES and v.has_book for asset in build_tpp_assets(v, settings)]
    backtests = [asset for v in venues if v.kind is MESSAGES and v.has_book for asset in build_backtest_assets(v, settings)]
    assets += backtests
    assets += [build_panel_asset(v, settings) for v in venues if v.kind is SNAPSHOTS]
    assets += [asset for v in venues if v.kind is SNAPSHOTS for asset in build_panel_model_assets(v, settings)]
    streaming = [item for v in venues if v.kind is MESSAGES and v.has_book for item in build_streaming_assets(v, settings)]
    assets += [item for item in streaming if isinstance(item, dg.AssetsDefinition)]
    assets.append(build_catalogue_asset([key for asset in assets for key in asset.keys]))
    if backtests:
        assets.append(build_summary_asset([key for asset in backtests for key in asset.keys]))
    assets += [item for item in streaming if isinstance(item, dg.AssetSpec)]
    jobs = {job.name: job for job in build_jobs(venues, settings)}
    sensors, schedules = build_automation(venues, settings, jobs)
    return dg.Definitions(
        assets=assets,
        asset_checks=[build_raw_schema_check(v) for v in venues],
        jobs=list(jobs.values()),
        sensors=sensors,
        schedules=schedules,
        resources={"io_manager": WarehouseIOManager()},
        executor=active_profile().executor_definition(),
    )
