"""deploy/README.md's OpenSSH path, run as written on this machine, proves the pipeline.

From a bare state (nothing of PowerView's on the host but the checkout) to a
company's upload ingested: the marked blocks of the guide are run by bash as
root, under a temporary prefix below /srv (sshd's chroot rule rules out /tmp),
with unique user and group names and free loopback ports; `systemctl` is the
stand-in of tests/deploy/systemctl.py, which starts each service from the
installed unit file (ExecStart, User, Environment, EnvironmentFile,
AmbientCapabilities) and Debian's sshd with the installed fragment. Then a
real SFTP upload with the company's key, and the checks: the campaign's
provisioning done (its bucket, its Grafana organisation), the data queryable,
the guide's own `powerview health` exit 0 as the service user. Everything the
test created (users, groups, mounts, processes, the prefix) is removed.

Step 2 clones the checkout (`<this repository>`): the committed HEAD is what gets
installed and tested, not uncommitted edits.

Each phase's time is printed (`-s` shows it): bare machine to first ingested
upload, following the guide.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from influxdb_client import InfluxDBClient

from tests.deploy import guide
from tests.deploy.units import env_file_values
from tests.e2e.sshd import count_points, free_port, group_members, wait_for
from tests.grafana_standin.server import GrafanaStandin

REPO = Path(__file__).resolve().parents[2]
SAMPLE = Path("acme/v002-header/02001315/T302_260909_031459_UTC.tsv")
SAMPLE_POINTS = 1_488  # tests/samples/README.md: 62 rows x 24 channels
APT_GET = """#!/bin/sh
# The deployment test's apt-get: it installs nothing (CI's `make apt` did), it
# checks that every package the guide names is installed.
case "$1" in
  update) exit 0 ;;
  install) shift ;;
  *) echo "apt-get (test): $1 not emulated" >&2; exit 2 ;;
esac
for package in "$@"; do
  case "$package" in -*) continue ;; esac
  dpkg -s "$package" >/dev/null 2>&1 || {
    echo "apt-get (test): $package is not installed: add it to the Makefile's apt target" >&2
    exit 1
  }
