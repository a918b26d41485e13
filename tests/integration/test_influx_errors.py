"""What InfluxDB's failures become at the adapter's boundary, against the real server.

Each kind of failure gets the exception whose name says what failed (see
exceptions.py) and a message a person can read (no object reprs). Writes go
over http.client (influx_write.py): a socket's error is kept as the cause for
`--traceback`, and a refusal quotes InfluxDB's own message. Other requests go
through influxdb-client, whose error is kept as the cause.
"""

from __future__ import annotations

import pytest
from influxdb_client.rest import ApiException

from powerview import stack
from powerview.exceptions import (
    FormatError,
    InfluxRejectedError,
    InfluxRequestError,
    InfluxUnavailableError,
    InfrastructureError,
)
from powerview.influx import InfluxTarget, make_client
from tests.conftest import InfluxInstance


def target(url: str, token: str, org: str) -> InfluxTarget:
    return InfluxTarget(make_client(url, token, org, 5, retries=0), org, gzip_level=0)


def test_an_unreachable_server_reads_like_a_sentence(influxdb: InfluxInstance) -> None:
    port = stack.free_port()  # nothing listens there
    down = target(f"http://127.0.0.1:{port}", influxdb.token, influxdb.org)
    try:
        with pytest.raises(InfluxUnavailableError) as caught:
            down.write_now(influxdb.meta_bucket, "m f=1 1\n")
    finally:
        down.close()

    assert str(caught.value) == (
        f"InfluxDB at http://127.0.0.1:{port} unreachable: connection refused "
        f"(writing to bucket {influxdb.meta_bucket!r})"
    )
    assert isinstance(caught.value, InfrastructureError)  # retry later
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_a_refused_token_is_a_request_error_not_an_outage_nor_bad_data(
    influxdb: InfluxInstance,
) -> None:
    wrong = target(influxdb.url, "not-the-token", influxdb.org)
    try:
        with pytest.raises(InfluxRequestError) as caught:
            wrong.write_now(influxdb.meta_bucket, "m f=1 1\n")
    finally:
        wrong.close()

    message = str(caught.value)
    assert message.startswith("InfluxDB refused the token while writing to bucket")
    assert "401" in message
    assert "unauthorized access" in message  # InfluxDB's own words
    assert "INFLUXDB_ADMIN_TOKEN" in message
    assert not isinstance(caught.value, InfrastructureError | FormatError)


def test_a_refused_token_on_a_query_keeps_the_clients_error(influxdb: InfluxInstance) -> None:
    wrong = target(influxdb.url, "not-the-token", influxdb.org)
    try:
        with pytest.raises(InfluxRequestError) as caught:
            wrong.ensure_bucket("any_bucket")
    finally:
        wrong.close()

    assert str(caught.value).startswith("InfluxDB refused the token while ensuring bucket")
    assert isinstance(caught.value.__cause__, ApiException)


def test_a_missing_bucket_is_a_request_error(influxdb: InfluxInstance) -> None:
    live = target(influxdb.url, influxdb.token, influxdb.org)
    try:
        with pytest.raises(InfluxRequestError, match="404"):
            live.write_now("no_such_bucket_7f3a", "m f=1 1\n")
    finally:
        live.close()


def test_a_bad_line_is_rejected_data(influxdb: InfluxInstance) -> None:
    live = target(influxdb.url, influxdb.token, influxdb.org)
    try:
        with pytest.raises(InfluxRejectedError, match="400") as caught:
            live.write_now(influxdb.meta_bucket, "m f=\n")
    finally:
        live.close()

    assert isinstance(caught.value, FormatError)  # the file goes to error/
    assert "missing field value" in str(caught.value)
