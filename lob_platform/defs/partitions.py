"""The one home of partition definitions.

Every ingest asset is partitioned by trading date (exchange-local for equities and futures,
UTC for crypto) x instrument. Instruments are dynamic: the sensor and the main job register
them from the files in the data folder, so a new ticker needs no code change; venues are the
built-in ones plus those declared in the data folder's venues.toml, read when the code
location loads.
"""


import dagster as dg

from lob_platform.sources.catalog import DayFile, venues

FIRST_DATE = "2000-01-01"  # before any venue the platform reads; older days are reported, not ingested

VENUES = venues()
trading_date = dg.DailyPartitionsDefinition(start_date=FIRST_DATE, end_offset=1)
instruments = {venue.name: dg.DynamicPartitionsDefinition(name=f"{venue.name}_instruments") for venue in VENUES}
by_date_and_instrument = {
    name: dg.MultiPartitionsDefinition({"date": trading_date, "instrument": dynamic})
    for name, dynamic in instruments.items()
}


def in_partition_range(day: DayFile) -> bool:
    """Whether the day's date is a partition (from FIRST_DATE up to today, UTC)."""
    return trading_date.has_partition_key(day.date.isoformat())


def partition_key(day: DayFile) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.date.isoformat(), "instrument": day.instrument})
