"""Line protocol against the real InfluxDB: what is written is what is read back.

InfluxDB's parser is the ground truth for escaping (see lineprotocol.py). Any
Unicode label, unit, serial or campaign goes through `schema.series_for` and
the encoder into a real bucket, and the tags and field key read back must be
exactly the ones written; a name the protocol cannot carry (a line break, a
final backslash) must be refused with a FormatError naming it, never sent.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from powerview.exceptions import FormatError
from powerview.formats import Column, Header, RowBatch
from powerview.lineprotocol import BatchEncoder, unrepresentable
from powerview.schema import MEASUREMENT, series_for

_STAMPS = itertools.count(1_000_000)
_TRICKY = st.sampled_from(
    ["\\", " ", ",", "=", '"', "\\ ", "\\,", "\\=", "\\\\", "é", "\x00", "\t"]
)
# Arbitrary Unicode, with the delimiters and backslashes drawn often.
_TEXT = st.lists(st.one_of(st.text(min_size=1, max_size=4), _TRICKY), max_size=6).map("".join)


def _header(name: str, unit: str, slave_sn: str, slave_name: str) -> Header:
    columns = (Column(1, "02001171", name, unit), Column(2, slave_sn, slave_name, unit))
    return Header("MV_T302_V002", "plain", "02001171", "mono", columns)


def _read_back(client: InfluxDBClient, bucket: str, stamp: int) -> dict[str, dict[str, str]]:
    """{field key: tags} of the points at `stamp` (seconds)."""
    flux = (
        f'from(bucket: "{bucket}") |> range(start: {stamp}, stop: {stamp + 1})'
        f' |> filter(fn: (r) => r._measurement == "{MEASUREMENT}")'
    )
    found: dict[str, dict[str, str]] = {}
    for table in client.query_api().query(flux):
        for record in table.records:
            tags = {
                key: value
                for key, value in record.values.items()
                if not key.startswith("_") and key not in ("result", "table")
            }
            found[record.get_field()] = tags
    return found


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_TEXT, unit=_TEXT, slave_sn=_TEXT, slave_name=_TEXT, campaign=_TEXT)
def test_any_label_reads_back_exactly_or_is_refused(
    influx_client: InfluxDBClient,
    bucket: str,
    name: str,
    unit: str,
    slave_sn: str,
    slave_name: str,
    campaign: str,
) -> None:
    assume(slave_sn != "02001171" and slave_sn != "")
    series = series_for(_header(name, unit, slave_sn, slave_name), campaign)
    texts = [t for s in series for t in (s.field, *s.tags.values())]
    refused = [t for t in texts if unrepresentable(t)]
    if refused:
        with pytest.raises(FormatError) as caught:
            BatchEncoder(series)
        assert any(repr(text) in str(caught.value) for text in refused)
        return
    stamp = next(_STAMPS)
    lines = BatchEncoder(series).encode(
        RowBatch(epochs=[stamp], values=["1.5", "2.5"], width=2, clean=True)
    )
    influx_client.write_api(write_options=SYNCHRONOUS).write(
        bucket=bucket, record=lines, write_precision="s"
    )
    expected = {s.field: {k: v for k, v in s.tags.items() if v != ""} for s in series}
    assert _read_back(influx_client, bucket, stamp) == expected
