"""What travels on the Redis Streams, and how entries are checked.

Keys (one events stream and one predictions stream per model family per instrument)::

    lob:{venue}:{instrument}:events                 the replayed day, one entry per validated event
    lob:{venue}:{instrument}:predictions:{family}   one entry per event the model predicted
    lob:{venue}:dead_letter                         malformed entries, with the reason and their origin

Entry ids are chosen, not generated: ``{ts_ms}-{event_row}`` (the event's time in milliseconds,
its position in the day). They increase with the events, so an id says which event an entry is,
the producer resumes after the last id a stream holds, and a prediction reuses its event's id:
writing it twice is refused by Redis, which makes publishing idempotent.

Event entry fields:

==============  ==============================================================================
date            trading date of the partition (``YYYY-MM-DD``)
instrument      the instrument (must match the stream)
event_row       position of the event in the day's validated messages (0-based)
ts_ns           event time, ns since the epoch (UTC)
event_type      one of ``core.columns.EVENT_TYPES``
side            ``bid`` or ``ask``
price, size     numbers (``nan`` for a status row's price)
book            the book after the event: 4 numbers per level, comma-separated, in
                ``core.columns.book_columns`` order (ask price, ask size, bid price, bid size);
                ``nan`` for an empty level's price; empty for a venue without a book
sent_ns         wall clock (ns) when the producer wrote the entry: the start of the latency
==============  ==============================================================================

Prediction entry fields: ``date``, ``event_row``, ``ts_ns``, ``event_id`` (the events entry),
``label``, ``pred`` (the predicted class), ``p_up``, ``model_version``, ``latency_us`` (event
written -> prediction ready) and ``lag`` (entries of the events stream not yet read when the
batch was read).

Numbers are written in their shortest round-trip decimal form, so a float read back is the float
that was written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lob_platform.core.columns import EVENT_TYPES, book_columns

SIDES = ("bid", "ask")
_EVENT_TYPES, _SIDES = frozenset(EVENT_TYPES), frozenset(SIDES)


def events_stream(venue: str, instrument: str) -> str:
    return f"lob:{venue}:{instrument}:events"


def predictions_stream(venue: str, instrument: str, family: str) -> str:
    return f"lob:{venue}:{instrument}:predictions:{family}"


def dead_letter_stream(venue: str) -> str:
    return f"lob:{venue}:dead_letter"


def instrument_of(stream: str) -> str:
    """The instrument of an events or predictions stream key."""
    return stream.split(":")[2]


def entry_id(ts_ns: int, event_row: int) -> str:
    return f"{ts_ns // 1_000_000}-{event_row}"


def id_tuple(entry: str | bytes) -> tuple[int, int]:
    ms, seq = (entry.decode() if isinstance(entry, bytes) else entry).split("-")
    return int(ms), int(seq)


def encode_events(frame: pl.DataFrame, date: str, instrument: str, levels: int) -> list[tuple[str, dict[str, str]]]:
    """(entry id, fields) for validated messages that carry ``event_row`` (their position in the day)."""
    numbers = [pl.col(c).cast(pl.String).fill_null("nan") for c in book_columns(levels)]
    text = frame.select(
        pl.col("event_row").cast(pl.String),
        pl.col("ts_ns").cast(pl.String),
        pl.col("event_type").cast(pl.String),
        pl.col("side").cast(pl.String),
        pl.col("price").cast(pl.String).fill_null("nan"),
        pl.col("size").cast(pl.String),
        (pl.concat_str(numbers, separator=",") if numbers else pl.lit("")).alias("book"),
    )
    ids = [entry_id(ts, row) for ts, row in zip(frame["ts_ns"].to_list(), frame["event_row"].to_list())]
    names = text.columns
    return [(entry, {"date": date, "instrument": instrument, **dict(zip(names, row))}) for entry, row in zip(ids, text.rows())]


@dataclass
class Rejected:
    entry_id: str
    fields: dict
    reason: str


@dataclass
class Decoded:
    """The well-formed entries of a read, as arrays ready for ``OnlineFeatures.update``."""

    ids: list[str]
    date: list[str]
    event_row: np.ndarray
    sent_ns: np.ndarray
    events: dict[str, np.ndarray]

    def take(self, rows: np.ndarray | slice) -> "Decoded":
        picked = np.arange(len(self.ids))[rows]
        return Decoded([self.ids[i] for i in picked], [self.date[i] for i in picked], self.event_row[rows],
                       self.sent_ns[rows], {k: v[rows] for k, v in self.events.items()})


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields: dict, name: str) -> str:
    value = fields.get(name, fields.get(name.encode()))
    if value is None:
        raise ValueError(f"field {name!r} is missing")
    return _text(value)


def _number(fields: dict, name: str, kind: type = float):
    text = _field(fields, name)
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"field {name!r} is not {'an integer' if kind is int else 'a number'}: {text!r}") from None


def check_entry(fields: dict, instrument: str, levels: int, last_ts: int | None) -> str | None:
    """Why an event entry is malformed (None when it is well formed). ``last_ts``: the time of the
    previous event of the instrument, which this one may not precede."""
    try:
        if _field(fields, "instrument") != instrument:
            return f"unknown instrument {_field(fields, 'instrument')!r} on the stream of {instrument!r}"
        ts = _number(fields, "ts_ns", int)
        if last_ts is not None and ts < last_ts:
            return f"event out of time order: ts_ns {ts} is before the previous event's {last_ts}"
        if not _field(fields, "event_row").isdigit():
            return f"field 'event_row' is not a row number: {_field(fields, 'event_row')!r}"
        if _field(fields, "event_type") not in EVENT_TYPES:
            return f"unknown event_type {_field(fields, 'event_type')!r}"
        if _field(fields, "side") not in SIDES:
            return f"unknown side {_field(fields, 'side')!r}"
        for name in ("price", "size"):
            _number(fields, name)
        _number(fields, "sent_ns", int)
        book = _field(fields, "book")
        values = book.split(",") if book else []
        if len(values) != 4 * levels:
            return f"field 'book' holds {len(values)} numbers; the venue's book has {levels} levels (4 numbers each)"
        for value in values:
            float(value)
        _field(fields, "date")
    except ValueError as problem:
        return str(problem) if "field" in str(problem) else f"field 'book' holds a value that is not a number ({problem})"
    return None


def decode_events(entries: list, instrument: str, levels: int, last_ts: int | None) -> tuple[Decoded, list[Rejected]]:
    """Split a read's entries (``[(id, fields), ...]``) into well-formed events and rejects.

    Well-formed reads (the usual case) are parsed column-wise in one go; a read holding a
    malformed entry is checked entry by entry (``check_entry``) so only the bad entries go."""
    if not entries:
        return _decode_fast([], levels), []
    try:
        decoded = _decode_fast(entries, levels)
        ts = decoded.events["ts_ns"]
        in_order = (last_ts is None or ts[0] >= last_ts) and bool(np.all(ts[1:] >= ts[:-1]))
        known = (set(decoded.events["event_type"]) <= _EVENT_TYPES and set(decoded.events["side"]) <= _SIDES
                 and all(_field(f, "instrument") == instrument for _, f in entries))
        if in_order and known:
            return decoded, []
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    good, rejected = [], []
    for entry, fields in entries:
        reason = check_entry(fields, instrument, levels, last_ts)
        if reason is None:
            good.append((entry, fields))
            last_ts = int(_field(fields, "ts_ns"))
        else:
            rejected.append(Rejected(_text(entry), {_text(k): _text(v) for k, v in fields.items()}, reason))
    return _decode_fast(good, levels), rejected


def _decode_fast(entries: list, levels: int) -> Decoded:
    def column(name: bytes) -> list:
        return [f[name] for _, f in entries]

    n = len(entries)
    book = (np.fromstring(b",".join(column(b"book")).decode(), sep=",") if levels and n else np.zeros(0)).reshape(n, 4 * levels)
    if levels and book.size != n * 4 * levels:
        raise ValueError("book size")
    return Decoded(
        ids=[_text(e) for e, _ in entries],
        date=[v.decode() for v in column(b"date")],
        event_row=np.array(column(b"event_row"), dtype=np.int64),
        sent_ns=np.array(column(b"sent_ns"), dtype=np.int64),
        events={
            "ts_ns": np.array(column(b"ts_ns"), dtype=np.int64),
            "event_type": np.array([v.decode() for v in column(b"event_type")], dtype=object),
            "side": np.array([v.decode() for v in column(b"side")], dtype=object),
            "price": np.array(column(b"price"), dtype=np.float64),
            "size": np.array(column(b"size"), dtype=np.float64),
            "book": book,
        },
    )
