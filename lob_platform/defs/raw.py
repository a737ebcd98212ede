"""Raw assets: each venue's files, normalised to the unified schema, one partition per
(trading date, instrument). Days without a file yield nothing, so weekends and holidays are
skipped (the run succeeds, downstream steps are skipped)."""

from datetime import datetime, timezone

import dagster as dg
import polars as pl

from lob_platform.core.columns import book_levels
from lob_platform.defs.checks import PANDERA_CHECK, pandera_check
from lob_platform.defs.partitions import by_date_and_instrument, day_of
from lob_platform.sources.catalog import DayFile, parse_date
from lob_platform.sources.registry import Venue
from lob_platform.validation.schemas import table_schema


def _utc_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")


def time_span(frame: pl.DataFrame) -> dict[str, str]:
    """First and last event time of a partition, for its metadata."""
    if frame.is_empty():
        return {}
    return {"first_event_utc": _utc_text(frame["ts_ns"].min()), "last_event_utc": _utc_text(frame["ts_ns"].max())}


def raw_metadata(day: DayFile, frame: pl.DataFrame) -> dict:
    return {
        "source_file": dg.MetadataValue.path(day.source),
        "source_bytes": sum(path.stat().st_size for path in day.files),
        "rows": frame.height,
        "book_levels": book_levels(frame.columns),
        **time_span(frame),
    }


def venue_key(venue: Venue, table: str) -> dg.AssetKey:
    """The asset key of one of a venue's tables: ``[venue, table]``."""
    return dg.AssetKey([venue.name, table])


def find_day(venue: Venue, context) -> DayFile | None:
    date, instrument = day_of(context)
    return venue.catalogue().find(venue.name, instrument, parse_date(date, "partition date"))


def build_raw_asset(venue: Venue) -> dg.AssetsDefinition:
    @dg.asset(
        key=venue_key(venue, venue.kind.raw),
        partitions_def=by_date_and_instrument(venue.name),
        output_required=False,
        group_name=venue.name,
        kinds={"polars", "parquet"},
        description=venue.description,
    )
    def raw(context: dg.AssetExecutionContext):
        day = find_day(venue, context)
        if day is None:
            date, instrument = day_of(context)
            context.log.info(f"no {venue.name} file for {instrument} on {date} (weekend, holiday or not delivered): skipped")
            return
        frame = day.read()
        yield dg.Output(frame, metadata=raw_metadata(day, frame))

    return raw


def build_raw_schema_check(venue: Venue) -> dg.AssetChecksDefinition:
    key = venue_key(venue, venue.kind.raw)

    @dg.asset_check(
        asset=key,
        name=PANDERA_CHECK,
        blocking=True,
        partitions_def=by_date_and_instrument(venue.name),
        description="the raw table has the unified columns and dtypes (rules are the validated layer's job)",
    )
    def raw_schema(raw: pl.DataFrame) -> dg.AssetCheckResult:
        return pandera_check(raw, table_schema(venue.kind, book_levels(raw.columns), None, with_rules=False), key)

    return raw_schema
