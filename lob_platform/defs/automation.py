"""Jobs per venue and the sensor that registers new instruments and requests runs for new files."""


import json

import dagster as dg

from lob_platform.defs.partitions import VENUES, in_partition_range, instruments, partition_key
from lob_platform.defs.raw import raw_key
from lob_platform.sources.catalog import DayFile, discover

ingest_jobs = {
    venue: dg.define_asset_job(
        f"ingest_{venue}",
        selection=dg.AssetSelection.groups(venue, f"{venue}_features"),
        description=f"Read, normalise and validate one {venue} instrument-day, then its features, fit, tokens and labels.",
    )
    for venue in instruments
}
refresh_catalogue_job = dg.define_asset_job("refresh_duckdb_catalog", selection=dg.AssetSelection.groups("warehouse"))


def day_key(day: DayFile) -> str:
    return f"{day.venue}|{day.instrument}|{day.date}"


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


def ingested_days(instance: dg.DagsterInstance) -> set[str]:
    """Day keys whose raw partition has been materialized (partition keys read "date|instrument")."""
    days = set()
    for venue in VENUES:
        for key in instance.get_materialized_partitions(raw_key(venue)):
            date, instrument = key.split("|")
            days.add(f"{venue.name}|{instrument}|{date}")
    return days


@dg.sensor(jobs=list(ingest_jobs.values()), minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_raw_files(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Registers instruments found in the data folder and requests one run per new instrument-day."""
    seen = json.loads(context.cursor) if context.cursor else {}
    known = {venue: set(context.instance.get_dynamic_partitions(dynamic.name)) for venue, dynamic in instruments.items()}
    days = [day for day in discover() if in_partition_range(day)]
    unloaded = {day.venue for day in days} - set(ingest_jobs)
    if unloaded:
        context.log.warning(f"venues {sorted(unloaded)} were declared after this code location loaded: reload it to ingest them")
        days = [day for day in days if day.venue in ingest_jobs]
    new_instruments, fresh, cursor = plan_new_files(days, seen, known, ingested_days(context.instance))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"{day_key(day)}|{cursor[day_key(day)]}", job_name=ingest_jobs[day.venue].name,
                          partition_key=partition_key(day))
            for day in fresh
        ],
        dynamic_partitions_requests=[
            instruments[venue].build_add_request(keys) for venue, keys in new_instruments.items() if keys
        ],
        cursor=json.dumps(cursor),
    )
