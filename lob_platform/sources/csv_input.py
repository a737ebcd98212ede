"""Typed CSV parsing with errors that point at the offending line.

The fast path is one typed ``polars.read_csv``; only when it fails (or leaves holes) does a
slow line-by-line scan run, to tell the user the file, line and column that is wrong.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from pathlib import Path

import polars as pl

from lob_platform.errors import MalformedFileError

_MAX_REPORTED = 5


def read_typed_csv(
    data: bytes,
    origin: str,
    schema: dict[str, pl.DataType],
    has_header: bool,
    columns: list[str] | None = None,
    nullable: frozenset[str] = frozenset(),
) -> pl.DataFrame:
    """Parse ``data`` with exactly ``schema``; raise MalformedFileError naming bad lines.

    ``origin`` names the file (or zip member) in messages. With a header, ``schema`` may
    cover only some columns (those read); without one it must list every column in order.
    Columns in ``nullable`` may have empty fields; any other hole is an error. Blank lines at
    the end of the file are ignored.
    """
    if not data.strip():
        raise MalformedFileError(f"{origin} is empty: re-export the file or remove it.")
    if data.endswith((b"\n\n", b"\r\n\r\n", b" ")):
        data = data.rstrip() + b"\n"
    try:
        if has_header:
            frame = pl.read_csv(io.BytesIO(data), schema_overrides=schema, columns=columns)
        else:
            frame = pl.read_csv(io.BytesIO(data), has_header=False, schema=schema)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise MalformedFileError(_describe_bad_lines(data, origin, schema, has_header, nullable, exc)) from exc
    required = [name for name in frame.columns if name not in nullable]
    if frame.select(pl.any_horizontal(pl.col(required).is_null()).any()).item():
        raise MalformedFileError(_describe_bad_lines(data, origin, schema, has_header, nullable, None))
    return frame


def read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped for ``*.gz``."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise MalformedFileError(f"{path}: not a complete gzip file ({error}); download or compress it again.") from None


def header_columns(data: bytes, origin: str) -> list[str]:
    """Column names of a CSV with a header (byte-order mark and quotes handled like the parser)."""
    if not data.strip():
        raise MalformedFileError(f"{origin} is empty: re-export the file or remove it.")
    return pl.read_csv(io.BytesIO(data), n_rows=0, infer_schema=False).columns


def _describe_bad_lines(
    data: bytes, origin: str, schema: dict[str, pl.DataType], has_header: bool, nullable, exc
) -> str:
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    header = header_columns(data, origin) if has_header else list(schema)
    positions = {name: header.index(name) for name in schema if name in header}
    missing = [name for name in schema if name not in positions]
    if missing:
        return (
            f"{origin}: missing column(s) {missing}; the header has {header}. "
            "Check the file or the column mapping."
        )
    problems: list[str] = []
    first = 2 if has_header else 1
    readable = _readable_line(len(header), positions, schema, nullable)
    for number, line in enumerate(lines[first - 1 :], start=first):
        if readable.fullmatch(line):
            continue
        problem = _line_problem(line, len(header), positions, schema, nullable)
        if problem:
            problems.append(f"line {number}: {problem}")
            if len(problems) == _MAX_REPORTED:
                break
    if not problems:
        problems.append(f"parser said: {exc}")
    return (
        f"{origin}: cannot be read; "
        + "; ".join(problems)
        + ". Repair or re-export the file (nothing from it was loaded)."
    )


# What polars' CSV parser reads as a number: ASCII digits with an optional sign, leading blanks
# allowed, trailing ones not; floats also take a decimal point, an exponent, nan and inf(inity),
# in any case. Python's int() and float() accept more (``1_000``, non-ASCII digits, trailing
# blanks), so they cannot judge a field.
_BLANK = r"[ \t]*"
_INTEGER = r"[ \t]*[+-]?[0-9]+"
_SHORT_INTEGER = r"[ \t]*[+-]?[0-9]{1,18}"  # within the 64-bit range whatever its digits
_FLOAT = r"[ \t]*[+-]?(?:nan|inf|infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
_ANY_FIELD = r'[^,"]*'
_TEXT_FIELD = r'[^,"]*[^ \t,"][^,"]*'  # not blank
_FLAGS = re.IGNORECASE | re.ASCII  # ASCII: no dotless i in "ınf"
_INT64 = (-(2**63), 2**63 - 1)


def _line_problem(line: str, n_fields: int, positions: dict[str, int], schema, nullable) -> str | None:
    if not line.strip():
        return "the line is empty"
    fields = next(csv.reader([line]))
    if len(fields) != n_fields:
        hint = "the file looks truncated" if len(fields) < n_fields else "stray delimiter"
        return f"{len(fields)} fields where {n_fields} are expected ({hint})"
    for name, position in positions.items():
        value = fields[position]
        dtype = schema[name]
        if re.fullmatch(_BLANK, value) and name in nullable:
            continue
        if re.fullmatch(_BLANK, value):
            return f"column {name!r} is empty"
        if dtype.is_numeric():
            problem = _number_problem(value, dtype)
            if problem:
                return f"column {name!r} = {value!r} {problem}"
    return None


def _number_problem(value: str, dtype: pl.DataType) -> str | None:
    """Why the CSV parser refuses ``value`` as a ``dtype`` number, or None if it reads it."""
    if not dtype.is_integer():
        return None if re.fullmatch(_FLOAT, value, _FLAGS) else "is not a number (plain digits, '.', exponent, nan or inf)"
    if not re.fullmatch(_INTEGER, value, _FLAGS):
        return "is not a whole number (plain digits with an optional sign)"
    if dtype == pl.Int64 and not _INT64[0] <= int(value) <= _INT64[1]:
        return "is beyond the 64-bit integer range"
    return None


def _readable_line(n_fields: int, positions: dict[str, int], schema, nullable) -> re.Pattern:
    """A pattern that only lines ``_line_problem`` accepts match: a quick first pass over a large
    file. It is stricter (quoted fields and 19-digit integers do not match): the lines it leaves
    get the exact check."""
    name_at = {position: name for name, position in positions.items()}

    def field(position: int) -> str:
        name = name_at.get(position)
        if name is None:
            return _ANY_FIELD
        dtype = schema[name]
        value = _SHORT_INTEGER if dtype.is_integer() else _FLOAT if dtype.is_float() else _TEXT_FIELD
        return f"(?:{value}|{_BLANK})" if name in nullable else f"(?:{value})"

    not_blank = r"(?=.*\S)"
    return re.compile(not_blank + ",".join(field(position) for position in range(n_fields)), _FLAGS)