done
"""


@dataclass
class Deployment:
    """One run of the guide: its prefix, names, ports, and what to undo."""

    work: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    timings: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(f"/srv/pvdeploy-{self.tag}")
        self.service_user = f"pvs{self.tag}"
        self.upload_group = f"pvu{self.tag}"
        self.influxdb_user = f"pvi{self.tag}"
        self.company = f"pvc{self.tag}"
        self.influxdb_port = free_port()
        self.sshd_port = free_port()
        self.run_dir = self.work / "run"
        self.shims = self.work / "shims"
        self.started = time.monotonic()

    # -- the bare machine ------------------------------------------------------------

    def prepare(self) -> None:
        """Debian's state before the guide: its sshd_config, a host key, the company's key."""
        self.root.mkdir(mode=0o755)
        os.chmod(self.root, 0o755)  # noqa: S103 (sshd: every folder above a chroot 0755)
        (self.root / "etc/ssh").mkdir(parents=True)
        shutil.copy("/etc/ssh/sshd_config", self.root / "etc/ssh/sshd_config")
        self.run_dir.mkdir()
        for name in ("host", "company"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.work / name)],
                check=True,
            )
        self.shims.mkdir()
        (self.shims / "apt-get").write_text(APT_GET)
        (self.shims / "systemctl").write_text(
            f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m tests.deploy.systemctl "$@"\n'
        )
        for shim in self.shims.iterdir():
            shim.chmod(0o755)
        context = {
            "root": str(self.root),
            "run_dir": str(self.run_dir),
            "sshd_port": self.sshd_port,
            "host_key": str(self.work / "host"),
        }
        (self.work / "context.json").write_text(json.dumps(context))

    def scripts(self) -> tuple[list[str], list[str]]:
        """The guide's OpenSSH blocks with this run's prefix, names and ports: (setup, check)."""
        blocks = guide.blocks("openssh")
        assert blocks, "deploy/README.md has no block marked <!-- deploy-test: openssh -->"
        replacements = {
            "<this repository>": str(REPO),
            "/usr/local/bin/powerview": str(self.root / "usr/local/bin/powerview"),
            "powerview deploy --variant openssh": (
                f"powerview deploy --variant openssh --root {self.root} "
                f"--service-user {self.service_user} --upload-group {self.upload_group}"
            ),
            "powerview stack install --system": (
                f"powerview stack install --system --root {self.root} "
                f"--port {self.influxdb_port} --service-user {self.service_user} "
                f"--influxdb-user {self.influxdb_user}"
            ),
            "runuser -u powerview ": f"runuser -u {self.service_user} ",
            "tenant create acme": f"tenant create {self.company}",
            "acme.pub": str(self.work / "company.pub"),
        }
        texts = guide.substitute([b.text for b in blocks], self.root, replacements)
        setup = [t for b, t in zip(blocks, texts, strict=True) if b.stage == "setup"]
        check = [t for b, t in zip(blocks, texts, strict=True) if b.stage == "check"]
        return setup, check

    def env(self) -> dict[str, str]:
        prefixes = ("POWERVIEW_", "INFLUXDB_", "TSV_", "GRAFANA_", "SFTPGO_", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        env["PATH"] = ":".join(
            [str(self.root / "usr/local/bin"), str(self.shims), "/usr/sbin:/usr/bin:/sbin:/bin"]
        )
        env["PV_DEPLOY_CONTEXT"] = str(self.work / "context.json")
        return env

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        (self.root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def phase(self, name: str) -> None:
        self.timings.append((name, time.monotonic() - self.started))

    # -- what the guide set up -------------------------------------------------------

    @property
    def env_file(self) -> Path:
        return self.root / "etc/powerview/powerview.env"

    def settings(self) -> dict[str, str]:
        return env_file_values(self.env_file)

    def as_service_user(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`powerview ARGS` as the guide's check runs it (service user, the env file)."""
        return subprocess.run(
            ["runuser", "-u", self.service_user, "--", "env",
             f"POWERVIEW_ENV_FILE={self.env_file}",
             str(self.root / "opt/powerview/.venv/bin/powerview"), *args],
            cwd="/", env=self.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def logs(self) -> str:
        parts = []
        for log in sorted(self.run_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-40:]
            parts.append(f"--- {log.name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    # -- undo ------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop, unmount, remove users and the prefix: each step on its own."""
        problems = []
        # The services the systemctl stand-in started (each in its own session).
        groups = []
        for pid_file in self.run_dir.glob("*.service.pid") if self.run_dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                groups.append(int(pid_file.read_text()))
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        for pgid in groups:
            with contextlib.suppress(AssertionError):
                wait_for("a service to stop", lambda g=pgid: not group_members(g), 30)
            if group_members(pgid):
                problems.append(f"process group {pgid} ignored SIGTERM: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        mounts = Path("/proc/mounts").read_text().splitlines()
        for mount in sorted((m.split()[1] for m in mounts), reverse=True):
            if mount.startswith(f"{self.root}/"):
                done = subprocess.run(["umount", mount], capture_output=True, text=True)
                if done.returncode:
                    problems.append(f"umount {mount}: {done.stderr.strip()}")
        for user in (self.company, self.service_user, self.influxdb_user):
            done = subprocess.run(["userdel", user], capture_output=True, text=True)
            if done.returncode not in (0, 6):  # 6: no such user (a step not reached)
                problems.append(f"userdel {user}: {done.stderr.strip()}")
        done = subprocess.run(["groupdel", self.upload_group], capture_output=True, text=True)
        if done.returncode not in (0, 6):
            problems.append(f"groupdel {self.upload_group}: {done.stderr.strip()}")
        if self.root.is_dir():
            shutil.rmtree(self.root, ignore_errors=True)
        return problems


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    if os.geteuid() != 0:
        pytest.fail("the deployment test runs the guide as root (users, chroot, mounts)")
    made = Deployment(tmp_path)
    try:
        yield made
    finally:
        problems = made.close()
        assert problems == [], f"deployment cleanup: {problems}"


@contextlib.contextmanager
def company_sftp(deployment: Deployment) -> Iterator[paramiko.SFTPClient]:
    """The company's SFTP session, with its key, checking the server's host key."""
    host_key = (deployment.work / "host.pub").read_text().split()
    client = paramiko.SSHClient()
    client.get_host_keys().add(
        f"[127.0.0.1]:{deployment.sshd_port}", host_key[0],
        paramiko.Ed25519Key(data=base64.b64decode(host_key[1])),
    )  # fmt: skip
    client.connect(
        "127.0.0.1",
        port=deployment.sshd_port,
        username=deployment.company,
        key_filename=str(deployment.work / "company"),
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        sftp = client.open_sftp()
        try:
            yield sftp
        finally:
            sftp.close()
    finally:
        client.close()


def upload(deployment: Deployment, campaign: str, device: str, name: str, data: bytes) -> None:
    """The company's upload over SFTP into a new or existing device folder."""
    with company_sftp(deployment) as sftp:
        home = f"/{deployment.company}"
        for folder in (f"{home}/{campaign}", f"{home}/{campaign}/{device}"):
            with contextlib.suppress(OSError):  # already there
                sftp.mkdir(folder)
        with sftp.open(f"{home}/{campaign}/{device}/{name}", "wb") as remote:
            remote.write(data)


def reason_over_sftp(deployment: Deployment, campaign: str, device: str, name: str) -> str | None:
    """The reason file beside a rejected upload, as the client reads it, once it is there."""
    with company_sftp(deployment) as sftp:
        folder = f"/{deployment.company}/{campaign}/{device}/error"
        try:
            if f"{name}.reason.txt" not in sftp.listdir(folder):
                return None
        except OSError:
            return None
        with sftp.open(f"{folder}/{name}.reason.txt") as remote:
            return bytes(remote.read()).decode()


def queue_jobs(deployment: Deployment) -> list[dict[str, Any]]:
    done = deployment.as_service_user("queue", "--all", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout)["jobs"])


@pytest.mark.influxdb
def test_the_openssh_guide_runs_from_a_bare_machine_to_an_ingested_upload(
    deployment: Deployment, grafana: GrafanaStandin, samples: Path
) -> None:
    deployment.prepare()
    setup, check = deployment.scripts()
    assert check, "the guide's final check block (<!-- deploy-test: openssh check -->) is gone"
    for script in setup:
        done = deployment.run(script)
        assert done.returncode == 0, (
            f"this block of deploy/README.md failed ({done.returncode}):\n{script}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}\n{deployment.logs()}"
        )
        deployment.phase(script.strip().splitlines()[0][:60])
        if "powerview stack install --system" in script:
            # Step 5 of the guide, the operator's edit of the env file: Grafana.
            with deployment.env_file.open("a") as env_file:
                env_file.write(
                    f"GRAFANA_URL={grafana.url}\nGRAFANA_USERNAME={grafana.admin_user}\n"
                    f"GRAFANA_PASSWORD={grafana.admin_password}\n"
                )

    # What the guide promises about the env file: the health check's group may read it.
    info = deployment.env_file.stat()
    assert oct(info.st_mode & 0o777) == "0o640"
    assert (info.st_uid, info.st_gid) == (0, _gid(deployment.service_user))

    sample = (samples / SAMPLE).read_bytes()
    upload(deployment, "site", "02001315", SAMPLE.name, sample)
    deployment.phase("upload sent over SFTP")
    settings = deployment.settings()
    with InfluxDBClient(
        url=settings["INFLUXDB_URL"],
        token=settings["INFLUXDB_ADMIN_TOKEN"],
        org=settings["INFLUXDB_ORG"],
    ) as influx:
        wait_for(
            "the upload's points in InfluxDB",
            lambda: count_points(influx, deployment.company, campaign="site") >= SAMPLE_POINTS,
            timeout_s=120,
            describe=deployment.logs,
        )
        deployment.phase("first upload ingested")
        assert count_points(influx, deployment.company, campaign="site") == SAMPLE_POINTS
    device = deployment.root / "srv/sftpgo/data" / deployment.company / "site" / "02001315"
    assert (device / "parsed" / SAMPLE.name).read_bytes() == sample

    provisioning = wait_for(
        "the campaign's provisioning job to finish",
        lambda: [
            j for j in queue_jobs(deployment)
            if j["kind"] == "provision" and j["state"] in ("done", "failed")
        ],
        timeout_s=120,
        describe=deployment.logs,
    )  # fmt: skip
    assert [j["state"] for j in provisioning] == ["done"], provisioning
    assert grafana.state.org_by_name(deployment.company) is not None
    assert grafana.violations == []

    # Everything in the state folder is the service user's: a file or folder root made
    # there (a command run as root) would be out of the worker's reach.
    state = deployment.root / "var/lib/powerview"
    service_uid = pwd.getpwnam(deployment.service_user).pw_uid
    foreign = [
        f"{path} (uid {path.lstat().st_uid})"
        for path in [state, *state.rglob("*")]
        if path.lstat().st_uid != service_uid
    ]
    assert foreign == [], "not the service user's, in the state folder"

    for script in check:
        done = deployment.run(script)
        assert done.returncode == 0, (
            f"the guide's check failed ({done.returncode}):\n{script}\n{done.stdout}\n"
            f"{done.stderr}\n{deployment.logs()}"
        )
    deployment.phase("powerview health exit 0")
    # Then a rejected upload (health rightly warns of it from now on): the client reads
    # why over SFTP, and cannot write beside it.
    upload(deployment, "site", "02001316", "T302_empty.tsv", b"")
    reason = wait_for(
        "the rejected file's reason, over SFTP",
        lambda: reason_over_sftp(deployment, "site", "02001316", "T302_empty.tsv"),
        timeout_s=120,
        interval_s=1.0,
        describe=deployment.logs,
    )
    assert "empty" in reason.lower(), reason
    with company_sftp(deployment) as sftp, pytest.raises(PermissionError):
        sftp.open(f"/{deployment.company}/site/02001316/error/planted.tsv", "wb").close()

    print("\nbare machine -> first ingested upload, following deploy/README.md")
    print("(time since the start at the end of each step, named by its first line):")
    for name, at in deployment.timings:
        print(f"  {at:7.1f} s  {name}")


def _gid(name: str) -> int:
    return grp.getgrnam(name).gr_gid
