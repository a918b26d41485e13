"""InfluxDB's write endpoint (`POST /api/v2/write`) over the standard library.

The bulk of PowerView's traffic is one kind of request: a line-protocol body
to `/api/v2/write`, answered 204. Those go through `http.client` here rather
than through influxdb-client, because the CPU a request costs the client is
taken from an InfluxDB that shares the machine's cores: measured with
bench/bench_client.py, the writer thread spends 0.75 ms of CPU per 4,350-line
request here against 1.65 ms through influxdb-client, whose `urllib3` is in
this environment urllib3-future's pure-Python h11 backend (grafana-client
pulls it in through niquests, and it shadows urllib3); see bench/README.md,
"Writes over http.client". Everything else (buckets, queries, tokens, tasks)
stays on influxdb-client.

The retry policy is the one `influx.make_client` gives influxdb-client:
429 and 5xx answers and connection failures are retried `retries` times with
exponential backoff (0.5 s doubling, at most 10 s), waiting as long as a
Retry-After header asks; a kept-alive connection the server closed in the
meantime is reopened at once. What an answer means for the file is
`error_for_status`, shared with influx.py's error mapping.
"""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from powerview.exceptions import (
    InfluxRejectedError,
    InfluxRequestError,
    InfluxUnavailableError,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_S = 0.5
BACKOFF_MAX_S = 10.0
RETRY_AFTER_MAX_S = 60.0  # a server asking for longer gets the next run instead


def error_for_status(
    status: int, detail: str, action: str
) -> InfluxRejectedError | InfluxRequestError | InfluxUnavailableError:
    """What InfluxDB answering `status` to `action` means for PowerView.

    400, 413, 422: the data itself was refused (the file goes to error/);
    401, 403 and other 4xx: our token, org or bucket is wrong (the file waits
    until the deployment is fixed); anything else: an outage (retry later).
    """
    if status in (400, 413, 422):
        return InfluxRejectedError(f"InfluxDB refused {action}: {status} {detail}")
    if status in (401, 403):
        return InfluxRequestError(
            f"InfluxDB refused the token while {action}: {status} {detail} "
            "(check INFLUXDB_ADMIN_TOKEN)"
        )
    if 400 <= status < 500 and status != 429:
        return InfluxRequestError(f"InfluxDB refused {action}: {status} {detail}")
    return InfluxUnavailableError(f"{action}: InfluxDB answered {status} {detail}")


def failure_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its reason, cause and context, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        todo += [reason if isinstance(reason, BaseException) else None]
        todo += [current.__cause__, current.__context__]


def failure_reason(exc: BaseException) -> str | None:
    """Why a connection failed, in words ("connection refused", "timed out"), if known."""
    links = list(failure_chain(exc))
    # The socket's own error first: urllib3's NewConnectionError is also a timeout class.
    for link in links:
        if isinstance(link, OSError) and link.strerror:
            return link.strerror[0].lower() + link.strerror[1:]
    if any(isinstance(link, TimeoutError) for link in links):
        return "timed out"
    return None


@dataclass(frozen=True)
class WriteEndpoint:
    """Where and how to POST writes: the server's URL, token and patience."""

    url: str
    token: str
    timeout_s: float = 30.0
    retries: int = 4
    verify_tls: bool = True
    ca_file: str | None = None

    @classmethod
    def of_client(cls, client: Any) -> WriteEndpoint:
        """The endpoint of an `influxdb_client.InfluxDBClient` (`influx.make_client`)."""
        config = client.api_client.configuration
        retries = getattr(client.retries, "total", client.retries)
        return cls(
            url=str(client.url),
            token=str(client.token),
            timeout_s=(config.timeout or 30_000) / 1000,
            retries=retries if isinstance(retries, int) else 0,
            verify_tls=bool(config.verify_ssl),
            ca_file=config.ssl_ca_cert,
        )

    @property
    def base(self) -> str:
        """scheme://host[:port], as error messages name the server."""
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class WriteConnection:
    """One kept-alive connection to the write endpoint; not shared between threads."""

    def __init__(self, endpoint: WriteEndpoint, org: str) -> None:
        self._endpoint = endpoint
        parts = urllib.parse.urlsplit(endpoint.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {endpoint.url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/api/v2/write"
        self._org = org
        self._connection: http.client.HTTPConnection | None = None
        self._context: ssl.SSLContext | None = None

    def post(self, bucket: str, body: bytes, *, gzip: bool, precision: str = "s") -> None:
        """POST `body` to `bucket`; returns once InfluxDB acknowledged it (204).

        Raises `error_for_status`'s error for a final refusal, and
        InfluxUnavailableError once the retries are spent.
        """
        action = f"writing to bucket {bucket!r}"
        query = urllib.parse.urlencode({"org": self._org, "bucket": bucket, "precision": precision})
        target = f"{self._path}?{query}"
        headers = {
            "Authorization": f"Token {self._endpoint.token}",
            "Content-Type": "text/plain; charset=utf-8",
            "Accept": "application/json",
        }
        if gzip:
            headers["Content-Encoding"] = "gzip"
        attempt = 0
        while True:
            reused = self._connection is not None
            try:
                status, answer, retry_after = self._exchange(target, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and isinstance(exc, _STALE):
                    continue  # closed by the server while idle: reopen, not a retry
                if attempt >= self._endpoint.retries:
                    reason = failure_reason(exc) or str(exc) or type(exc).__name__
                    raise InfluxUnavailableError(
                        f"InfluxDB at {self._endpoint.base} unreachable: {reason} ({action})"
                    ) from exc
                retry_after = None
            else:
                if 200 <= status < 300:
                    return
                error = error_for_status(status, _detail(answer), action)
                if status not in RETRY_STATUSES or attempt >= self._endpoint.retries:
                    raise error
            attempt += 1
            time.sleep(_backoff(attempt, retry_after))

    def _exchange(
        self, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, str | None]:
        connection = self._connection or self._open()
        connection.request("POST", target, body, headers)
        response = connection.getresponse()
        answer = response.read()
        if response.will_close:
            self.close()
        return response.status, answer, response.getheader("Retry-After")

    def _open(self) -> http.client.HTTPConnection:
        timeout = self._endpoint.timeout_s
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._tls()
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        connection.connect()
        # Bodies and answers are sent whole: no Nagle delay on the last segment.
        if connection.sock is not None:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connection = connection
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context(cafile=self._endpoint.ca_file)
            if not self._endpoint.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# What a kept-alive connection closed by the server looks like on its next request.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def _detail(answer: bytes) -> str:
    return answer.decode(errors="replace").strip()[:500]


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before retry `attempt` (1, 2, ...): Retry-After if given, else doubling."""
    wait: float = min(BACKOFF_MAX_S, BACKOFF_S * 2.0 ** (attempt - 1))
    if retry_after:
        asked = _retry_after_s(retry_after)
        if asked is not None:
            wait = max(wait, min(asked, RETRY_AFTER_MAX_S))
    return wait


def _retry_after_s(value: str) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - time.time())
