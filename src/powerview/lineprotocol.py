"""InfluxDB line protocol for row batches, without formatting a single float.

Each series gets its line prefix (`electrical,<sorted tags> <field>=`) once per
file; a batch is then one list of [prefix, value, " <time>\n"] triples filled by
two slice assignments and joined once, the values being the file's own decimal
text. Hand-written rather than influxdb-client's Point, which formats every
value through Python objects: measured in bench/bench_parse.py, Point is
orders of magnitude slower than this.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat

from powerview.formats import RowBatch
from powerview.schema import MEASUREMENT, Series

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_FIELD_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\"})


def escape_measurement(text: str) -> str:
    return _clean(text).translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return _clean(text).translate(_KEY_ESCAPES)


def string_field(text: str) -> str:
    return '"' + _clean(text).translate(_FIELD_STRING_ESCAPES) + '"'


def _clean(text: str) -> str:
    # Line protocol has no escape for line breaks; they would split the line.
    return text.replace("\n", " ").replace("\r", " ")


def series_prefix(series: Series, measurement: str = MEASUREMENT) -> str:
    """`measurement,tag=value,... field=` with tags sorted, as InfluxDB prefers."""
    tags = ",".join(
        f"{escape_key(key)}={escape_key(value)}"
        for key, value in sorted(series.tags.items())
        if value != ""
    )
    return f"{escape_measurement(measurement)},{tags} {escape_key(series.field)}="


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
