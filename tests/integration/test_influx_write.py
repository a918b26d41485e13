"""The write endpoint over http.client (influx_write.py): its retry policy, against
the real InfluxDB behind a loopback proxy that misbehaves on cue.

The proxy answers the requests it is told to (a 503 with Retry-After, a 429,
a 400, a connection closed after its answer) and forwards every other one to
the real server, so what lands is checked in the real InfluxDB.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from influxdb_client import InfluxDBClient

from powerview.exceptions import (
    InfluxRejectedError,
    InfluxRequestError,
    InfluxUnavailableError,
)
from powerview.influx import InfluxTarget, make_client
from tests.conftest import InfluxInstance


@dataclass
class Cue:
    """What the proxy does with one request: forward it, or answer `status` itself."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    close_after: bool = False  # close the kept-alive connection after answering


class Proxy(http.server.ThreadingHTTPServer):
    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urllib.parse.urlsplit(upstream)
        self.cues: list[Cue] = []
        self.seen: list[tuple[float, str]] = []  # (time, path) of every request
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as InfluxDB
    server: Proxy

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((time.monotonic(), self.path))
        cue = self.server.cues.pop(0) if self.server.cues else Cue()
        if cue.status is None:
            status, answer, kept = self._forward(body)
        else:
            status, answer, kept = cue.status, b'{"code":"cued","message":"cued"}', {}
        self.send_response(status)
        for name, value in {**kept, **cue.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.wfile.flush()
        if cue.close_after:
            self.close_connection = True  # without saying so: a stale keep-alive

    def _forward(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        upstream = self.server.upstream
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        try:
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("authorization", "content-type", "content-encoding")
            }
            connection.request("POST", self.path, body, headers)
            reply = connection.getresponse()
            return reply.status, reply.read(), {}
        finally:
            connection.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy(influxdb: InfluxInstance) -> Iterator[Proxy]:
    server = Proxy(influxdb.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def writer(proxy: Proxy, influxdb: InfluxInstance, retries: int) -> InfluxTarget:
    client = make_client(proxy.url, influxdb.token, influxdb.org, 10, retries)
    return InfluxTarget(client, influxdb.org, gzip_level=1)


def stored(client: InfluxDBClient, bucket: str) -> dict[int, float]:
    tables = client.query_api().query("from(bucket: b) |> range(start: 0)", params={"b": bucket})
    return {int(r.get_time().timestamp()): r.get_value() for t in tables for r in t.records}


def test_a_503_with_retry_after_is_waited_for_then_the_write_lands(
    proxy: Proxy, influxdb: InfluxInstance, influx_client: InfluxDBClient, bucket: str
) -> None:
    proxy.cues = [Cue(503, {"Retry-After": "1"})]
    target = writer(proxy, influxdb, retries=2)
    try:
        target.write_now(bucket, "m,t=a f=1.5 100\n")
    finally:
        target.close()
    assert len(proxy.seen) == 2
    assert proxy.seen[1][0] - proxy.seen[0][0] >= 1.0  # Retry-After, not the 0.5 s backoff
    assert stored(influx_client, bucket) == {100: 1.5}


@pytest.mark.parametrize(
    ("status", "retries", "error", "tries"),
    [
        (429, 2, InfluxUnavailableError, 3),  # an outage once the two retries are spent
        (503, 1, InfluxUnavailableError, 2),
        (400, 4, InfluxRejectedError, 1),  # refused data: never retried
        (401, 4, InfluxRequestError, 1),  # our token: a retry will not fix it
    ],
)
def test_what_a_refusal_becomes_and_how_often_it_is_tried(
    proxy: Proxy,
    influxdb: InfluxInstance,
    status: int,
    retries: int,
    error: type[Exception],
    tries: int,
) -> None:
    proxy.cues = [Cue(status)] * tries
    target = writer(proxy, influxdb, retries=retries)
    try:
        with pytest.raises(error, match=str(status)):
            target.write_now(influxdb.meta_bucket, "m f=1 1\n")
    finally:
        target.close()
    assert len(proxy.seen) == tries


def test_a_kept_alive_connection_closed_by_the_server_is_reopened_without_a_retry(
    proxy: Proxy, influxdb: InfluxInstance, influx_client: InfluxDBClient, bucket: str
) -> None:
    """No retries allowed: the second write still lands, on a new connection."""
    proxy.cues = [Cue(close_after=True)]
    target = writer(proxy, influxdb, retries=0)
    try:
        target.write_now(bucket, "m,t=a f=1 100\n")
        target.write_now(bucket, "m,t=a f=2 200\n")
    finally:
        target.close()
    assert len(proxy.seen) == 2
    assert proxy.connections == 2
    assert stored(influx_client, bucket) == {100: 1.0, 200: 2.0}


def test_writes_reuse_one_connection_per_writer(
    proxy: Proxy, influxdb: InfluxInstance, influx_client: InfluxDBClient, bucket: str
) -> None:
    target = writer(proxy, influxdb, retries=0)
    try:
        for n in range(5):
            target.write(bucket, f"m,t=a f={n} {100 + n}\n")
        target.file_done().result(timeout=30)
    finally:
        target.close()
    assert len(proxy.seen) == 5
    assert proxy.connections == 1
    assert stored(influx_client, bucket) == {100 + n: float(n) for n in range(5)}
