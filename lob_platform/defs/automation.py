"""Jobs per venue and the automation that keeps the warehouse consistent with the data folder.

Three sensors, evaluated by the daemon under ``dagster dev`` and by the main job in the
foreground (``lob_platform.main_job``):

- ``new_raw_files`` registers new instruments and requests one run per new or re-delivered
  instrument-day: raw -> validated -> features, plus the day's fit chain (fit, tokens, labels)
  when its training window is already settled;
- ``refit_training_windows`` requests the fit chain of every day whose recorded inputs
  (``fit_inputs``: the window's feature partitions and versions) or settings (``spec_hash``)
  differ from what the catalogue and warehouse say they should be now, or whose chain is
  incomplete: a day ingested before its earlier days, an earlier day re-delivered or blocked,
  a late-arriving earlier day;
- ``rebuild_crypto_panels`` requests the panel of every date whose validated snapshots changed
  since it was built (or that has none yet) once every instrument of that date is validated.

A run key carries a digest of the inputs a run is for, so the same state is requested once.
"""

import hashlib
import json

import dagster as dg

from lob_platform.core.settings import Settings, warehouse_root
from lob_platform.core.tables import MESSAGES, REPORT_TABLE, SNAPSHOTS
from lob_platform.defs.crypto_panel import panel_inputs
from lob_platform.defs.features import fit_spec_hash, resolve_window
from lob_platform.defs.partitions import in_partition_range, instruments_of, partition_key
from lob_platform.defs.raw import venue_key
from lob_platform.lineage import BIN_EDGES, EVENT_TOKENS, FEATURES, FIT_CHAIN, PANEL, TOKEN_SEQUENCES, Warehouse
from lob_platform.sources.catalog import Catalogue, DayFile
from lob_platform.sources.registry import Venue

IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]
CATALOGUE_JOB = "refresh_duckdb_catalog"
PANEL_JOB = "build_crypto_panel"


def ingest_job_name(venue: Venue) -> str:
    return f"ingest_{venue.name}"


def ingest_keys(venue: Venue) -> list[dg.AssetKey]:
    """A day's own assets: raw, validated, rejected, report, and features for message venues."""
    tables = [venue.kind.raw, venue.kind.validated, venue.kind.rejected, REPORT_TABLE]
    return [venue_key(venue, t) for t in tables + ([FEATURES] if venue.kind is MESSAGES else [])]


def fit_chain_keys(venue: Venue) -> list[dg.AssetKey]:
    tables = FIT_CHAIN if venue.has_book else (BIN_EDGES, EVENT_TOKENS, TOKEN_SEQUENCES)
    return [venue_key(venue, t) for t in tables]


def build_jobs(venues: list[Venue]) -> list:
    jobs = [
        dg.define_asset_job(ingest_job_name(v), selection=dg.AssetSelection.assets(*ingest_keys(v), *(
            fit_chain_keys(v) if v.kind is MESSAGES else [])), description=(
            f"Read, normalise and validate one {v.name} instrument-day" + (
                ", then its features, fit, tokens and labels." if v.kind is MESSAGES else ".")))
        for v in venues
    ]
    jobs += [dg.define_asset_job(PANEL_JOB, selection=dg.AssetSelection.assets(venue_key(v, PANEL)),
                                 description="The 5 s crypto panel of one date, from every instrument's validated snapshots.")
             for v in venues if v.kind is SNAPSHOTS]
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
        keys += fit_chain_keys(venue) if resolve_window(venue, day.instrument, day.date.isoformat(), settings.training).ready else []
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
    """The fit chains that are missing, stale or incomplete and whose windows are settled."""
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
            complete = all(warehouse.path(key.path[-1], venue.name, date, day.instrument).exists()
                           for key in fit_chain_keys(venue))
            partition = partition_key(day)
            if (recorded == expected and complete) or in_flight(instance, str(partition)):
                continue
            requests.append(dg.RunRequest(
                run_key=f"fit|{day_key(day)}|{digest(json.dumps(expected, sort_keys=True))}",
                job_name=ingest_job_name(venue), partition_key=partition, asset_selection=fit_chain_keys(venue),
                tags={"lob/venue": venue.name, "lob/what": "fit"}))
    return requests


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


def build_sensors(venues: list[Venue], settings: Settings, jobs: dict) -> list[dg.SensorDefinition]:
    """The three sensors (module docstring) over ``jobs`` (by name, from ``build_jobs``)."""
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

    sensors = [new_raw_files]
    sensors += [refit_training_windows] if message_jobs else []
    sensors += [rebuild_crypto_panels] if any(v.kind is SNAPSHOTS for v in venues) else []
    return sensors
