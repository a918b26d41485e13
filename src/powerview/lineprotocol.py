"""InfluxDB line protocol for row batches, without formatting a single float.

Each series gets its line prefix (`electrical,<sorted tags> <field>=`) once per
file; a batch is then one list of [prefix, value, " <time>\n"] triples filled by
two slice assignments and joined once, the values being the file's own decimal
text. Hand-written rather than influxdb-client's Point, which formats every
value through Python objects: measured in bench/bench_parse.py, Point is
orders of magnitude slower than this.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from itertools import chain, repeat

from powerview.exceptions import FormatError
from powerview.formats import RowBatch
from powerview.schema import MEASUREMENT, Series

# InfluxDB 2.8's parser (models/points.go, checked against the real server in
# tests/integration/test_lineprotocol_roundtrip.py) reads a backslash two ways:
# in the tag section a delimiter (`,` `=` space) is escaped when the byte before
# it is a backslash, while the line and field scanners let a backslash skip the
# next byte, whatever it is; unescaping then turns only `\,` `\=` `\ ` back.
# So delimiters get a backslash, other backslashes are written as they are, and
# a name both readings cannot agree on is refused (see `unrepresentable`).
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
# In a string field value, `\"` and `\\` are the escapes (line protocol reference).
_FIELD_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\"})
_BACKSLASH_DELIMITER = re.compile(r'\\[ ,="]')


def unrepresentable(text: str) -> str | None:
    """Why `text` cannot be a measurement, tag key, tag value or field key, or None.

    Line protocol has no escape for a line break; a backslash before a space,
    comma, equals sign or double quote (field keys unescape `\\"`), or at the
    very end, is read differently by InfluxDB's scanners (HTTP 400, or another
    name stored). Such a name is refused rather
    than altered, since an altered name could merge with another one.
    """
    if "\n" in text or "\r" in text:
        return "contains a line break"
    if text.endswith("\\"):
        return "ends with a backslash"
    if _BACKSLASH_DELIMITER.search(text):
        return "has a backslash before a space, comma, equals sign or double quote"
    return None


def _checked(text: str) -> str:
    reason = unrepresentable(text)
    if reason:
        raise FormatError(f"{text!r} {reason}, which InfluxDB line protocol cannot carry")
    return text


def escape_measurement(text: str) -> str:
    """Escape a measurement name exactly; FormatError if it cannot be written."""
    return _checked(text).translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key exactly; FormatError if it cannot be written."""
    return _checked(text).translate(_KEY_ESCAPES)


def loose_key(text: str) -> str:
    """`escape_key` for PowerView's own records (run summaries): never refuses.

    A file name must not stop its summary from being written, so line breaks
    become spaces and, if still needed, backslashes slashes: readable, not exact.
    """
    text = text.replace("\n", " ").replace("\r", " ")
    if unrepresentable(text):
        text = text.replace("\\", "/")
    return text.translate(_KEY_ESCAPES)


def string_field(text: str) -> str:
    """A string field value; line breaks become spaces (one record, one line)."""
    text = text.replace("\n", " ").replace("\r", " ")
    return '"' + text.translate(_FIELD_STRING_ESCAPES) + '"'


def series_prefix(series: Series, measurement: str = MEASUREMENT) -> str:
    """`measurement,tag=value,... field=` with tags sorted, as InfluxDB prefers.

    A label InfluxDB cannot store exactly is a FormatError naming the tag: the
    file goes to `error/` with that reason rather than with an HTTP 400.
    """
    try:
        return _series_prefix(series, measurement)
    except FormatError as exc:
        raise FormatError(f"column {series.column.index} ({series.channel_id}): {exc}") from None


def _series_prefix(series: Series, measurement: str) -> str:
    return _prefix(measurement, tuple(sorted(series.tags.items())), series.field)


# A daily file of 145 rows spends more CPU escaping its 30 series' tags than
# encoding its values (measured in bench/bench_client.py): the prefixes of the
# series a worker meets file after file are kept, a bounded number of them.
@functools.lru_cache(maxsize=16384)
def _prefix(measurement: str, tags: tuple[tuple[str, str], ...], field: str) -> str:
    pairs = ",".join(f"{escape_key(key)}={escape_key(value)}" for key, value in tags if value != "")
    return f"{escape_measurement(measurement)},{pairs} {escape_key(field)}="


class BatchEncoder:
    """Encodes the row batches of one file; `points` counts the lines produced."""

    def __init__(self, series: Sequence[Series]) -> None:
        self._prefixes = [series_prefix(s) for s in series]
        self._width = len(self._prefixes)
        self._buffers: dict[int, list[str]] = {}
        self.points = 0

    def _buffer(self, rows: int) -> list[str]:
        """[prefix, value, suffix] x width x rows, prefixes filled in once per size."""
        buffer = self._buffers.get(rows)
        if buffer is None:
            buffer = [""] * (3 * self._width * rows)
            buffer[0::3] = self._prefixes * rows
            self._buffers = {rows: buffer}  # keep one size: batches are mostly full
        return buffer

    def encode(self, batch: RowBatch) -> str:
        """The batch as line protocol, one line per (row, valid value)."""
        width = self._width
        if batch.width != width:
            raise ValueError(f"batch of width {batch.width} for {width} series")
        suffixes = [f" {epoch}\n" for epoch in batch.epochs]
        if batch.clean:
            # Fill the value and suffix slots with two slice assignments, join once.
            buffer = self._buffer(len(suffixes))
            buffer[1::3] = batch.values  # type: ignore[assignment]
            buffer[2::3] = list(chain.from_iterable([repeat(s, width) for s in suffixes]))
            self.points += len(batch.values)
            return "".join(buffer)
        prefixes = self._prefixes
        values = batch.values
        lines = [
            prefixes[j] + value + suffixes[i // width]
            for i, value in enumerate(values)
            if value is not None
            for j in (i % width,)
        ]
        self.points += len(lines)
        return "".join(lines)
