"""Helpers for the operations tests: a webhook receiver (a real local HTTP server),
`powerview health` run in this process with exactly the settings a test gives,
and meta-bucket points written the way ingestion writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from powerview import cli
from powerview import settings as config

ALL_VARIABLES = {
    name.upper() for field in config.Settings.model_fields for name in config.variable_names(field)
} | {"POWERVIEW_ENV_FILE"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server that records every request and answers `status`."""

    server: ThreadingHTTPServer
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"ok"

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            box = holder["receiver"]
            box.requests.append(Request(self.command, self.path, dict(self.headers), body))
            self.send_response(box.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(box.answer)))
            self.end_headers()
            self.wfile.write(box.answer)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["receiver"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """An URL nothing listens on (a port the kernel just had free)."""
    from powerview.stack import free_port

    return f"http://127.0.0.1:{free_port()}"


def set_env(monkeypatch: pytest.MonkeyPatch, cwd: Path, **values: str) -> None:
    """Exactly these settings: nothing from the real environment or a `.env` leaks in."""
    for name in list(os.environ):
        if name.upper() in ALL_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(cwd)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str

    @property
    def first_line(self) -> str:
        return self.out.splitlines()[0] if self.out else ""

    def json(self) -> Any:
        return json.loads(self.out)

    def check(self, name: str) -> dict[str, Any]:
        return next(c for c in self.json()["checks"] if c["name"] == name)


def powerview(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """`powerview ARGS...` in this process: its exit status and what it printed."""
    capsys.readouterr()
    status = cli.run(list(argv))
    captured = capsys.readouterr()
    return Result(int(status), captured.out, captured.err)


def file_point(
    when_s: float,
    status: str,
    company: str,
    campaign: str,
    device: str,
    file_name: str,
    error: str = "",
    points: int = 100,
) -> str:
    """A `tsv_parser_file` point as ARCHITECTURE.md section 5 describes it (ns precision)."""
    reason = error.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f"tsv_parser_file,bucket={company},campaign={campaign},device_master_sn={device},"
        f"file_name={file_name},status={status} nb_rows=10i,nb_channels=10i,"
        f'nb_points={points}i,nb_invalid_timestamps=0i,nb_invalid_values=0i,error="{reason}" '
        f"{int(when_s * 1e9)}"
    )


def write_lines(client: InfluxDBClient, bucket: str, lines: list[str]) -> None:
    with client.write_api(write_options=SYNCHRONOUS) as api:
        api.write(bucket=bucket, record="\n".join(lines), write_precision="ns")
