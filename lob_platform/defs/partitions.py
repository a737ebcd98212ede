"""The one home of partition definitions.

Every ingest asset is partitioned by trading date (exchange-local for equities and futures,
UTC for crypto) x instrument. Instruments are dynamic: the sensor and the main job register
them from the files in the data folder, so a new ticker needs no code change; venues are the
built-in ones plus those declared in the data folder's venues.toml, read when the code
location loads.
"""


import dagster as dg

from lob_platform.sources.catalog import DayFile, venues

FIRST_DATE = "2012-01-01"  # LOBSTER's public sample days are from 2012

VENUES = venues()
trading_date = dg.DailyPartitionsDefinition(start_date=FIRST_DATE, end_offset=1)
instruments = {venue.name: dg.DynamicPartitionsDefinition(name=f"{venue.name}_instruments") for venue in VENUES}
by_date_and_instrument = {
    name: dg.MultiPartitionsDefinition({"date": trading_date, "instrument": dynamic})
    for name, dynamic in instruments.items()
}


def partition_key(day: DayFile) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.date.isoformat(), "instrument": day.instrument})
