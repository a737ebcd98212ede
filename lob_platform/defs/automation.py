"""Jobs per venue and the automation that keeps the warehouse consistent with the data folder.

Three sensors, evaluated by the daemon under ``dagster dev`` and by the main job in the
foreground (``lob_platform.main_job``), and schedules:

- ``new_raw_files`` registers new instruments and requests one run per new or re-delivered
  instrument-day: raw -> validated -> features, plus the day's fit chain (fit, tokens, labels)
  and, for venues with a book, its models (trained_models, predictions, model_metrics of every
  family) when its training window is already settled;
- ``refit_training_windows`` requests the fit chain and models of every day whose recorded inputs
  (``fit_inputs``: the window's feature partitions and versions) or settings (``spec_hash``,
  and each model's ``config_hash``) differ from what the catalogue and warehouse say they should
  be now, or whose chain is incomplete: a day ingested before its earlier days, an earlier day
  re-delivered or blocked, a late-arriving earlier day, changed model settings;
- ``rebuild_crypto_panels`` requests the panel of every date whose validated snapshots changed
  since it was built (or that has none yet) once every instrument of that date is validated;
- ``nightly_retraining_{venue}`` (02:00 UTC) ingests whatever arrived and was not ingested yet, retrains
  every stale day (the same logic as ``refit_training_windows``) and trains the models of each
  instrument's next trading day, on the days up to today, so they are ready before it opens;
  their predictions follow when that day's data arrives;
- ``nightly_panel_forecasters`` (03:00 UTC) trains the crypto panel forecasters of yesterday on the
  dates before it and scores them on it, once yesterday's panel is built.

A run key carries a digest of the inputs a run is for, so the same state is requested once.
"""

import hashlib
import json
from datetime import date as Date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.core.tables import MESSAGES, REPORT_TABLE, SNAPSHOTS
from lob_platform.defs.backtests import backtest_keys
from lob_platform.defs.crypto_panel import panel_inputs
from lob_platform.defs.features import fit_spec_hash, resolve_window
from lob_platform.defs.models import model_key, model_keys, model_tables
from lob_platform.defs.panel_models import GROUP as PANEL_MODELS_GROUP
from lob_platform.defs.partitions import in_partition_range, instruments_of, partition_key, trading_date
from lob_platform.defs.raw import venue_key
from lob_platform.defs.streaming import STREAM_EVALUATION, stream_evaluation_job_name
from lob_platform.features.training_window import PREVIOUS_DAYS
from lob_platform.lineage import (BACKTEST_TABLES, BIN_EDGES, EVENT_TOKENS, FEATURES, FIT_CHAIN, PANEL, TOKEN_SEQUENCES,
                                  TRAINED_MODELS, Warehouse)
from lob_platform.models.specs import FAMILIES
from lob_platform.sources.catalog import Catalogue, DayFile
from lob_platform.sources.registry import Venue
from lob_platform.training.fit import config_hash

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
CATALOGUE_JOB = "refresh_duckdb_catalog"
PANEL_JOB = "build_crypto_panel"
PANEL_FORECASTERS_JOB = "train_panel_forecasters"


def ingest_job_name(venue: Venue) -> str:
    return f"ingest_{venue.name}"


def ingest_keys(venue: Venue) -> list[dg.AssetKey]:
    """A day's own assets: raw, validated, rejected, report, and features for message venues."""
    tables = [venue.kind.raw, venue.kind.validated, venue.kind.rejected, REPORT_TABLE]
    return [venue_key(venue, t) for t in tables + ([FEATURES] if venue.kind is MESSAGES else [])]


def fit_chain_tables(venue: Venue) -> tuple[str, ...]:
    return FIT_CHAIN if venue.has_book else (BIN_EDGES, EVENT_TOKENS, TOKEN_SEQUENCES)


