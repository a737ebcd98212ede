"""Calendar dates from file names, and exchange-local dates and times as UTC epoch nanoseconds."""

from __future__ import annotations

import logging
from datetime import date as Date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


def iso_date(text: str, where: str) -> Date | None:
    """The date in a file name, or None (with a warning naming the file) if it is no real date."""
    try:
        return Date.fromisoformat(text)
    except ValueError:
        log.warning("%s: %r in its name is not a date; the file is not read", where, text)
        return None


def local_midnight_utc_ns(day: Date, tz: str) -> int:
    """UTC ns of local midnight of ``day``, using the zone's offset at local noon.

    Sessions are daytime, so the noon offset is the one in force while the venue trades even
    on a daylight-saving switch day (switches happen at night).
    """
    noon = datetime.combine(day, time(12), tzinfo=ZoneInfo(tz))
    offset = noon.utcoffset() or timedelta(0)
    midnight_naive = datetime.combine(day, time(0), tzinfo=timezone.utc)
    return int((midnight_naive - offset).timestamp()) * 1_000_000_000


def local_datetime_utc_ns(moment: datetime, tz: str) -> int:
    """UTC ns of a naive local wall-clock time in ``tz``."""
    aware = moment.replace(tzinfo=ZoneInfo(tz))
    return round(aware.timestamp() * 1_000_000) * 1000

