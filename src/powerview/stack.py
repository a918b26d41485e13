"""A local InfluxDB 2 server: find or build `influxd`, start, onboard, stop.

Used by `powerview stack` for the local default stack and by the test suite's
fixtures, so both run the very same server code. The server binds to
127.0.0.1 only and keeps everything (data, log, pid file) in one folder.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from powerview import host
from powerview.deploy import (
    ENV_FILE,
    INFLUXD_BINARY,
    INFLUXD_DATA,
    UNIT_DIR,
    Target,
    ensure_env_file,
    shipped_file,
)
from powerview.exceptions import StackError
from powerview.host import Step
from powerview.private_files import write_private
from powerview.processes import pid_alive

# The one pin: install-influxd (beside this file) reads this line (keep its shape).
INFLUXD_VERSION = "v2.8.0"
HOST = "127.0.0.1"
LOG_TAIL_LINES = 25
# Package data (src/powerview/install-influxd), so an installed wheel can build influxd too.
INSTALLER = "install-influxd"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("POWERVIEW_CACHE_DIR", Path(base) / "powerview"))


def find_influxd(configured: Path | None = None) -> Path | None:
    """The influxd to run: the configured one, the project's build, then PATH."""
    candidates = [
        configured,
        cache_dir() / "influxd" / INFLUXD_VERSION / "bin" / "influxd",
        Path(found) if (found := shutil.which("influxd")) else None,
    ]
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_influxd(configured: Path | None = None) -> Path:
    """Find influxd, building the pinned version with the packaged `install-influxd` if needed."""
    found = find_influxd(configured)
    if found is not None:
        return found
    installer = files("powerview") / INSTALLER
    if not installer.is_file():
        raise StackError(f"no influxd binary found (set POWERVIEW_INFLUXD); no {installer}")
    env = {**os.environ, "POWERVIEW_INFLUXD_VERSION": INFLUXD_VERSION}
    if configured is not None:
        env["POWERVIEW_INFLUXD"] = str(configured)
    result = subprocess.run(
        ["bash", str(installer)], env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise StackError(f"install-influxd failed with status {result.returncode}")
    return Path(lines[-1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on `port`.

    SO_REUSEADDR, as influxd (Go) itself binds: connections of a just-stopped
    server linger in TIME_WAIT for a minute and must not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = HOST) -> int:
    """A port the kernel just had free; the caller retries if it is taken meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Onboarding:
    """What the first start of a server created: its admin connection settings."""

    url: str
    org: str
    bucket: str
    token: str
    username: str
    password: str


@dataclass
class InfluxServer:
    """One influxd process whose data, log and pid file live in `data_dir`."""

    binary: Path
    data_dir: Path
    port: int
    host: str = HOST
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "influxd.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "influxd.log"

    @property
    def bolt_path(self) -> Path:
        return self.data_dir / "influxd.bolt"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--bolt-path", str(self.bolt_path),
            "--engine-path", str(self.data_dir / "engine"),
            "--sqlite-path", str(self.data_dir / "influxd.sqlite"),
            "--http-bind-address", f"{self.host}:{self.port}",
            "--reporting-disabled",
            "--log-level", "info",
        ]  # fmt: skip

    def running_pid(self) -> int | None:
        """The pid of this folder's live influxd; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return None
        if _is_our_influxd(pid, self.bolt_path):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, timeout_s: float = 30.0) -> int:
        """Start influxd in the background and wait until it is healthy."""
        if (pid := self.running_pid()) is not None:
            return pid
        if not port_is_free(self.port, self.host):
            raise StackError(
                f"port {self.port} on {self.host} is already in use by another process; "
                "stop it or choose another port (POWERVIEW_INFLUXD_PORT)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env}
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # survives the CLI; stopped by pid
            )
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    f"influxd exited with status {process.returncode} at start\n{self.log_tail()}"
                )
            if self.healthy():
                return process.pid
            time.sleep(0.05)
        self._terminate(process.pid, timeout_s=5)
        raise StackError(f"influxd not healthy after {timeout_s:.0f} s\n{self.log_tail()}")

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the server (SIGINT: influxd's clean shutdown); False if none ran."""
        pid = self.running_pid()
        if pid is None:
            return False
        self._terminate(pid, timeout_s)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _terminate(self, pid: int, timeout_s: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # influxd ignores SIGTERM's clean path
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:  # noqa: S310
                return json.loads(reply.read())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def healthy(self) -> bool:
        health = self.health()
        return health is not None and health.get("status") == "pass"

    def onboarding_allowed(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/api/v2/setup", timeout=5) as reply:  # noqa: S310
            return bool(json.loads(reply.read()).get("allowed"))

    def onboard(self, org: str, bucket: str, username: str = "admin") -> Onboarding:
        """First-time setup with a generated token and password (never fixed ones)."""
        token = secrets.token_urlsafe(32)
        password = secrets.token_urlsafe(18)
        body = json.dumps(
            {"username": username, "password": password, "org": org, "bucket": bucket,
             "token": token}
        ).encode()  # fmt: skip
        request = urllib.request.Request(  # noqa: S310
            f"{self.url}/api/v2/setup",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise StackError(f"onboarding {self.url} failed: {exc.code} {detail}") from exc
        return Onboarding(self.url, org, bucket, token, username, password)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no log at {self.log_file})"
        return f"last lines of {self.log_file}:\n" + "\n".join(text[-lines:])


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _is_our_influxd(pid: int, bolt_path: Path) -> bool:
    """True when `pid` is an influxd serving `bolt_path` (not a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not argv or not argv[0].endswith(b"influxd"):
        return False
    return str(bolt_path).encode() in argv and _alive(pid)


@contextlib.contextmanager
def throwaway_server(
    binary: Path, data_dir: Path, org: str = "powerview", bucket: str = "powerview_meta"
) -> Iterator[tuple[InfluxServer, Onboarding]]:
    """A fresh, onboarded server on a free loopback port, removed afterwards."""
    last_error: StackError | None = None
    for _ in range(5):  # another process may grab the free port before influxd binds it
        server = InfluxServer(binary=binary, data_dir=data_dir, port=free_port())
        try:
            server.start()
            break
        except StackError as exc:
            last_error = exc
            if "address already in use" not in str(exc):
                raise
    else:
        raise last_error or StackError("could not start influxd")
    try:
        yield server, server.onboard(org, bucket)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# -- the local default stack (`powerview stack up | down | status`) ----------


@dataclass(frozen=True)
class StackState:
    """What `stack up` or `stack status` found or did."""

    url: str
    data_dir: Path
    env_file: Path
    log_file: Path
    binary: Path | None
    pid: int | None
    healthy: bool
    started: bool = False
    onboarded: bool = False


def stack_data_dir(state_dir: Path) -> Path:
    return state_dir / "influxdb"


def local_server(state_dir: Path, port: int, binary: Path) -> InfluxServer:
    return InfluxServer(binary=binary, data_dir=stack_data_dir(state_dir).resolve(), port=port)


def stack_up(
    state_dir: Path,
    port: int,
    org: str,
    bucket: str,
    env_file: Path,
    binary: Path | None = None,
) -> StackState:
    """Start (and on first start onboard) the local InfluxDB; a no-op when it runs.

    `env_file` (`Settings.stack_env_file`) gets the credentials of the onboarding.
    """
    server = local_server(state_dir, port, install_influxd(binary))
    running = server.running_pid()
    pid = server.start()
    onboarded = False
    try:
        if server.onboarding_allowed():
            setup = server.onboard(org, bucket)
            write_env_file(
                env_file,
                {
                    "INFLUXDB_URL": setup.url,
                    "INFLUXDB_ORG": setup.org,
                    "INFLUXDB_ADMIN_TOKEN": setup.token,
                    "POWERVIEW_INFLUXD_PORT": str(port),
                    "POWERVIEW_INFLUXDB_ADMIN_USER": setup.username,
                    "POWERVIEW_INFLUXDB_ADMIN_PASSWORD": setup.password,
                },
            )
            onboarded = True
        elif not env_file.is_file():
            raise StackError(
                f"{server.data_dir} is onboarded but its credentials file {env_file} is gone; "
                f"a lost admin token cannot be recovered: remove {server.data_dir} to start "
                "afresh"
            )
    except BaseException:
        if running is None:  # do not leave a server we started behind a failed `up`
            server.stop()
        raise
    return StackState(
        url=server.url,
        data_dir=server.data_dir,
        env_file=env_file,
        log_file=server.log_file,
        binary=server.binary,
        pid=pid,
        healthy=server.healthy(),
        started=running is None,
        onboarded=onboarded,
    )


def stack_down(state_dir: Path, port: int) -> bool:
    """Stop the local InfluxDB by its pid, keeping the data; False if none ran."""
    return InfluxServer(Path("influxd"), stack_data_dir(state_dir).resolve(), port).stop()


def stack_status(
    state_dir: Path, port: int, env_file: Path, binary: Path | None = None
) -> StackState:
    server = InfluxServer(Path("influxd"), stack_data_dir(state_dir).resolve(), port)
    pid = server.running_pid()
    return StackState(
        url=server.url,
        data_dir=server.data_dir,
        env_file=env_file,
        log_file=server.log_file,
        binary=find_influxd(binary),
        pid=pid,
        healthy=pid is not None and server.healthy(),
    )


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write `KEY=value` lines readable by the owner only (mode 0600), atomically."""
    lines = ["# Written by `powerview stack up`: the local InfluxDB's admin settings."]
    lines += [f"{key}={value}" for key, value in values.items()]
    write_private(path, "\n".join(lines) + "\n")


# -- the production InfluxDB (`powerview stack install --system`) -------------

SYSTEM_UNIT = "powerview-influxd.service"


@dataclass(frozen=True)
class SystemInstall:
    """What `stack install --system` found or did."""

    steps: list[Step]
    url: str
    unit: Path
    env_file: Path
    started: str  # "systemd", "already running" or "for onboarding only"
    onboarded: bool
    next_commands: list[str]


def unit_entries(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a systemd unit, every value of a repeated key in order."""
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def system_install(
    target: Target, port: int, org: str, bucket: str, source: Path | None = None
) -> SystemInstall:
    """Install influxd as a service of its own user, start it, onboard it once.

    The admin token goes into the deployment's env file (root:powerview 0640);
    a second run finds the server onboarded and the token there, and keeps both.
    Without systemd (a container, the deployment test) the server is started
    from the unit's own ExecStart, User and Environment for the onboarding only,
    then stopped: systemd starts it for good.
    """
    if not host.user_exists(target.service_user):
        raise StackError(
            f"no user {target.service_user}: run `powerview deploy` first (it creates the "
            "user, whose group may read the env file)"
        )
    built = install_influxd(source)
    binary = target.at(INFLUXD_BINARY)
    unit_path = target.at(UNIT_DIR) / SYSTEM_UNIT
    unit_text = target.relocate(shipped_file(SYSTEM_UNIT)).replace(f"{HOST}:8086", f"{HOST}:{port}")
    steps = [
        _ensure_binary(binary, built),
        host.ensure_system_user(target.influxdb_user, target.at(INFLUXD_DATA), check=False),
        host.ensure_dir(
            target.at(INFLUXD_DATA), 0o700, target.influxdb_user, target.influxdb_user, check=False
        ),
        host.ensure_file(unit_path, unit_text, 0o644, check=False),
    ]
    url = f"http://{HOST}:{port}"
    server = InfluxServer(binary, target.at(INFLUXD_DATA), port)
    temporary: subprocess.Popen[bytes] | None = None
    if server.healthy():
        started = "already running"
    elif target.root == Path("/") and host.systemd_runs():
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "enable", "--now", SYSTEM_UNIT], check=True)
        _wait_healthy(server, None)
        started = "systemd"
    else:
        temporary = start_from_unit(unit_text, server.log_file)
        _wait_healthy(server, temporary)
        started = "for onboarding only"
    try:
        onboarded, env_step = _onboard_system(server, target, org, bucket)
    finally:
        if temporary is not None:
            server._terminate(temporary.pid, timeout_s=30)
    steps.append(env_step)
    commands = [] if started == "systemd" else [f"systemctl enable --now {SYSTEM_UNIT}"]
    return SystemInstall(steps, url, unit_path, target.at(ENV_FILE), started, onboarded, commands)


def _ensure_binary(path: Path, built: Path) -> Step:
    same = path.is_file() and filecmp.cmp(path, built, shallow=False)
    if not same:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(built, tmp)
        os.chmod(tmp, 0o755)  # noqa: S103 (a program every user may run)
        os.replace(tmp, path)
    return Step(str(path), "ok" if same else "changed", f"influxd {INFLUXD_VERSION}")


def start_from_unit(unit_text: str, log_file: Path) -> subprocess.Popen[bytes]:
    """Run a unit's ExecStart as its User and Group with its Environment, as systemd would."""
    entries = unit_entries(unit_text)
    [exec_start] = entries["ExecStart"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    for assignment in entries.get("Environment", []):
        for pair in shlex.split(assignment):
            key, _, value = pair.partition("=")
            env[key] = value
    user = entries["User"][0]
    with log_file.open("ab") as log:
        os.chown(log_file, pwd.getpwnam(user).pw_uid, -1)
        return subprocess.Popen(
            shlex.split(exec_start),
            user=user,
            group=entries.get("Group", [user])[0],
            extra_groups=[],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_healthy(
    server: InfluxServer, process: subprocess.Popen[bytes] | None, timeout_s: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.healthy():
        if process is not None and process.poll() is not None:
            raise StackError(
                f"influxd exited with status {process.returncode} at start\n{server.log_tail()}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"influxd at {server.url} not healthy after {timeout_s:.0f} s")
        time.sleep(0.1)


def _onboard_system(
    server: InfluxServer, target: Target, org: str, bucket: str
) -> tuple[bool, Step]:
    """Onboard a fresh server (token into the env file), or keep the token of an onboarded one."""
    if server.onboarding_allowed():
        setup = server.onboard(org, bucket)
        values = {
            "INFLUXDB_URL": setup.url,
            "INFLUXDB_ORG": setup.org,
            "INFLUXDB_ADMIN_TOKEN": setup.token,
            "POWERVIEW_INFLUXDB_ADMIN_USER": setup.username,
            "POWERVIEW_INFLUXDB_ADMIN_PASSWORD": setup.password,
        }
        return True, ensure_env_file(target, values, replace=True, check=False)
    token = host.env_values(target.at(ENV_FILE)).get("INFLUXDB_ADMIN_TOKEN", "")
    if not token:
        raise StackError(
            f"{server.url} is onboarded already but {target.at(ENV_FILE)} has no "
            "INFLUXDB_ADMIN_TOKEN: paste the admin token there (a lost token cannot be "
            f"recovered; or stop the server, remove {target.at(INFLUXD_DATA)} and run again)"
        )
    values = {"INFLUXDB_URL": server.url, "INFLUXDB_ORG": org}
    return False, ensure_env_file(target, values, replace=False, check=False)
