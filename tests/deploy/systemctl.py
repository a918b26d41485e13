"""The deployment test's `systemctl`: starts what the guide enables, from the installed units.

Put first on PATH by tests/deploy/test_deployment.py (as `systemctl`), so the
guide's `systemctl enable --now ...` and `systemctl reload ssh` run as written.
A service is started by tests/deploy/units.py from
`<root>/etc/systemd/system/<name>.service`; `ssh` is Debian's sshd with a main
configuration that stands in for /etc/ssh/sshd_config (the test's port and
host key, then `<root>/etc/ssh/sshd_config.d/*.conf` and the rest of
`<root>/etc/ssh/sshd_config`). Timers are not run: the guide's last step runs
the health check itself. The context (root, run folder, sshd port and key)
comes from the JSON file named by PV_DEPLOY_CONTEXT; pids go to the run folder,
where the test finds them to stop everything.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.deploy.units import launch, unit_entries

SSHD = "/usr/sbin/sshd"
# Set in the stand-in main configuration; a line of the copied Debian one may not repeat them.
SSHD_OWN = ("include", "port", "listenaddress", "hostkey", "pidfile", "usepam")


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _wait(what: str, check: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"systemctl (test): {what} not ready after {timeout_s:.0f} s")
        time.sleep(0.1)


def _influx_healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=2) as reply:
            return bool(json.loads(reply.read()).get("status") == "pass")
    except (OSError, ValueError):
        return False


def start_unit(ctx: dict[str, Any], name: str) -> None:
    run = Path(ctx["run_dir"])
    pid_file = run / f"{name}.pid"
    if _alive(pid_file):
        return
    unit = Path(ctx["root"]) / "etc/systemd/system" / name
    if not unit.is_file():
        raise SystemExit(f"systemctl (test): Unit {name} not found ({unit})")
    process = launch(unit, run / f"{name}.log")
    pid_file.write_text(f"{process.pid}\n")
    [exec_start] = unit_entries(unit)["ExecStart"]
    argv = exec_start.split()
    if "--http-bind-address" in argv:  # influxd: the next steps need it answering
        address = argv[argv.index("--http-bind-address") + 1]
        _wait(f"{name} at {address}", lambda: process.poll() is None and _influx_healthy(address))
    time.sleep(0.5)
    if process.poll() is not None:
        log = (run / f"{name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"systemctl (test): {name} exited {process.returncode}\n{log}")


def sshd_config(ctx: dict[str, Any]) -> str:
    root = Path(ctx["root"])
    lines = [
        f"Port {ctx['sshd_port']}",
        "ListenAddress 127.0.0.1",
        f"HostKey {ctx['host_key']}",
        f"PidFile {ctx['run_dir']}/sshd.pid",
        "UsePAM no",  # the test's stand-in has no PAM session; accounts are key-only anyway
        f"Include {root}/etc/ssh/sshd_config.d/*.conf",
    ]
    for line in (root / "etc/ssh/sshd_config").read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#") and words[0].lower() not in SSHD_OWN:
            lines.append(line)
    return "\n".join(lines) + "\n"


def start_sshd(ctx: dict[str, Any]) -> None:
    run = Path(ctx["run_dir"])
    config = run / "sshd_config"
    config.write_text(sshd_config(ctx))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    checked = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    if checked.returncode != 0:  # Debian's ExecReload: a wrong configuration is not loaded
        raise SystemExit(f"systemctl (test): sshd -t refused the configuration: {checked.stderr}")
    pid_file = run / "ssh.service.pid"
    if _alive(pid_file):
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        time.sleep(0.2)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-E", str(run / "sshd.log"), "-f", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pid_file.write_text(f"{process.pid}\n")

    def banner() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"systemctl (test): sshd exited {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", ctx["sshd_port"]), timeout=1) as sock:
                return sock.recv(16).startswith(b"SSH-2.0-")
        except OSError:
            return False

    _wait("sshd", banner)


def main(argv: list[str]) -> int:
    ctx = json.loads(Path(os.environ["PV_DEPLOY_CONTEXT"]).read_text())
    verb, *rest = argv
    with (Path(ctx["run_dir"]) / "systemctl.calls").open("a") as calls:
        calls.write(" ".join(argv) + "\n")
    if verb == "daemon-reload":
        return 0
    if verb == "enable" and "--now" not in rest:
        return 0
    if verb not in ("enable", "start", "restart", "reload"):
        print(f"systemctl (test): {verb} is not emulated", file=sys.stderr)
        return 2
    for name in (arg for arg in rest if not arg.startswith("-")):
        if name.removesuffix(".service") in ("ssh", "sshd"):
            start_sshd(ctx)
        elif name.endswith(".timer"):
            print(f"systemctl (test): timer {name} not run", file=sys.stderr)
        else:
            start_unit(ctx, name if name.endswith(".service") else f"{name}.service")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
