"""A real OpenSSH SFTP server with chrooted company users, and PowerView's processes.

Shared by the end-to-end tests (fixtures in conftest.py) and by
bench/bench_upload_latency.py. Needs root (system users, `ChrootDirectory`,
bind mounts) and Debian's openssh-server (`make apt` installs it).

One server lives in `/srv/powerview-test-<hex>/` (sshd's chroot rule: every
component of a chroot path root-owned and not group/other writable, which
rules out /tmp), everything root-owned 0755 unless said:

    etc/sshd_config, etc/host_ed25519, etc/sshd.pid, etc/sshd.log
    authorized/<user>        the user's public key (AuthorizedKeysFile, 0644)
    client/<user>            the user's private key (0600), client/known_hosts
    chroot-<user>/           the user's chroot
    chroot-<user>/<user>/    bind mount of <data_root>/<user>, owned by the user
    data/<hex>/              data roots handed out by `new_data_root()`

A company is a system user `pvco<server hex><company hex>` (the company name
is the user name: PowerView's default identity mapping). Users, mounts and
processes are all undone by `close()`, each step on its own, whatever failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paramiko

SSHD = Path("/usr/sbin/sshd")
SRV = Path("/srv")
PRIVSEP_DIR = Path("/run/sshd")
HOST = "127.0.0.1"
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
POWERVIEW = VENV_BIN / "powerview"

T = TypeVar("T")


class HarnessError(RuntimeError):
    """The test harness could not set something up; the message says what and why."""


# -- small helpers --------------------------------------------------------------


def run(*cmd: str | Path) -> str:
    """Run a command; raise HarnessError with its output if it fails."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(
            f"{' '.join(map(str, cmd))} exited {done.returncode}: {done.stderr or done.stdout}"
        )
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            details = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{details}")
        time.sleep(interval_s)


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children first found, from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def openssh_version() -> tuple[int, int]:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


# -- the server -----------------------------------------------------------------


@dataclass
class Company:
    """A company = a chrooted system user whose SFTP root holds only `/<name>`."""

    name: str
    data_root: Path
    chroot: Path
    key_file: Path
    uid: int
    gid: int

    @property
    def folder(self) -> Path:
        """The company folder on the server side (`<data_root>/<name>`)."""
        return self.data_root / self.name

    @property
    def home(self) -> str:
        """The same folder as the client sees it."""
        return f"/{self.name}"

    def pkey(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.key_file))


