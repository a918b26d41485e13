"""`powerview stack up | down | status` against the real influxd, each test in its own folder."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from powerview import cli, stack
from powerview import settings as config
from tests.conftest import InfluxInstance

ALL_VARIABLES = {
    name.upper() for field in config.Settings.model_fields for name in config.variable_names(field)
} | {"POWERVIEW_ENV_FILE"}

WHEN = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


@dataclass(frozen=True)
class LocalStack:
    """One test's stack: its state folder and port, and `powerview ...` run against it."""

    state_dir: Path
    port: int
    run: Callable[..., Result]

    @property
    def data_dir(self) -> Path:
        return stack.stack_data_dir(self.state_dir).resolve()

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "influxd.pid"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "stack.env"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def credentials(self) -> dict[str, str | None]:
        return dotenv_values(self.env_file)

    def client(self, token: str | None = None) -> InfluxDBClient:
        values = self.credentials()
        return InfluxDBClient(
            url=str(values["INFLUXDB_URL"]),
            token=token or str(values["INFLUXDB_ADMIN_TOKEN"]),
            org=str(values["INFLUXDB_ORG"]),
            timeout=10_000,
        )


def influxd_pids(data_dir: Path) -> list[int]:
    """Live influxd processes serving `data_dir` (found in /proc, not by name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"influxd") and str(data_dir).encode() in b" ".join(argv):
            found.append(int(entry.name))
    return found


@pytest.fixture
def local_stack(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    influxd_binary: Path,
) -> Iterator[LocalStack]:
    for name in list(os.environ):
        if name.upper() in ALL_VARIABLES:
            monkeypatch.delenv(name)
    state_dir = tmp_path / "state"
    port = stack.free_port()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POWERVIEW_STATE_DIR", str(state_dir))
    monkeypatch.setenv("POWERVIEW_INFLUXD_PORT", str(port))
    monkeypatch.setenv("POWERVIEW_INFLUXD", str(influxd_binary))

    def run(*argv: str) -> Result:
        capsys.readouterr()
        status = cli.run(list(argv))
        captured = capsys.readouterr()
        return Result(int(status), captured.out, captured.err)

    local = LocalStack(state_dir, port, run)
    try:
        yield local
    finally:
        stack.stack_down(state_dir, port)
        leftovers = influxd_pids(local.data_dir)
        for pid in leftovers:  # a server the code under test lost track of
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"influxd left running for {local.data_dir}: {leftovers}"


@pytest.fixture
def unrelated_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def write_point(client: InfluxDBClient, bucket: str, value: float) -> None:
    point = Point("stack_test").tag("device", "d1").field("v", value).time(WHEN, WritePrecision.S)
    client.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=point)


def read_values(client: InfluxDBClient, bucket: str) -> list[object]:
    flux = (
        f'from(bucket: "{bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._measurement == "stack_test")'
    )
    return [record.get_value() for table in client.query_api().query(flux) for record in table]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# -- up ------------------------------------------------------------------------------


def test_first_up_onboards_and_serves_writes_and_queries(local_stack: LocalStack) -> None:
    result = local_stack.run("stack", "up")

    assert result.status == 0, result.err
    assert f"InfluxDB started at {local_stack.url}" in result.out
    assert "healthy" in result.out
    assert "onboarded: org 'powerview', bucket 'powerview_meta'" in result.out
    pid = local_stack.pid()
    assert f"(pid {pid})" in result.out
    assert influxd_pids(local_stack.data_dir) == [pid]

    mode = stat.S_IMODE(local_stack.env_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    values = local_stack.credentials()
    assert values["INFLUXDB_URL"] == local_stack.url
    assert values["INFLUXDB_ORG"] == "powerview"
    token = values["INFLUXDB_ADMIN_TOKEN"]
    assert token
    assert len(token) >= 32
    assert token not in result.out + result.err

    with local_stack.client() as client:
        write_point(client, "powerview_meta", 42.5)
        assert read_values(client, "powerview_meta") == [42.5]
    with (
        local_stack.client(token="not-the-token") as intruder,
        pytest.raises(ApiException) as refused,
    ):
        read_values(intruder, "powerview_meta")
    assert refused.value.status == 401

    # Every later command finds the stack's settings without being told.
    resolved = config.resolve()
    assert resolved.settings.influxdb_url == local_stack.url
    assert resolved.settings.influxdb_admin_token is not None
    assert resolved.settings.influxdb_admin_token.get_secret_value() == token
    assert resolved.origins["influxdb_admin_token"] == (
        f"stack env file {local_stack.env_file} (INFLUXDB_ADMIN_TOKEN)"
    )


def test_second_up_is_a_no_op(local_stack: LocalStack) -> None:
    assert local_stack.run("stack", "up").status == 0
    pid = local_stack.pid()
    env_before = local_stack.env_file.read_bytes()
    env_mtime = local_stack.env_file.stat().st_mtime_ns

    result = local_stack.run("stack", "up")

    assert result.status == 0, result.err
    assert f"InfluxDB already running at {local_stack.url} (pid {pid}), healthy" in result.out
    assert "onboarded" not in result.out
    assert local_stack.pid() == pid
    assert influxd_pids(local_stack.data_dir) == [pid]
    assert local_stack.env_file.read_bytes() == env_before
    assert local_stack.env_file.stat().st_mtime_ns == env_mtime


def test_up_down_up_keeps_the_data_and_the_token(local_stack: LocalStack) -> None:
    assert local_stack.run("stack", "up").status == 0
    first_pid = local_stack.pid()
    env_before = local_stack.env_file.read_bytes()
    with local_stack.client() as client:
        write_point(client, "powerview_meta", 7.25)
        assert read_values(client, "powerview_meta") == [7.25]

    down = local_stack.run("stack", "down")

    assert down.status == 0, down.err
    assert "InfluxDB stopped; data kept" in down.out
    assert not local_stack.pid_file.exists()
    assert influxd_pids(local_stack.data_dir) == []

    # Straight back up on the same port: the stopped server's TIME_WAIT
    # connections must not make the port look taken.
    up = local_stack.run("stack", "up")

    assert up.status == 0, up.err
    assert "InfluxDB started" in up.out
    assert "onboarded" not in up.out
    assert local_stack.pid() != first_pid
    assert local_stack.env_file.read_bytes() == env_before
    with local_stack.client() as client:
        assert read_values(client, "powerview_meta") == [7.25]


def test_state_dir_option_overrides_the_environment(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    other = tmp_path / "other-state"
    try:
        result = local_stack.run("stack", "up", "--state-dir", str(other))

        assert result.status == 0, result.err
        assert (other / "stack.env").is_file()
        assert (other / "influxdb" / "influxd.pid").is_file()
        assert not local_stack.state_dir.exists()
        status = local_stack.run("stack", "status", "--state-dir", str(other))
        assert f"InfluxDB running at {local_stack.url}" in status.out
    finally:
        down = local_stack.run("stack", "down", "--state-dir", str(other))
    assert "InfluxDB stopped" in down.out
    assert influxd_pids(stack.stack_data_dir(other).resolve()) == []


# -- down and status -----------------------------------------------------------------


def test_down_when_not_running_says_so(local_stack: LocalStack) -> None:
    result = local_stack.run("stack", "down")

    assert result.status == 0, result.err
    assert result.out.strip() == "InfluxDB was not running"


def test_status_reports_running_and_not_running(local_stack: LocalStack) -> None:
    before = local_stack.run("stack", "status")

    assert before.status == 0, before.err
    assert "InfluxDB is not running" in before.out

    assert local_stack.run("stack", "up").status == 0
    running = local_stack.run("stack", "status")

    assert running.status == 0, running.err
    assert (
        f"InfluxDB running at {local_stack.url} (pid {local_stack.pid()}), healthy" in running.out
    )
    assert str(local_stack.env_file) in running.out

    assert local_stack.run("stack", "down").status == 0
    after = local_stack.run("stack", "status")

    assert after.status == 0
    assert "InfluxDB is not running" in after.out


# -- a taken port --------------------------------------------------------------------


@pytest.mark.parametrize("reuse_address", [False, True], ids=["plain", "so_reuseaddr"])
def test_a_taken_port_is_status_2_naming_the_port(
    local_stack: LocalStack, reuse_address: bool
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        if reuse_address:
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", local_stack.port))
        blocker.listen()

        result = local_stack.run("stack", "up")

    assert result.status == 2
    assert result.out == ""
    assert result.err.startswith("powerview: error: ")
    assert f"port {local_stack.port}" in result.err
    assert "already in use" in result.err
    assert "POWERVIEW_INFLUXD_PORT" in result.err
    assert "Traceback" not in result.err
    assert not local_stack.pid_file.exists()
    assert influxd_pids(local_stack.data_dir) == []


# -- stale pid files -----------------------------------------------------------------


STALE_PIDS: dict[str, Callable[[subprocess.Popen[bytes]], str]] = {
    "dead process": lambda _: f"{dead_pid()}\n",
    "this test process": lambda _: f"{os.getpid()}\n",
    "unrelated live process": lambda unrelated: f"{unrelated.pid}\n",
    "garbage": lambda _: "not a pid\n",
    "empty": lambda _: "",
}


@pytest.mark.parametrize("kind", STALE_PIDS)
def test_up_with_a_stale_pid_file_starts_a_fresh_server(
    local_stack: LocalStack, unrelated_process: subprocess.Popen[bytes], kind: str
) -> None:
    local_stack.data_dir.mkdir(parents=True)
    stale = STALE_PIDS[kind](unrelated_process)
    local_stack.pid_file.write_text(stale)

    result = local_stack.run("stack", "up")

    assert result.status == 0, result.err
    assert "InfluxDB started" in result.out
    pid = local_stack.pid()
    assert local_stack.pid_file.read_text() != stale
    assert influxd_pids(local_stack.data_dir) == [pid]
    assert unrelated_process.poll() is None  # left alone
    with local_stack.client() as client:
        assert client.ping()


@pytest.mark.parametrize("kind", STALE_PIDS)
def test_down_with_a_stale_pid_file_kills_nothing(
    local_stack: LocalStack, unrelated_process: subprocess.Popen[bytes], kind: str
) -> None:
    local_stack.data_dir.mkdir(parents=True)
    local_stack.pid_file.write_text(STALE_PIDS[kind](unrelated_process))

    status = local_stack.run("stack", "status")
    assert status.status == 0
    assert "InfluxDB is not running" in status.out

    local_stack.pid_file.write_text(STALE_PIDS[kind](unrelated_process))
    result = local_stack.run("stack", "down")

    assert result.status == 0, result.err
    assert result.out.strip() == "InfluxDB was not running"
    time.sleep(0.1)  # a signal, had one been sent, would have landed
    assert unrelated_process.poll() is None
    assert not local_stack.pid_file.exists()


def test_down_with_the_pid_of_another_influxd_leaves_it_running(
    local_stack: LocalStack, influxdb: InfluxInstance
) -> None:
    """A pid file naming an influxd of another data folder (a recycled pid) is stale too."""
    other_pid = influxdb.server.running_pid()
    assert other_pid is not None
    local_stack.data_dir.mkdir(parents=True)
    local_stack.pid_file.write_text(f"{other_pid}\n")

    result = local_stack.run("stack", "down")

    assert result.status == 0, result.err
    assert result.out.strip() == "InfluxDB was not running"
    time.sleep(0.1)
    assert influxdb.server.running_pid() == other_pid
    assert influxdb.server.healthy()


# -- lost credentials ----------------------------------------------------------------


def test_onboarded_data_without_its_stack_env_is_a_clear_error(local_stack: LocalStack) -> None:
    assert local_stack.run("stack", "up").status == 0
    assert local_stack.run("stack", "down").status == 0
    local_stack.env_file.unlink()

    result = local_stack.run("stack", "up")

    assert result.status == 2
    assert result.err.startswith("powerview: error: ")
    assert "is onboarded but its credentials file" in result.err
    assert str(local_stack.env_file) in result.err
    assert f"remove {local_stack.data_dir}" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err
    assert not local_stack.env_file.exists()
    # The server this failed `up` started is not left behind.
    assert influxd_pids(local_stack.data_dir) == []
    assert "InfluxDB is not running" in local_stack.run("stack", "status").out


def test_up_writes_its_env_file_through_no_planted_link(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """Links planted at the env file and at its old temporary name: the outside file
    is untouched and the env file is a new 0600 file (tests/security/test_hygiene.py)."""
    outside = tmp_path / "precious.txt"
    outside.write_text("precious\n")
    local_stack.state_dir.mkdir(mode=0o700)
    for name in ("stack.env", ".stack.env.tmp"):
        (local_stack.state_dir / name).symlink_to(outside)
    assert local_stack.run("stack", "up").status == 0
    assert outside.read_text() == "precious\n"
    env_file = local_stack.state_dir / "stack.env"
    assert not env_file.is_symlink()
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert "INFLUXDB_ADMIN_TOKEN=" in env_file.read_text()