def fit_chain_keys(venue: Venue, settings: Settings) -> list[dg.AssetKey]:
    """A day's assets made from its training window: the fit chain, and the models where there is a book."""
    families = settings.models.families + settings.models.event_families
    models = model_keys(venue, families) + backtest_keys(venue, settings) if venue.has_book else []
    return [venue_key(venue, t) for t in fit_chain_tables(venue)] + models


def build_jobs(venues: list[Venue], settings: Settings) -> list:
    jobs = [
        dg.define_asset_job(ingest_job_name(v), selection=dg.AssetSelection.assets(*ingest_keys(v), *(
            fit_chain_keys(v, settings) if v.kind is MESSAGES else [])), description=(
            f"Read, normalise and validate one {v.name} instrument-day" + (
                ", then its features, fit, tokens and labels" + (", and its models." if v.has_book else ".")
                if v.kind is MESSAGES else ".")))
        for v in venues
    ]
    jobs += [dg.define_asset_job(PANEL_JOB, selection=dg.AssetSelection.assets(venue_key(v, PANEL)),
                                 description="The 5 s crypto panel of one date, from every instrument's validated snapshots.")
             for v in venues if v.kind is SNAPSHOTS]
    jobs += [dg.define_asset_job(PANEL_FORECASTERS_JOB, selection=dg.AssetSelection.groups(PANEL_MODELS_GROUP), description=(
                 "The crypto panel forecasters of one date (the sixteen transformers, SSM-HiPPO, the summary), trained on "
                 "the dates before it and scored on it."))
             for v in venues if v.kind is SNAPSHOTS and settings.models.panel_families][:1]
    jobs += [dg.define_asset_job(stream_evaluation_job_name(v), selection=dg.AssetSelection.assets(venue_key(v, STREAM_EVALUATION)),
                                 description="Evaluate what the streaming path predicted for one instrument-day (`lob stream run`).")
             for v in venues if v.kind is MESSAGES and v.has_book]
    jobs.append(dg.define_asset_job(CATALOGUE_JOB, selection=dg.AssetSelection.groups("warehouse")))
    return jobs


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def day_key(day: DayFile) -> str:
    return f"{day.venue}|{day.instrument}|{day.date}"


def in_flight(instance: dg.DagsterInstance, partition: str) -> bool:
    """Whether a run for this partition is queued or running (the automation waits for it)."""
    runs = instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT, tags={"dagster/partition": partition}), limit=1)
    return bool(runs)


def ingest_request(venue: Venue, day: DayFile, settings: Settings, run_key: str | None) -> dg.RunRequest:
    """Ingest one instrument-day; with its fit chain when the days its window needs are settled."""
    keys = ingest_keys(venue)
    if venue.kind is MESSAGES:
        keys += fit_chain_keys(venue, settings) if resolve_window(venue, day.instrument, day.date.isoformat(), settings.training).ready else []
    what = "ingest+fit" if len(keys) > len(ingest_keys(venue)) else "ingest"
    return dg.RunRequest(run_key=run_key, job_name=ingest_job_name(venue), partition_key=partition_key(day),
                         asset_selection=keys, tags={"lob/venue": venue.name, "lob/what": what})


def plan_new_files(
    days: list[DayFile], seen: dict[str, int], known_instruments: dict[str, set[str]], ingested: set[str]
) -> tuple[dict[str, list[str]], list[DayFile], dict[str, int]]:
    """(instruments to register per venue, days to ingest, new cursor).

    A day is ingested when its file is new or changed (modification time) since the sensor last
    looked; a file the sensor has not seen whose partition is already materialized (by the main
    job or a manual run) is only recorded.
    """
    new_instruments = {
        venue: sorted({d.instrument for d in days if d.venue == venue} - known) for venue, known in known_instruments.items()
    }
    stamps = {day_key(d): d.stamp_ns for d in days}
    fresh = [d for d in days if (seen[day_key(d)] != stamps[day_key(d)] if day_key(d) in seen else day_key(d) not in ingested)]
    return new_instruments, fresh, stamps


