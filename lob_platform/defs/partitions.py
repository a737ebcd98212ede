"""The one home of partition definitions.

Every ingest asset is partitioned by trading date (exchange-local for equities and futures, UTC
for crypto) x instrument. Instruments are dynamic: the sensor and the main job register them from
the files in the data folder, so a new ticker needs no code change.
"""

from functools import lru_cache

import dagster as dg

from lob_platform.sources.catalog import DayFile

FIRST_DATE = "2000-01-01"  # before any venue the platform reads; older days are reported, not ingested

trading_date = dg.DailyPartitionsDefinition(start_date=FIRST_DATE, end_offset=1)


@lru_cache(maxsize=None)
def instruments_of(venue: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{venue}_instruments")


@lru_cache(maxsize=None)
def by_date_and_instrument(venue: str) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"date": trading_date, "instrument": instruments_of(venue)})


def in_partition_range(day: DayFile) -> bool:
    """Whether the day's date is a partition (from FIRST_DATE up to today, UTC)."""
    return trading_date.has_partition_key(day.date.isoformat())


def partition_key(day: DayFile) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.date.isoformat(), "instrument": day.instrument})


def day_of(context) -> tuple[str, str]:
    """(date, instrument) of a run or step on a date x instrument partition."""
    key = context.partition_key
    dims = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else dict(zip(("date", "instrument"), key.split("|")))
    return dims["date"], dims["instrument"]


def earlier_days(lookback_days: int) -> dg.MultiPartitionMapping:
    """A date x instrument partition to the same instrument's ``lookback_days`` calendar days up to
    and including its date (the training window reads some of them, chosen by the catalogue)."""
    return dg.MultiPartitionMapping({
        "date": dg.DimensionPartitionMapping("date", dg.TimeWindowPartitionMapping(start_offset=-lookback_days, end_offset=0)),
        "instrument": dg.DimensionPartitionMapping("instrument", dg.IdentityPartitionMapping()),
    })


def every_instrument_of_the_date() -> dg.PartitionMapping:
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date")
