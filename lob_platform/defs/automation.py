"""Jobs per venue and the sensor that registers new instruments and requests runs for new files."""


import json

import dagster as dg

from lob_platform.defs.partitions import instruments, partition_key
from lob_platform.sources.catalog import DayFile, discover

ingest_jobs = {
    venue: dg.define_asset_job(
        f"ingest_{venue}",
        selection=dg.AssetSelection.groups(venue),
        description=f"Read, normalise and validate one {venue} instrument-day.",
    )
    for venue in instruments
}
refresh_catalogue_job = dg.define_asset_job("refresh_duckdb_catalog", selection=dg.AssetSelection.groups("warehouse"))


def file_stamp(day: DayFile) -> str:
    """Identity of a delivered file: a changed file (new mtime) is ingested again."""
    return f"{day.venue}|{day.instrument}|{day.date}|{day.stamp_path.stat().st_mtime_ns}"


def plan_new_files(days: list[DayFile], seen: set[str], known_instruments: dict[str, set[str]]):
    """(instruments to register per venue, days to ingest, new cursor) for files not seen before."""
    new_instruments = {
        venue: sorted({d.instrument for d in days if d.venue == venue} - known) for venue, known in known_instruments.items()
    }
    fresh = [d for d in days if file_stamp(d) not in seen]
    return new_instruments, fresh, sorted(seen | {file_stamp(d) for d in days})


@dg.sensor(jobs=list(ingest_jobs.values()), minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def new_raw_files(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Registers instruments found in the data folder and requests one run per new instrument-day."""
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    known = {venue: set(context.instance.get_dynamic_partitions(dynamic.name)) for venue, dynamic in instruments.items()}
    new_instruments, fresh, cursor = plan_new_files(discover(), seen, known)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=file_stamp(day), job_name=ingest_jobs[day.venue].name, partition_key=partition_key(day))
            for day in fresh
        ],
        dynamic_partitions_requests=[
            instruments[venue].build_add_request(keys) for venue, keys in new_instruments.items() if keys
        ],
        cursor=json.dumps(cursor),
    )