def ingested_days(instance: dg.DagsterInstance, venues: list[Venue]) -> set[str]:
    """Day keys whose raw partition has been materialized (partition keys read "date|instrument")."""
    days = set()
    for venue in venues:
        for key in instance.get_materialized_partitions(venue_key(venue, venue.kind.raw)):
            date, instrument = key.split("|")
            days.add(f"{venue.name}|{instrument}|{date}")
    return days


def refit_requests(venues: list[Venue], settings: Settings, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """The fit chains and models that are missing, stale or incomplete and whose windows are settled
    (only the stale families' models when the fit itself is up to date)."""
    warehouse, requests = Warehouse(warehouse_root()), []
    expected_spec = fit_spec_hash(settings, settings.training)
    for venue in (v for v in venues if v.kind is MESSAGES):
        catalogue = venue.catalogue()
        for day in (d for d in catalogue.days if in_partition_range(d)):
            date = day.date.isoformat()
            if warehouse.status(venue.name, day.instrument, date, FEATURES) != "passed":
                continue
            plan = warehouse.fit_plan(venue.name, day.instrument, date, catalogue.dates_of(venue.name, day.instrument),
                                      settings.training.train_days, settings.training.lookback_days)
            if not plan.ready:
                continue
            expected = {"fit_inputs": warehouse.fit_inputs(plan, venue.name, day.instrument), "spec_hash": expected_spec}
            recorded = warehouse.recorded(BIN_EDGES, venue.name, date, day.instrument, list(expected))
            complete = all(warehouse.path(table, venue.name, date, day.instrument).exists() for table in fit_chain_tables(venue))
            stale_models = stale_model_families(warehouse, venue, day.instrument, date, plan, settings)
            partition = partition_key(day)
            if (recorded == expected and complete and not stale_models) or in_flight(instance, str(partition)):
                continue
            refit = recorded != expected or not complete
            keys = fit_chain_keys(venue, settings) if refit else [
                *model_keys(venue, tuple(stale_models)), *backtest_keys(venue, settings, tuple(stale_models))]
            requests.append(dg.RunRequest(
                run_key=f"fit|{day_key(day)}|{digest(json.dumps([expected, stale_models], sort_keys=True))}",
                job_name=ingest_job_name(venue), partition_key=partition, asset_selection=keys,
                tags={"lob/venue": venue.name, "lob/what": "fit" if refit else "train"}))
    return requests


def expected_model_record(warehouse: Warehouse, venue: Venue, instrument: str, plan, settings: Settings, family: str) -> dict:
    """What a family's trained_models partition records when it is up to date with the catalogue,
    the warehouse and the settings."""
    return {"fit_inputs": warehouse.window_inputs(plan, venue.name, instrument),
            "spec_hash": fit_spec_hash(settings, settings.training), "config_hash": config_hash(family, settings.models)}


def stale_model_families(warehouse: Warehouse, venue: Venue, instrument: str, date: str, plan, settings: Settings,
                         tables: tuple[str, ...] | None = None) -> list[str]:
    """Families (the Mamba TPP included) whose models of ``date`` are missing, trained on other
    inputs or settings, or lack one of ``tables`` (default: the family's tables, and the backtest's
    where backtests are on; none for a venue without a book)."""
    if not venue.has_book:
        return []
    stale = []
    for family in settings.models.families + settings.models.event_families:
        expected = expected_model_record(warehouse, venue, instrument, plan, settings, family)
        recorded = warehouse.recorded(TRAINED_MODELS, venue.name, date, instrument, list(expected), model=family)
        wanted = tables if tables is not None else model_tables(family) + (BACKTEST_TABLES if settings.backtest.enabled and family in FAMILIES else ())
        complete = all(warehouse.path(t, venue.name, date, instrument, family).exists() for t in wanted)
        if recorded != expected or not complete:
            stale.append(family)
    return stale


def next_trading_day(venue: Venue, evaluated_at: datetime) -> Date:
    """The venue's first trading day after the (venue-local) date of ``evaluated_at``."""
    day = evaluated_at.astimezone(ZoneInfo(venue.timezone)).date() + timedelta(days=1)
    while venue.weekdays_only and day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def nightly_requests(venue: Venue, settings: Settings, instance: dg.DagsterInstance, evaluated_at: datetime) -> list[dg.RunRequest]:
    """What ``nightly_retraining`` asks for at ``evaluated_at`` (module docstring): the days in the
    data folder never ingested, the stale days' refits and retraining, and the models of each
    instrument's next trading day where that day has no file yet and its window is settled.
    Only registered instruments: a schedule cannot add partitions, the ``new_raw_files`` sensor does."""
    catalogue, warehouse = venue.catalogue(), Warehouse(warehouse_root())
    night = evaluated_at.date().isoformat()
    ingested = ingested_days(instance, [venue])
    known = set(instance.get_dynamic_partitions(instruments_of(venue.name).name))  # new ones: the new_raw_files sensor
    requests = [ingest_request(venue, d, settings, f"nightly|{night}|{day_key(d)}|{d.stamp_ns}") for d in catalogue.days
                if in_partition_range(d) and d.instrument in known and day_key(d) not in ingested]
    if venue.kind is not MESSAGES:
        return requests
    requests += refit_requests([venue], settings, instance)
    if not venue.has_book:
        return requests
    upcoming = next_trading_day(venue, evaluated_at)
    for instrument in sorted({d.instrument for d in catalogue.days} & known):
        if catalogue.find(venue.name, instrument, upcoming) or not trading_date.has_partition_key(upcoming.isoformat()):
            continue
        date = upcoming.isoformat()
        plan = warehouse.fit_plan(venue.name, instrument, date, catalogue.dates_of(venue.name, instrument),
                                  settings.training.train_days, settings.training.lookback_days)
        if not plan.ready or plan.scope != PREVIOUS_DAYS:
            continue
        stale = stale_model_families(warehouse, venue, instrument, date, plan, settings, tables=(TRAINED_MODELS,))
        if stale:
            requests.append(dg.RunRequest(
                run_key=f"nightly|{night}|{venue.name}|{instrument}|{date}|{','.join(stale)}", job_name=ingest_job_name(venue),
                partition_key=dg.MultiPartitionKey({"date": date, "instrument": instrument}),
                asset_selection=[model_key(venue, f, TRAINED_MODELS) for f in stale],
                tags={"lob/venue": venue.name, "lob/what": "train ahead"}))
    return requests


def panel_forecaster_requests(venues: list[Venue], evaluated_at: datetime) -> list[dg.RunRequest] | dg.SkipReason:
    """The panel forecasters of the day before ``evaluated_at`` where its panel is built."""
    yesterday = (evaluated_at.date() - timedelta(days=1)).isoformat()
    built = [v for v in venues if Warehouse(warehouse_root()).path(PANEL, v.name, yesterday).exists()]
    if not built:
        return dg.SkipReason(f"no crypto panel of {yesterday} yet: the forecasters of that date wait for it")
    return [dg.RunRequest(run_key=f"panel-forecasters|{v.name}|{yesterday}", partition_key=yesterday,
                          tags={"lob/venue": v.name, "lob/what": "panel forecasters"}) for v in built]


def panel_requests(venues: list[Venue], instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """The panels of dates whose instruments are all validated and whose inputs changed or that have none."""
    requests = []
    for venue in (v for v in venues if v.kind is SNAPSHOTS):
        key, catalogue = venue_key(venue, PANEL), venue.catalogue()
        for date in sorted({d.date.isoformat() for d in catalogue.days if in_partition_range(d)}):
            versions, excluded, pending = panel_inputs(venue, date, catalogue)
            if pending or not (versions or excluded) or in_flight(instance, date):
                continue
            if recorded_panel_inputs(instance, key, date) == versions:
                continue
            requests.append(dg.RunRequest(run_key=f"panel|{venue.name}|{date}|{digest(json.dumps(versions, sort_keys=True))}",
                                          job_name=PANEL_JOB, partition_key=date, tags={"lob/venue": venue.name, "lob/what": "panel"}))
    return requests


def recorded_panel_inputs(instance: dg.DagsterInstance, key: dg.AssetKey, date: str) -> dict | None:
    """The inputs the newest materialization of a panel partition recorded (None: none, or its file is gone)."""
    if not Warehouse(warehouse_root()).path(PANEL, key.path[0], date).exists():
        return None
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[date]), limit=1).records
    if not records:
        return None
    inputs = records[0].asset_materialization.metadata.get("inputs")
    return inputs.value if inputs is not None else None


