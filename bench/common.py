"""Helpers shared by the benchmark scripts: generated files, child processes, tables.

Generated files are cached in `<tmp>/powerview-bench/` (never in the
repository), keyed by their size, so a second run skips the generation.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "bench"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "src") not in sys.path:
    sys.path.insert(1, str(REPO / "src"))

from tests.factories import Export, big_export  # noqa: E402

MB = 1_000_000
QUIET_WAIT_S = 60.0  # before each measured child: wait this long at most for an idle machine


def set_quiet_wait(seconds: float) -> None:
    global QUIET_WAIT_S
    QUIET_WAIT_S = seconds


def work_dir() -> Path:
    """Where generated inputs are cached: `$POWERVIEW_BENCH_DIR` or `<tmp>/powerview-bench`."""
    folder = Path(
        os.environ.get("POWERVIEW_BENCH_DIR", Path(tempfile.gettempdir()) / "powerview-bench")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_atomically(export: Export, path: Path) -> Path:
    """Write `export` to `path` through a temporary name (a killed run leaves no half file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    export.write(tmp)
    os.replace(tmp, path)
    return path


def bytes_per_row(width_sample_rows: int = 2000) -> float:
    """Average size of a data row of `big_export` (30 channels)."""
    export = big_export(width_sample_rows)
    header = sum(len(line) + 1 for line in export.header_lines())
    return (len(export.text()) - header) / width_sample_rows


def export_of_size(size_mb: float) -> tuple[Path, int]:
    """A plain 30-channel export of at least `size_mb` x 10^6 bytes (cached) and its rows."""
    rows = int(size_mb * MB / bytes_per_row()) + 1
    return export_of_rows(rows), rows


def export_of_rows(rows: int) -> Path:
    """A plain (V002, two header lines) 30-channel export of `rows` rows (cached)."""
    path = work_dir() / f"export-30ch-{rows}rows.tsv"
    if not path.is_file():
        started = time.perf_counter()
        print(f"generating {path.name} ...", end=" ", flush=True, file=sys.stderr)
        write_atomically(big_export(rows), path)
        size = path.stat().st_size / MB
        print(f"{size:.1f} MB in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


@dataclass
class ChildRun:
    """What one child process did: its own report (JSON on stdout) and its rusage."""

    report: dict[str, Any]
    wall_s: float  # seen from the parent, interpreter start included
    user_s: float
    sys_s: float
    maxrss_mb: float  # peak resident set of that child alone (wait4)
    returncode: int
    stderr: str
    background_cores: float  # CPU used meanwhile by other processes, in cores

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def run_child(argv: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run `argv`, wait for it with wait4 so that its rusage is its own (not a maximum
    over every child so far, as RUSAGE_CHILDREN would give), and parse its stdout as JSON
    when it is JSON."""
    if QUIET_WAIT_S > 0:
        wait_for_quiet(QUIET_WAIT_S)
    busy = system_busy_s()
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    out, err = _drain(process)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    others = system_busy_s() - busy - usage.ru_utime - usage.ru_stime
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    report: dict[str, Any] = {}
    if out.strip().startswith("{"):
        report = json.loads(out)
    return ChildRun(
        report=report,
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        maxrss_mb=usage.ru_maxrss * 1024 / MB,  # Linux: kilobytes
        returncode=process.returncode,
        stderr=err,
        background_cores=max(0.0, others) / wall,
    )


def _drain(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Read stdout and stderr to their end without waiting on the process (threads:
    either pipe may fill up first)."""
    import threading

    chunks: dict[str, str] = {}

    def read(name: str, stream: Any) -> None:
        chunks[name] = stream.read()
        stream.close()

    readers = [
        threading.Thread(target=read, args=(name, stream))
        for name, stream in (("out", process.stdout), ("err", process.stderr))
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    return chunks["out"], chunks["err"]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in 10^6 bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


_TICK = os.sysconf("SC_CLK_TCK")


def system_busy_s() -> float:
    """CPU seconds spent by every process on the machine so far (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def background_cores(seconds: float = 1.0) -> float:
    """CPU used by every process on the machine over `seconds`, in cores."""
    before = system_busy_s()
    time.sleep(seconds)
    return (system_busy_s() - before) / seconds


def wait_for_quiet(max_wait_s: float, threshold: float = 0.25) -> float:
    """Wait (up to `max_wait_s`) until the machine is nearly idle, so that other
    processes (a test suite, a build) disturb the next measurement as little as
    possible. Returns the load seen last, in cores."""
    deadline = time.monotonic() + max_wait_s
    load = background_cores()
    warned = False
    while load > threshold and time.monotonic() < deadline:
        if not warned:
            print(
                f"    (machine busy: {load:.2f} cores used by other processes; waiting up to "
                f"{max_wait_s:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            warned = True
        load = background_cores()
    return load


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` so far (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(row[i]) for row in rows if row[i] not in (None, ""))
        for i in range(len(headers))
    ]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) or (isinstance(value, str) and _looks_numeric(value))


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(".", "").replace("x", "").replace("%", "")
    return stripped.lstrip("-").isdigit()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def mvals(values: float) -> str:
    """Millions, two decimals: `4.12 M`."""
    return f"{values / 1e6:.2f} M"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
