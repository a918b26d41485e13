"""The query seam of the campaign report: Flux in, plain rows out.

`FluxSource` is what `figures` needs from InfluxDB; `InfluxFlux` is the real one.
Rows are read from InfluxDB's CSV without annotations and without the client's
FluxRecord objects (several times faster on the hundreds of thousands of hourly
rows of a large campaign). Every name and value goes in as a Flux parameter,
never spliced into the query text.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from collections.abc import Iterator, Mapping
from typing import Protocol

from influxdb_client import Dialect, InfluxDBClient

from powerview.influx import map_influx_errors

Params = Mapping[str, object]

_DIALECT = Dialect(header=True, annotations=[], delimiter=",", comment_prefix="#")


class FluxSource(Protocol):
    """Runs one Flux query; yields each result row as {column: text}."""

    def rows(self, flux: str, params: Params) -> Iterator[dict[str, str]]: ...

    def bucket_exists(self, name: str) -> bool: ...


class InfluxFlux:
    """The FluxSource of a real InfluxDB, through an influxdb-client connection."""

    def __init__(self, client: InfluxDBClient) -> None:
        self._client = client

    def rows(self, flux: str, params: Params) -> Iterator[dict[str, str]]:
        with map_influx_errors("running a campaign report query"):
            response = self._client.query_api().query_raw(
                flux, dialect=_DIALECT, params=dict(params)
            )
            try:
                # Streamed: a large campaign's hourly rows are never all in memory at once.
                text = io.TextIOWrapper(response, encoding="utf-8", newline="")
                header: list[str] | None = None
                for line in csv.reader(text):
                    if not line or not any(line):
                        header = None  # a blank line ends a table; the next one has its header
                    elif header is None or (len(line) > 1 and line[1] == "result"):
                        header = line
                    else:
                        yield dict(zip(header, line, strict=False))
            finally:
                response.release_conn()

    def bucket_exists(self, name: str) -> bool:
        with map_influx_errors(f"looking up bucket {name!r}"):
            return self._client.buckets_api().find_bucket_by_name(name) is not None


@functools.lru_cache(maxsize=65_536)
def parse_time(text: str) -> dt.datetime:
    """InfluxDB's RFC 3339 times (nanoseconds, `Z`) as aware UTC datetimes.

    Cached: the hourly rows of every channel repeat the same few thousand times.
    """
    stamp = text.rstrip("Z")
    if "." in stamp:
        whole, fraction = stamp.split(".", 1)
        stamp = f"{whole}.{fraction[:6]}"
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC)
