"""Start a service from its installed systemd unit file the way systemd would, without systemd.

CI machines and containers have no systemd as PID 1, so the deployment test
reads what the unit says — `ExecStart=`, `User=`, `Group=`, `Environment=`,
`EnvironmentFile=` (read as root, overriding `Environment=`, as systemd does),
`AmbientCapabilities=`, `UMask=` — and runs exactly that through `setpriv`.
The sandboxing settings (`ProtectSystem=` and the rest) are not emulated.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unit_entries(path: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, values of a repeated key in order."""
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def env_file_values(path: Path) -> dict[str, str]:
    """systemd's reading of an EnvironmentFile: KEY=VALUE lines, comments skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("\"'")
    return values


def unit_environment(entries: dict[str, list[str]]) -> dict[str, str]:
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
    for assignment in entries.get("Environment", []):
        for pair in shlex.split(assignment):
            key, _, value = pair.partition("=")
            env[key] = value
    for name in entries.get("EnvironmentFile", []):
        optional = name.startswith("-")
        path = Path(name.lstrip("-"))
        if optional and not path.exists():
            continue
        env.update(env_file_values(path))
    return env


def unit_command(entries: dict[str, list[str]]) -> list[str]:
    """ExecStart as the unit's user and group, with its ambient capabilities."""
    [exec_start] = entries["ExecStart"]
    user = entries["User"][0]
    group = entries.get("Group", [user])[0]
    caps = [
        "+" + cap.lower().removeprefix("cap_")
        for value in entries.get("AmbientCapabilities", [])
        for cap in value.split()
    ]
    argv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups"]
    if caps:
        argv += [f"--inh-caps={','.join(caps)}", f"--ambient-caps={','.join(caps)}"]
    return [*argv, "--", *shlex.split(exec_start)]


def launch(unit: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """Start the unit's service in its own session (stopped by its process group)."""
    entries = unit_entries(unit)
    umask = int(entries.get("UMask", ["0022"])[0], 8)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            unit_command(entries),
            env=unit_environment(entries),
            cwd="/",
            umask=umask,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