@dataclass
class SftpServer:
    """Debian's sshd as root on a free loopback port, with its own configuration."""

    base: Path = field(default_factory=lambda: SRV / f"powerview-test-{secrets.token_hex(4)}")
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    companies: list[Company] = field(default_factory=list)
    # `internal-sftp -P` requests refused (e.g. "symlink,hardlink", as the shipped
    # deploy fragment does). Empty by default: the attack tests need links allowed,
    # since PowerView must be safe without that restriction.
    sftp_denied: str = ""
    # A deployment's own Match block (deploy/sshd_config.powerview with its paths
    # pointed at a test folder) instead of the harness's, and the group allowed to
    # log in instead of the harness's user prefix: for accounts `tenant create` makes.
    fragment: str | None = None
    allow_groups: str = ""

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def log_file(self) -> Path:
        return self.etc / "sshd.log"

    @property
    def known_hosts(self) -> Path:
        return self.base / "client" / "known_hosts"

    @property
    def user_prefix(self) -> str:
        return f"pvco{self.tag}"

    def log_tail(self, lines: int = 40) -> str:
        return f"--- {self.log_file} (last lines) ---\n{tail(self.log_file, lines)}"

    # -- start and stop ---------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        if os.geteuid() != 0:
            raise HarnessError("the SFTP end-to-end harness needs root (users, chroot, mounts)")
        if not SSHD.exists() or shutil.which("ssh-keygen") is None:
            raise HarnessError(f"{SSHD} or ssh-keygen missing: run `make apt` (openssh-server)")
        for folder in (self.base, self.etc, self.base / "authorized", self.base / "data"):
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(folder, 0o755)  # noqa: S103 (sshd: root-owned, not group-writable)
        (self.base / "client").mkdir(mode=0o700, exist_ok=True)
        if not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        host_key = self.etc / "host_ed25519"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pv-test-host", "-f", host_key)
        self.port = free_port()
        public = host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{HOST}]:{self.port} {public[0]} {public[1]}\n")
        config = self.etc / "sshd_config"
        config.write_text(self._config(host_key))
        run(SSHD, "-t", "-f", config)
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-E", str(self.log_file), "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise HarnessError(f"sshd exited {self.process.returncode}\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise HarnessError(f"no sshd banner within {timeout_s} s\n{self.log_tail()}")
            time.sleep(0.02)

    def _config(self, host_key: Path) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {HOST}",
            f"HostKey {host_key}",
            f"PidFile {self.etc / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.base / 'authorized'}/%u",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            (
                f"AllowGroups {self.allow_groups}"
                if self.allow_groups
                else f"AllowUsers {self.user_prefix}*"
            ),
            "StrictModes yes",
            # 50 clients connecting at once: the default 10:30:100 drops some.
            "MaxStartups 256",
            "MaxSessions 64",
            "LoginGraceTime 30",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        if openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")  # many loopback clients, some killed on purpose
        if self.fragment is not None:
            return "\n".join(lines) + "\n" + self.fragment + "\n"
        # One Match block serves every company of this server: %u in the chroot
        # and in internal-sftp's start folder, so companies can be added while it runs.
        lines += [
            f"Match User {self.user_prefix}*",
            f"    ChrootDirectory {self.base}/chroot-%u",
            "    ForceCommand internal-sftp -u 0022 -d /%u"
            + (f" -P {self.sftp_denied}" if self.sftp_denied else ""),
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> list[str]:
        """Undo everything; returns the problems met (each step is tried regardless)."""
        problems: list[str] = []
        if self.process is not None:
            try:
                self._stop_sshd()
            except Exception as exc:
                problems.append(f"stopping sshd: {exc}")
        for company in list(self.companies):
            problems += self.remove_company(company)
        # /run/sshd is left in place even if made here: another sshd (a second
        # server of these tests, or another session's) may need it still, and
        # sshd drops every new connection while it is missing.
        left = self.mounts()
        if left:
            problems.append(f"{self.base} kept: still mounted {left}")
        elif self.base.exists():
            try:
                shutil.rmtree(self.base)
            except OSError as exc:
                problems.append(f"removing {self.base}: {exc}")
        return problems

    def _stop_sshd(self) -> None:
        assert self.process is not None
        # Per-connection sshd processes outlive the listener: end them first.
        for pid in descendants(self.process.pid):
            _kill(pid, signal.SIGTERM)
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in descendants(self.process.pid):
            _kill(pid, signal.SIGKILL)

    # -- companies --------------------------------------------------------------

    def new_data_root(self) -> Path:
        root = self.base / "data" / secrets.token_hex(4)
        root.mkdir(mode=0o755)
        return root

    def add_company(self, data_root: Path) -> Company:
        # Four random bytes, and never a name used before in this server's life:
        # two bytes collided once a session made a few hundred companies.
        while True:
            name = f"{self.user_prefix}{secrets.token_hex(4)}"
            if not (self.base / "client" / name).exists() and not _user_exists(name):
                break
        chroot = self.base / f"chroot-{name}"
        company = Company(name, data_root, chroot, self.base / "client" / name, -1, -1)
        self.companies.append(company)  # from here on, close() undoes whatever got done
        run("useradd", "--no-create-home", "--home-dir", "/", "--shell", "/usr/sbin/nologin", name)
        run("usermod", "-p", "*", name)  # useradd's accounts are locked: sshd refuses them
        user = pwd.getpwnam(name)
        company.uid, company.gid = user.pw_uid, user.pw_gid
        company.folder.mkdir(mode=0o755)
        os.chown(company.folder, company.uid, company.gid)
        chroot.mkdir(mode=0o755)
        (chroot / name).mkdir(mode=0o755)
        run("mount", "--bind", company.folder, chroot / name)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", company.key_file)
        authorized = self.base / "authorized" / name
        shutil.copyfile(company.key_file.with_suffix(".pub"), authorized)
        os.chmod(authorized, 0o644)
        return company

    def remove_company(self, company: Company) -> list[str]:
        """Undo `add_company` as far as it got; returns the problems met."""
        problems: list[str] = []
        name = company.name
        exists = _user_exists(name)
        if exists:
            # Its internal-sftp processes would keep the mount busy and block userdel.
            with contextlib.suppress(HarnessError):
                for pid in run("pgrep", "-u", name).split():
                    _kill(int(pid), signal.SIGKILL)
        mount = company.chroot / name
        if self.is_mounted(mount):
            try:
                self._umount(mount)
            except HarnessError as exc:
                problems.append(str(exc))
        if exists:
            try:
                run("userdel", name)
            except HarnessError:
                try:
                    run("userdel", "--force", name)
                except HarnessError as exc:
                    problems.append(str(exc))
        if not self.is_mounted(mount):
            with contextlib.suppress(OSError):
                shutil.rmtree(company.chroot)
        with contextlib.suppress(ValueError):
            self.companies.remove(company)
        return problems

    def mounts(self) -> list[str]:
        """Mount points under this server's folder that are still mounted.

        From the mount table: os.path.ismount cannot see a bind mount of a
        folder of the same file system (same device on both sides).
        """
        with open("/proc/self/mounts") as table:
            points = [line.split()[1] for line in table]
        return [p for p in points if p.startswith(f"{self.base}/")]

    def is_mounted(self, path: Path) -> bool:
        return str(path) in self.mounts()

    @staticmethod
    def _umount(mount: Path) -> None:
        for attempt in range(50):
            done = subprocess.run(["umount", str(mount)], capture_output=True, text=True)
            if done.returncode == 0:
                return
            if attempt == 49:
                run("umount", "--lazy", mount)
                return
            time.sleep(0.1)

    # -- clients ----------------------------------------------------------------

    def ssh_client(self, company: Company, timeout_s: float = 15.0) -> paramiko.SSHClient:
        """A paramiko client logged in as the company (key auth, host key checked)."""
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            HOST,
            port=self.port,
            username=company.name,
            pkey=company.pkey(),
            allow_agent=False,
            look_for_keys=False,
            timeout=timeout_s,
            banner_timeout=timeout_s,
            auth_timeout=timeout_s,
        )
        return client

    @contextlib.contextmanager
    def sftp(self, company: Company) -> Iterator[paramiko.SFTPClient]:
        """A paramiko SFTP session of the company, closed afterwards."""
        client = self.ssh_client(company)
        try:
            sftp = client.open_sftp()
            try:
                yield sftp
            finally:
                sftp.close()
        finally:
            client.close()

    def asyncssh_options(self, company: Company) -> dict[str, Any]:
        """Keyword arguments for `asyncssh.connect` as the company."""
        return {
            "host": HOST,
            "port": self.port,
            "username": company.name,
            "client_keys": [str(company.key_file)],
            "known_hosts": str(self.known_hosts),
            "agent_path": None,
            "config": None,
        }


# -- PowerView's processes -----------------------------------------------------


@dataclass
class PowerViewProcesses:
    """`powerview watch` and `powerview worker` as subprocesses, logs in `log_dir`."""

    data_root: Path
    state_dir: Path
    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _groups: set[int] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        data_root: Path,
        work_dir: Path,
        influx_url: str,
        influx_org: str,
        influx_token: str,
        meta_bucket: str,
        settle_s: float = 0.3,
        scan_interval_s: float = 3600.0,
        concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
    ) -> PowerViewProcesses:
        state_dir = work_dir / "state"
        log_dir = work_dir / "logs"
        for folder in (state_dir, log_dir, work_dir / "reports"):
            folder.mkdir(parents=True, exist_ok=True)
        env = powerview_env(
            data_root=data_root,
            state_dir=state_dir,
            report_dir=work_dir / "reports",
            influx_url=influx_url,
            influx_org=influx_org,
            influx_token=influx_token,
            meta_bucket=meta_bucket,
            settle_s=settle_s,
            scan_interval_s=scan_interval_s,
            concurrency=concurrency,
        )
        env["POWERVIEW_ENV_FILE"] = str(work_dir / "no.env")
        env.update(extra_env or {})
        return cls(data_root, state_dir, log_dir, env)

    @property
    def report_dir(self) -> Path:
        return Path(self.env["TSV_REPORT_DIR"])

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> int:
        """Start `powerview <args>` as `name`; its output is appended to `<name>.log`."""
        if name in self.processes and self.processes[name].poll() is None:
            raise HarnessError(f"{name} already runs")
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(POWERVIEW), *args],
                env={**_base_env(), **self.env, **(env or {})},
                cwd=self.state_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        self._groups.add(process.pid)
        return process.pid

    def start_watch(self, timeout_s: float = 15.0) -> None:
        # DEBUG: the watcher then logs each event it ignores, and why.
        pid = self.spawn("watch", "watch", str(self.data_root), env={"TSV_LOG_LEVEL": "DEBUG"})
        self._wait_ready("watcher", pid, "watch", timeout_s)

    def start_worker(self, *args: str, timeout_s: float = 15.0) -> None:
        pid = self.spawn("worker", "worker", *args)
        self._wait_ready("worker", pid, "worker", timeout_s)

    def _wait_ready(self, beat: str, pid: int, name: str, timeout_s: float) -> None:
        """Ready once its heartbeat (written at the start of its loop) names its pid."""
        from powerview.queue import JobQueue

        def ready() -> bool:
            if self.processes[name].poll() is not None:
                raise HarnessError(f"powerview {name} exited at start\n{self.log_tail(name)}")
            queue = JobQueue.in_state_dir(self.state_dir)
            try:
                return queue.heartbeats().get(beat, {}).get("pid") == pid
            finally:
                queue.close()

        wait_for(f"powerview {name} to start", ready, timeout_s, describe=lambda: self.logs())

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal only the main process of `name` (its pool processes are left alone)."""
        process = self.processes[name]
        process.send_signal(sig)
        process.wait(timeout=30)

    def stop(self, timeout_s: float = 20.0) -> list[str]:
        """SIGTERM, SIGKILL after `timeout_s`, then anything left in their process groups."""
        problems = []
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                problems.append(f"powerview {name} ignored SIGTERM for {timeout_s} s: killed")
                process.kill()
                process.wait(timeout=10)
        for pgid in self._groups:
            members = group_members(pgid)
            if members:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        for pgid in self._groups:
            with contextlib.suppress(AssertionError):
                wait_for("process group to end", lambda g=pgid: not group_members(g), 10)
        return problems

    def jobs(self) -> list[Any]:
        """Every job of the queue, newest first."""
        from powerview.queue import JobQueue

        queue = JobQueue.in_state_dir(self.state_dir)
        try:
            return queue.jobs(limit=1_000_000)
        finally:
            queue.close()

    def counts(self) -> dict[str, int]:
        from powerview.queue import JobQueue

        queue = JobQueue.in_state_dir(self.state_dir)
        try:
            return queue.counts()
        finally:
            queue.close()

    def reports(self) -> list[dict[str, Any]]:
        """The file entries of every JSON run report written so far."""
        found = []
        for path in sorted(self.report_dir.glob("tsv_run_*.json")):
            found.extend(json.loads(path.read_text())["files"])
        return found

    def log_tail(self, name: str, lines: int = 60) -> str:
        return f"--- powerview {name} log ---\n{tail(self.log_dir / f'{name}.log', lines)}"

    def logs(self, lines: int = 60) -> str:
        parts = [self.log_tail(name, lines) for name in sorted(self.processes)]
        return "\n".join([*parts, f"--- files under {self.data_root} ---", *self.tree()])

    def tree(self) -> list[str]:
        found = []
        for here, _, files in os.walk(self.data_root):
            found += [str((Path(here) / f).relative_to(self.data_root)) for f in sorted(files)]
        return found


def powerview_env(
    *,
    data_root: Path,
    state_dir: Path,
    report_dir: Path,
    influx_url: str,
    influx_org: str,
    influx_token: str,
    meta_bucket: str,
    settle_s: float,
    scan_interval_s: float,
    concurrency: int,
) -> dict[str, str]:
    """PowerView's settings for the processes under test (the SFTPGo `command.env` list)."""
    return {
        "POWERVIEW_DATA_ROOT": str(data_root),
        "POWERVIEW_STATE_DIR": str(state_dir),
        "INFLUXDB_URL": influx_url,
        "INFLUXDB_ORG": influx_org,
        "INFLUXDB_ADMIN_TOKEN": influx_token,
        "TSV_META_BUCKET": meta_bucket,
        "TSV_REPORT_DIR": str(report_dir),
        "TSV_LOG_LEVEL": "INFO",
        "POWERVIEW_SETTLE_S": str(settle_s),
        "POWERVIEW_SCAN_INTERVAL_S": str(scan_interval_s),
        "POWERVIEW_WORKER_CONCURRENCY": str(concurrency),
    }


