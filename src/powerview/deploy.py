"""`powerview deploy`: the host side of a deployment, idempotent, with a check mode.

Creates the service user and the upload group, the folders (env file, state,
logs, data root, chroot base, the keys folder of OpenSSH), installs the systemd
units and the sshd fragment (OpenSSH) or the hook's env file (SFTPGo) from the
package data (`powerview/system_files`, the files of deploy/), and says what to
run next. It never starts anything: systemd does (`systemctl enable --now`).

`root` puts the whole deployment under a prefix, and every path written into
the installed files points there too, so a test runs exactly this code on a
real machine without touching /etc: a unit installed under `/srv/t` reads
`/srv/t/etc/powerview/powerview.env`. With the default `/` the files are
installed as shipped, only the `powerview` executable's path filled in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Literal

from powerview import host
from powerview.exceptions import ConfigError
from powerview.host import Step

Variant = Literal["openssh", "sftpgo"]
VARIANTS: tuple[Variant, ...] = ("openssh", "sftpgo")

# The paths of the shipped files, as an operator reads them in deploy/.
ENV_FILE = "/etc/powerview/powerview.env"
HOOK_ENV_FILE = "/etc/powerview/hook.env"
STATE_DIR = "/var/lib/powerview"
LOG_DIR = "/var/log/powerview"
REPORT_DIR = "/var/log/powerview/reports"
DATA_ROOT = "/srv/sftpgo/data"
CHROOT_BASE = "/srv/powerview/chroot"
KEYS_DIR = "/etc/ssh/authorized_keys"
SSHD_FRAGMENT = "/etc/ssh/sshd_config.d/powerview.conf"
FSTAB = "/etc/fstab"
UNIT_DIR = "/etc/systemd/system"
INFLUXD_BINARY = "/usr/local/lib/powerview/influxd"
INFLUXD_DATA = "/var/lib/powerview-influxdb"
SHIPPED_POWERVIEW = "/opt/powerview/.venv/bin/powerview"
# Every path above that a shipped file names; relocated under --root.
_RELOCATED = (
    "/etc/powerview", STATE_DIR, LOG_DIR, DATA_ROOT, CHROOT_BASE, KEYS_DIR,
    INFLUXD_BINARY, INFLUXD_DATA,
)  # fmt: skip
_PATHS = re.compile(
    "|".join(re.escape(p) for p in sorted(_RELOCATED, key=len, reverse=True)) + r"(?![\w.-])"
)

SERVICE_USER = "powerview"
# useradd's and groupadd's rule (Debian's NAME_REGEX, without upper case): never an option.
SYSTEM_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
UPLOAD_GROUP = "powerview-upload"
UNITS: dict[Variant, tuple[str, ...]] = {
    "openssh": ("powerview-worker.service", "powerview-watch.service",
                "powerview-health.service", "powerview-health.timer"),
    "sftpgo": ("powerview-worker.service", "powerview-health.service",
               "powerview-health.timer"),
}  # fmt: skip
ENV_HEADER = """PowerView's settings (every one, with its default: deploy/.env.example,
or `powerview config`). Read by systemd as root; root:powerview 0640, so
`powerview health` run as the service user reads it and clients cannot.
Written by `powerview deploy`; your edits are kept."""


def default_powerview() -> Path:
    """The `powerview` executable of the running installation (its venv's bin)."""
    beside = Path(sys.executable).with_name("powerview")
    found = shutil.which("powerview")
    return beside if beside.is_file() else Path(found or SHIPPED_POWERVIEW)


def shipped_file(name: str) -> str:
    """A file of deploy/ as the package carries it."""
    return (files("powerview") / "system_files" / name).read_text()


@dataclass(frozen=True)
class Target:
    """Where and as whom a deployment is installed."""

    variant: Variant
    root: Path = Path("/")
    service_user: str = SERVICE_USER
    upload_group: str = UPLOAD_GROUP
    influxdb_user: str = "powerview-influxdb"
    powerview: Path = field(default_factory=default_powerview)

    def __post_init__(self) -> None:
        for name in (self.service_user, self.upload_group, self.influxdb_user):
            if SYSTEM_NAME.fullmatch(name) is None:
                raise ConfigError(
                    f"{name!r} is not a user or group name (lower-case letters, digits, '_', '-')"
                )
        if not self.root.is_absolute():
            raise ConfigError(f"--root {self.root} must be an absolute path")

    def at(self, path: str) -> Path:
        """`path` of a deployment at `/`, under this target's root."""
        return self.root / path.lstrip("/")

    def relocate(self, text: str) -> str:
        """A shipped file's text with this target's paths, user, group and executable."""
        if self.root != Path("/"):
            text = _PATHS.sub(lambda m: str(self.at(m.group(0))), text)
        text = text.replace(SHIPPED_POWERVIEW, str(self.powerview))
        text = re.sub(r"^(User|Group)=powerview$", rf"\1={self.service_user}", text, flags=re.M)
        text = re.sub(
            r"^(User|Group)=powerview-influxdb$", rf"\1={self.influxdb_user}", text, flags=re.M
        )
        return re.sub(
            r"^Match Group powerview-upload$", f"Match Group {self.upload_group}", text, flags=re.M
        )


def env_defaults(target: Target) -> dict[str, str]:
    """The settings a deployment's env file must hold (added when missing, never changed)."""
    values = {
        "POWERVIEW_DATA_ROOT": str(target.at(DATA_ROOT)),
        "POWERVIEW_STATE_DIR": str(target.at(STATE_DIR)),
        "TSV_REPORT_DIR": str(target.at(REPORT_DIR)),
        "POWERVIEW_HEALTH_EXPECT": "worker,watcher" if target.variant == "openssh" else "worker",
        "POWERVIEW_SFTP_SERVER": target.variant,
    }
    if target.variant == "openssh":  # what `tenant create --sftp-key` makes accounts with
        values |= {
            "POWERVIEW_UPLOAD_GROUP": target.upload_group,
            "POWERVIEW_CHROOT_BASE": str(target.at(CHROOT_BASE)),
            "POWERVIEW_AUTHORIZED_KEYS_DIR": str(target.at(KEYS_DIR)),
            "POWERVIEW_FSTAB": str(target.at(FSTAB)),
        }
    return values


def ensure_env_file(target: Target, values: dict[str, str], replace: bool, check: bool) -> Step:
    """The env file: root:<service group> 0640 (systemd reads it as root, health as the user)."""
    return host.ensure_env_values(
        target.at(ENV_FILE),
        values,
        replace=replace,
        header=ENV_HEADER,
        mode=0o640,
        owner="root",
        group=target.service_user,
        check=check,
    )


def deploy(target: Target, check: bool) -> list[Step]:
    """Every step of the host setup, in order; in check mode nothing is changed."""
    user, at = target.service_user, target.at
    steps = [
        host.ensure_system_user(user, at(STATE_DIR), check),
        host.ensure_group(target.upload_group, check),
        host.ensure_dir(at("/etc/powerview"), 0o755, check=check),
        ensure_env_file(target, env_defaults(target), replace=False, check=check),
        # systemd's StateDirectory= makes it too; without systemd this is the only place.
        host.ensure_dir(at(STATE_DIR), 0o2770, user, user, check=check),
        host.ensure_dir(at(LOG_DIR), 0o750, user, user, check=check),
        host.ensure_dir(at(REPORT_DIR), 0o750, user, user, check=check),
    ]
    if target.variant == "openssh":
        steps += [
            # The watcher lists it and `health` probes it, both as the service user;
            # company folders below belong to the companies.
            host.ensure_dir(at(DATA_ROOT), 0o755, user, user, check=check),
            # sshd's chroot rule: every folder of the path root-owned, not group-writable.
            host.ensure_dir(at("/srv/powerview"), 0o755, check=check),
            host.ensure_dir(at(CHROOT_BASE), 0o755, check=check),
            host.ensure_dir(at(KEYS_DIR), 0o755, check=check),
            host.ensure_file(
                at(SSHD_FRAGMENT),
                target.relocate(shipped_file("sshd_config.powerview")),
                0o644,
                check=check,
            ),
        ]
    else:
        steps += [
            host.ensure_dir(at(DATA_ROOT), 0o2770, _sftpgo_owner(), user, check=check),
            host.ensure_file(at(HOOK_ENV_FILE), "TSV_LOG_LEVEL=INFO\n", 0o644, check=check),
        ]
    for name in UNITS[target.variant]:
        steps.append(
            host.ensure_file(
                at(UNIT_DIR) / name, target.relocate(shipped_file(name)), 0o644, check=check
            )
        )
    if target.variant == "sftpgo":
        steps.append(_sftpgo_in_service_group(target, check))
    steps.append(_systemd_reload(target, steps, check))
    return steps


def _sftpgo_owner() -> str:
    return "sftpgo" if host.user_exists("sftpgo") else "root"


def _sftpgo_in_service_group(target: Target, check: bool) -> Step:
    """SFTPGo runs the hook as `sftpgo`: it must write the queue (the state folder's group)."""
    what = f"user sftpgo in group {target.service_user}"
    if not host.user_exists("sftpgo"):
        return Step(what, "ok", "no user sftpgo yet: install SFTPGo, then run this again")
    members = subprocess.run(
        ["id", "-nG", "sftpgo"], capture_output=True, text=True, check=False
    ).stdout.split()
    missing = target.service_user not in members
    if missing and not check:
        subprocess.run(["usermod", "-aG", target.service_user, "sftpgo"], check=True)
    return Step(what, "ok" if not missing else ("would change" if check else "changed"))


def _systemd_reload(target: Target, steps: list[Step], check: bool) -> Step:
    """systemctl daemon-reload when units changed, systemd runs and this is the real root."""
    units_changed = any(
        s.outcome != "ok" and s.what.startswith(str(target.at(UNIT_DIR))) for s in steps
    )
    if not units_changed:
        return Step("systemd units", "ok", "nothing to reload")
    if check or target.root != Path("/") or not host.systemd_runs():
        return Step(
            "systemd units", "ok", "not reloaded here: run `systemctl daemon-reload` under systemd"
        )
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    return Step("systemd units", "changed", "systemctl daemon-reload")


def next_commands(target: Target) -> list[str]:
    """What the operator runs after `powerview deploy` (systemd starts the services)."""
    units = [u.removesuffix(".service") for u in UNITS[target.variant] if "health.service" not in u]
    commands = [f"systemctl enable --now {' '.join(units)}"]
    if target.variant == "openssh":
        commands.insert(0, "sshd -t && systemctl reload ssh")
    return commands
