"""Upload → queryable in InfluxDB: p50 and p95 over 100 uploads of a daily file.

    sudo .venv/bin/python bench/bench_upload_latency.py [--uploads 100] [--settle S] [--json]

A daily file is 145 rows x 30 channels (a three-phase master with 3 channels
and 4 slaves x 6, one row every 600 s: 4,350 values), each upload with a
master serial of its own so that its points can be counted alone. Uploads go
one after another through a real OpenSSH server (internal-sftp, the company
chrooted, as in tests/e2e) with paramiko, on one connection. Two paths:

- watcher: `powerview watch` (inotify) + `powerview worker`, as a plain
  OpenSSH deployment runs them;
- hook: no watcher; after each upload `powerview hook` runs the way SFTPGo
  runs it (a cleared environment holding exactly the SFTPGO_ACTION*
  variables of SFTPGo's command-hook contract, plus PATH and the PowerView settings
  of `command.env`), then the same worker.

Latency runs from the moment the client's close() returned (the upload is
complete) to the moment a Flux count of the file's device_master_sn returns
all 4,350 points, polled every 20 ms. The settle time (POWERVIEW_SETTLE_S,
the wait after the last write before a file is trusted to be complete) is
the production default unless --settle is given. Needs root (users, chroot,
bind mounts) and Debian's openssh-server (`make apt`); cleans up its users,
mounts and processes on any exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from influxdb_client import InfluxDBClient
from tests.e2e.sshd import (
    POWERVIEW,
    Company,
    ParamikoClient,
    PowerViewProcesses,
    SftpServer,
    count_points,
)
from tests.factories import Export

from powerview import settings as config
from powerview import stack

ROWS, STEP_S = 145, 600
CAMPAIGN = {"watcher": "bench-watch", "hook": "bench-hook"}


def daily_file(index: int) -> tuple[str, bytes]:
    """(master serial, content) of one daily V002 export, 145 rows x 30 channels."""
    serial = f"05{index:06d}"
    export = Export(
        master_sn=serial,
        slaves=tuple(f"06{index:04d}{s:02d}" for s in range(4)),
        rows=ROWS,
        block=False,
        tag="MV_T302_V002",
        step_s=STEP_S,
        seed=index,
    )
    assert export.width == 30
    return serial, export.text().encode()


@dataclass
class Run:
    path: str
    latencies_s: list[float] = field(default_factory=list)
    uploads_s: list[float] = field(default_factory=list)
    hooks_s: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            return {
                "p50": round(cuts[49], 3),
                "p95": round(cuts[94], 3),
                "max": round(max(values), 3),
                "mean": round(statistics.fmean(values), 3),
            }

        return {
            "path": self.path,
            "uploads": len(self.latencies_s),
            "latency_s": stats(self.latencies_s),
            "upload_s": stats(self.uploads_s),
            "hook_s": stats(self.hooks_s),
        }


def run_hook(
    processes: PowerViewProcesses,
    action: str,
    company: Company,
    relative: str,
    size: int = 0,
    elapsed_ms: int = 0,
) -> None:
    """Run `powerview hook` as SFTPGo does for `action` on `<company>/<relative>`."""
    env = {
        **sftpgo_hook_env(action, company, relative, size, elapsed_ms),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        **processes.env,  # SFTPGo's command.env: the PowerView settings
    }
    hook = subprocess.run(
        [str(POWERVIEW), "hook"],
        env=env,
        cwd=processes.state_dir.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,  # SFTPGo's default hook timeout
    )
    if hook.returncode != 0:
        raise RuntimeError(f"powerview hook exited {hook.returncode}: {hook.stderr}")


def sftpgo_hook_env(
    action: str, company: Company, relative: str, size: int, elapsed_ms: int
) -> dict[str, str]:
    """The variables SFTPGo gives its command hook (SFTPGo's documented command-hook contract)."""
    env = {
        "SFTPGO_ACTION": action,
        "SFTPGO_ACTION_USERNAME": company.name,
        "SFTPGO_ACTION_PATH": str(company.folder / relative),
        "SFTPGO_ACTION_TARGET": "",
        "SFTPGO_ACTION_VIRTUAL_PATH": f"/{relative}",  # the user's home: the company folder
        "SFTPGO_ACTION_VIRTUAL_TARGET": "",
        "SFTPGO_ACTION_STATUS": "1",
        "SFTPGO_ACTION_FILE_SIZE": str(size),
        "SFTPGO_ACTION_ELAPSED": str(elapsed_ms),
        "SFTPGO_ACTION_FS_PROVIDER": "0",
        "SFTPGO_ACTION_PROTOCOL": "SFTP",
        "SFTPGO_ACTION_IP": "127.0.0.1",
        "SFTPGO_ACTION_SESSION_ID": secrets.token_hex(16),
        "SFTPGO_ACTION_ROLE": "",
        "SFTPGO_ACTION_TIMESTAMP": str(time.time_ns()),
        "SFTPGO_ACTION_OPEN_FLAGS": str(os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        "SFTPGO_ACTION_SSH_CMD": "",
        "SFTPGO_ACTION_BUCKET": "",
        "SFTPGO_ACTION_ENDPOINT": "",
    }
    if action != "upload":  # STATUS and OPEN_FLAGS come with transfers only
        del env["SFTPGO_ACTION_STATUS"], env["SFTPGO_ACTION_OPEN_FLAGS"]
    return env


def measure(
    path: str,
    server: SftpServer,
    company: Company,
    processes: PowerViewProcesses,
    influx: InfluxDBClient,
    uploads: int,
    first_index: int,
    timeout_s: float = 60.0,
) -> Run:
    run = Run(path)
    campaign = CAMPAIGN[path]
    client = ParamikoClient(server, company)
    try:
        client.mkdir(f"{company.home}/{campaign}")
        if path == "hook":
            run_hook(processes, "mkdir", company, campaign)
        # The campaign's provisioning job, then two warm-up uploads (bucket
        # creation, the pool processes' first imports), are not measured.
        wait_until(lambda: processes.counts()["done"] >= 1, 30, "the provisioning job")
        for i in range(first_index, first_index + uploads + 2):
            serial, data = daily_file(i)
            name = f"T302_{serial}_day.tsv"
            client.mkdir(f"{company.home}/{campaign}/{serial}")
            started = time.perf_counter()
            client.put(f"{company.home}/{campaign}/{serial}/{name}", data)
            uploaded = time.perf_counter()
            if path == "hook":
                elapsed_ms = round((uploaded - started) * 1000)
                relative = f"{campaign}/{serial}/{name}"
                run_hook(processes, "upload", company, relative, len(data), elapsed_ms)
                hooked = time.perf_counter()
            expected = ROWS * 30
            deadline = uploaded + timeout_s
            while count_points(influx, company.name, device_master_sn=serial) < expected:
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"upload {i} not queryable in {timeout_s} s\n{processes.logs()}"
                    )
                time.sleep(0.02)
            queryable = time.perf_counter()
            if i < first_index + 2:
                continue  # warm-up
            run.latencies_s.append(queryable - uploaded)
            run.uploads_s.append(uploaded - started)
            if path == "hook":
                run.hooks_s.append(hooked - uploaded)
            print(
                f"  {path} {len(run.latencies_s):3d}/{uploads}: {queryable - uploaded:6.3f} s",
                end="\r",
                file=sys.stderr,
                flush=True,
            )
        print(file=sys.stderr)
    finally:
        client.close()
    return run


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def interrupted_as_exception() -> Iterator[None]:
    """SIGINT (even when inherited as ignored), SIGTERM and SIGHUP unwind like Ctrl-C,
    so every cleanup below runs."""

    def raise_interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, raise_interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help="POWERVIEW_SETTLE_S for the worker and watcher [default: PowerView's default]",
    )
    parser.add_argument("--paths", default="watcher,hook", help="watcher, hook or both")
    parser.add_argument("--json", action="store_true", help="Also print the figures as JSON.")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (system users, chroot, bind mounts)")
    default_settle = config.Settings.model_fields["settle_s"].default
    settle = args.settle if args.settle is not None else default_settle
    binary = stack.find_influxd(None)
    if binary is None:
        parser.error("no influxd: run `powerview stack install` (make setup does)")

    runs: list[Run] = []
    with interrupted_as_exception(), ExitStack() as cleanup:
        work = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pv-latency-")))
        _, setup = cleanup.enter_context(stack.throwaway_server(binary, work / "influxd"))
        server = SftpServer()
        cleanup.callback(_report_problems, "sshd", server.close)
        server.start()
        data_root = server.new_data_root()
        company = server.add_company(data_root)
        influx = cleanup.enter_context(
            InfluxDBClient(url=setup.url, token=setup.token, org=setup.org, timeout=30_000)
        )
        for index, path in enumerate(p.strip() for p in args.paths.split(",")):
            processes = PowerViewProcesses.create(
                data_root,
                work / path,
                setup.url,
                setup.org,
                setup.token,
                f"meta_{path}",
                settle_s=settle,
                scan_interval_s=3600.0,
            )
            try:
                if path == "watcher":
                    processes.start_watch()
                elif path != "hook":
                    parser.error(f"unknown path {path!r}")
                processes.start_worker()
                runs.append(
                    measure(
                        path,
                        server,
                        company,
                        processes,
                        influx,
                        args.uploads,
                        first_index=index * 10_000,
                    )
                )
            finally:
                _report_problems(f"powerview ({path})", processes.stop)

    print(f"\nupload → queryable, {args.uploads} uploads of 145 rows x 30 channels,")
    print(f"POWERVIEW_SETTLE_S={settle:g}, worker concurrency 2, one upload at a time\n")
    header = f"{'path':<8} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'mean s':>7}"
    header += f"   {'upload p50':>10}   {'hook p50/p95':>12}"
    print(header)
    print("-" * len(header))
    summaries = [run.summary() for run in runs]
    for summary in summaries:
        lat, up, hook = summary["latency_s"], summary["upload_s"], summary["hook_s"]
        hook_text = f"{hook['p50']:.3f}/{hook['p95']:.3f}" if hook else "-"
        print(
            f"{summary['path']:<8} {lat['p50']:7.3f} {lat['p95']:7.3f} {lat['max']:7.3f}"
            f" {lat['mean']:7.3f}   {up['p50']:10.3f}   {hook_text:>12}"
        )
    if args.json:
        print(json.dumps({"settle_s": settle, "runs": summaries}, indent=2))
    return 0


def _report_problems(what: str, close: Callable[[], list[str]]) -> None:
    problems = close()
    if problems:
        print(f"cleanup of {what}: {problems}", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; users, mounts and processes removed", file=sys.stderr)
        sys.exit(130)
