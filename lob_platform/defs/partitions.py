"""The one home of partition definitions.

Every ingest asset is partitioned by trading date (exchange-local for equities and futures,
UTC for crypto) x instrument. Instruments are dynamic: the sensor and the main job register
them from the files in the data folder, so a new ticker needs no code change.
"""


import dagster as dg

from lob_platform.sources.catalog import VENUES, DayFile

FIRST_DATE = "2012-01-01"  # LOBSTER's public sample days are from 2012

trading_date = dg.DailyPartitionsDefinition(start_date=FIRST_DATE, end_offset=1)
instruments = {venue: dg.DynamicPartitionsDefinition(name=f"{venue}_instruments") for venue in VENUES}
by_date_and_instrument = {
    venue: dg.MultiPartitionsDefinition({"date": trading_date, "instrument": instruments[venue]})
    for venue in VENUES
}


def partition_key(day: DayFile) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day.date.isoformat(), "instrument": day.instrument})