def _base_env() -> dict[str, str]:
    """This process's environment without any PowerView, InfluxDB or SFTPGo setting."""
    prefixes = ("POWERVIEW_", "INFLUXDB_", "TSV_", "GRAFANA_", "SFTPGO_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


# -- SFTP clients with one interface, so a scenario runs with either library ----


class ParamikoClient:
    """paramiko's SFTP client: `rename` is the plain SFTP rename, `posix_rename` the extension."""

    library = "paramiko"

    def __init__(self, server: SftpServer, company: Company) -> None:
        self._ssh = server.ssh_client(company)
        self.sftp = self._ssh.open_sftp()

    def mkdir(self, path: str) -> None:
        self.sftp.mkdir(path)

    def put(self, path: str, data: bytes) -> None:
        with self.sftp.open(path, "wb") as remote:
            remote.set_pipelined(True)
            remote.write(data)

    def rename(self, old: str, new: str) -> None:
        self.sftp.rename(old, new)

    def posix_rename(self, old: str, new: str) -> None:
        self.sftp.posix_rename(old, new)

    def listdir(self, path: str) -> list[str]:
        return sorted(self.sftp.listdir(path))

    def close(self) -> None:
        self.sftp.close()
        self._ssh.close()


class AsyncsshClient:
    """asyncssh's SFTP client driven from synchronous tests through its own event loop."""

    library = "asyncssh"

    def __init__(self, server: SftpServer, company: Company) -> None:
        import asyncssh

        self._loop = asyncio.new_event_loop()
        self._conn = self._run(asyncssh.connect(**server.asyncssh_options(company)))
        self.sftp = self._run(self._conn.start_sftp_client())

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def mkdir(self, path: str) -> None:
        self._run(self.sftp.mkdir(path))

    def put(self, path: str, data: bytes) -> None:
        async def put() -> None:
            async with self.sftp.open(path, "wb") as remote:
                await remote.write(data)

        self._run(put())

    def put_many(self, files: dict[str, bytes], at_once: int = 32) -> None:
        """Upload many files over this one connection, `at_once` requests in flight."""
        limit = asyncio.Semaphore(at_once)

        async def put(path: str, data: bytes) -> None:
            async with limit, self.sftp.open(path, "wb") as remote:
                await remote.write(data)

        async def all_of_them() -> None:
            await asyncio.gather(*(put(p, d) for p, d in files.items()))

        self._run(all_of_them())

    def rename(self, old: str, new: str) -> None:
        self._run(self.sftp.rename(old, new))

    def posix_rename(self, old: str, new: str) -> None:
        self._run(self.sftp.posix_rename(old, new))

    def listdir(self, path: str) -> list[str]:
        names = self._run(self.sftp.listdir(path))
        return sorted(n for n in names if n not in (".", ".."))

    def close(self) -> None:
        self.sftp.exit()
        self._conn.close()
        self._run(self._conn.wait_closed())
        self._loop.close()


CLIENTS: dict[str, type[ParamikoClient] | type[AsyncsshClient]] = {
    "paramiko": ParamikoClient,
    "asyncssh": AsyncsshClient,
}


# -- what landed in InfluxDB ---------------------------------------------------


def count_points(client: Any, bucket: str, **tags: str) -> int:
    """Points of the `electrical` measurement in `bucket` whose tags equal `tags`.

    0 when the bucket does not exist yet (it is created by the first ingestion).
    """
    from influxdb_client.rest import ApiException

    conditions = " and ".join(
        ['r._measurement == "electrical"', *(f'r["{k}"] == "{v}"' for k, v in tags.items())]
    )
    flux = (
        f'from(bucket: "{bucket}") |> range(start: 0)'
        f" |> filter(fn: (r) => {conditions}) |> group() |> count()"
    )
    try:
        tables = client.query_api().query(flux)
    except ApiException as exc:
        if exc.status == 404:
            return 0
        raise
    return sum(int(record.get_value()) for table in tables for record in table.records)