def build_automation(venues: list[Venue], settings: Settings, jobs: dict) -> tuple[list[dg.SensorDefinition], list]:
    """The sensors and the nightly schedules (module docstring) over ``jobs`` (by name, from ``build_jobs``)."""
    message_jobs = [jobs[ingest_job_name(v)] for v in venues if v.kind is MESSAGES]
    by_name = {v.name: v for v in venues}

    @dg.sensor(jobs=[jobs[ingest_job_name(v)] for v in venues], minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
    def new_raw_files(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Registers instruments found in the data folder and requests one run per new instrument-day."""
        seen = json.loads(context.cursor) if context.cursor else {}
        known = {v.name: set(context.instance.get_dynamic_partitions(instruments_of(v.name).name)) for v in venues}
        days = [d for d in Catalogue.scan(venues).days if in_partition_range(d)]
        new_instruments, fresh, cursor = plan_new_files(days, seen, known, ingested_days(context.instance, venues))
        return dg.SensorResult(
            run_requests=[ingest_request(by_name[d.venue], d, settings, f"{day_key(d)}|{cursor[day_key(d)]}") for d in fresh],
            dynamic_partitions_requests=[
                instruments_of(name).build_add_request(keys) for name, keys in new_instruments.items() if keys
            ],
            cursor=json.dumps(cursor),
        )

    @dg.sensor(jobs=message_jobs or None, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
    def refit_training_windows(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Refits every day whose training window (or settings) changed since its fit, once the window is settled."""
        return dg.SensorResult(run_requests=refit_requests(venues, settings, context.instance))

    @dg.sensor(jobs=[jobs[PANEL_JOB]] if PANEL_JOB in jobs else None, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
    def rebuild_crypto_panels(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        """Builds or rebuilds the crypto panel of every date whose validated snapshots changed."""
        return dg.SensorResult(run_requests=panel_requests(venues, context.instance))

    def nightly(venue: Venue) -> dg.ScheduleDefinition:
        @dg.schedule(name=f"nightly_retraining_{venue.name}", cron_schedule="0 2 * * *", execution_timezone="UTC",
                     job=jobs[ingest_job_name(venue)], default_status=dg.DefaultScheduleStatus.RUNNING)
        def nightly_retraining(context: dg.ScheduleEvaluationContext):
            """Each night: ingest what arrived, retrain what it changed, train the next trading day's models."""
            return nightly_requests(venue, settings, context.instance, context.scheduled_execution_time)

        return nightly_retraining

    schedules = [nightly(v) for v in venues]
    if PANEL_FORECASTERS_JOB in jobs:
        panel_venues = [v for v in venues if v.kind is SNAPSHOTS]

        @dg.schedule(name="nightly_panel_forecasters", cron_schedule="0 3 * * *", execution_timezone="UTC",
                     job=jobs[PANEL_FORECASTERS_JOB], default_status=dg.DefaultScheduleStatus.RUNNING)
        def nightly_panel_forecasters(context: dg.ScheduleEvaluationContext):
            """Each night: the panel forecasters of yesterday, once its panel is built."""
            return panel_forecaster_requests(panel_venues, context.scheduled_execution_time)

        schedules.append(nightly_panel_forecasters)
    sensors = [new_raw_files]
    sensors += [refit_training_windows] if message_jobs else []
    sensors += [rebuild_crypto_panels] if any(v.kind is SNAPSHOTS for v in venues) else []
    return sensors, schedules
