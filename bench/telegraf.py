"""PowerView against Telegraf on the same export: values per CPU-second and peak memory.

    .venv/bin/python bench/telegraf.py [--rows 200000] [--repeat 3] [--json]

Telegraf v1.37.2 (MIT, Go) is built once from its Go module into
`~/.cache/powerview/telegraf/v1.37.2/bin/telegraf` with only the plugins used
here (`custom` build tag). Its csv parser reads the plain V002 export (two
header lines skipped, column names and float types given, timestamps
`02/01/06 15:04:05` in UTC) through `inputs.file`, and its influx serializer
writes to `/dev/null` through `outputs.file`, with `telegraf --once`.
PowerView parses and encodes the same file to line protocol and writes it to
`/dev/null` too. Both are whole processes, measured with wait4: wall time,
user + system CPU time (startup included) and peak RSS.

Telegraf's default `metric_buffer_limit` (10,000) drops metrics when a file
holds more rows than that; the benchmark sets it above the row count, checks
once with a real output file that every row came out, and shows what the
default does.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BENCH_DIR,
    MB,
    ChildRun,
    export_of_rows,
    machine,
    mvals,
    print_json,
    run_child,
    set_quiet_wait,
    table,
    work_dir,
)
from powerview.stack import cache_dir

VERSION = "v1.37.2"
MODULE = "github.com/influxdata/telegraf/cmd/telegraf"
BUILD_TAGS = "custom,inputs.file,parsers.csv,outputs.file,serializers.influx"
DEFAULT_BUFFER_LIMIT = 10_000  # Telegraf's own default
GOAL_CPU_RATIO = 1.2
GOAL_MEMORY_FRACTION = 1 / 5
CHANNELS = 30


def binary_path() -> Path:
    return cache_dir() / "telegraf" / VERSION / "bin" / "telegraf"


def build() -> tuple[Path | None, str]:
    """The Telegraf binary, built once; (None, why) when it cannot be built here."""
    binary = binary_path()
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary, f"cached at {binary}"
    go = shutil.which("go")
    if go is None:
        return None, "no `go` on PATH: Telegraf cannot be built here"
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(binary.parent)}
    env.setdefault("GOFLAGS", "-buildvcs=false")
    command = [go, "install", "-tags", BUILD_TAGS, f"{MODULE}@{VERSION}"]
    print(f"building Telegraf {VERSION}: {' '.join(command)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = subprocess.run(
        command, env=env, cwd=work_dir(), capture_output=True, text=True, check=False
    )
    took = time.perf_counter() - started
    if result.returncode != 0 or not binary.is_file():
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        return None, f"`go install` failed (status {result.returncode}, {took:.0f} s):\n{tail}"
    return binary, f"built in {took:.0f} s into {binary}"


def write_config(
    export: Path, output: Path | str, buffer_limit: int | None, folder: Path, name: str
) -> Path:
    """A telegraf.conf reading `export` once and writing influx line protocol to `output`."""
    names = ["time"] + [f"ch{i:02d}" for i in range(1, CHANNELS + 1)]
    types = ["string"] + ["float"] * CHANNELS
    limit = "" if buffer_limit is None else f"  metric_buffer_limit = {buffer_limit}\n"
    text = (
        "[agent]\n"
        "  omit_hostname = true\n"
        "  skip_processors_after_aggregators = true\n"
        f"{limit}"
        "\n[[inputs.file]]\n"
        f"  files = [{_toml(str(export))}]\n"
        '  data_format = "csv"\n'
        '  csv_delimiter = "\\t"\n'
        "  csv_skip_rows = 2  # the serial line and the label line\n"
        f"  csv_column_names = [{', '.join(_toml(n) for n in names)}]\n"
        f"  csv_column_types = [{', '.join(_toml(t) for t in types)}]\n"
        '  csv_timestamp_column = "time"\n'
        '  csv_timestamp_format = "02/01/06 15:04:05"\n'
        '  csv_timezone = "UTC"\n'
        '  name_override = "electrical"\n'
        "\n[[outputs.file]]\n"
        f"  files = [{_toml(str(output))}]\n"
        '  data_format = "influx"\n'
    )
    path = folder / f"{name}.conf"
    path.write_text(text)
    return path


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_telegraf(binary: Path, config: Path) -> ChildRun:
    run = run_child([str(binary), "--once", "--config", str(config)])
    if run.returncode != 0:
        raise RuntimeError(f"telegraf exited with {run.returncode}:\n{run.stderr[-2000:]}")
    return run


def count_output(path: Path) -> tuple[int, int]:
    """Lines and field values in a line-protocol file written by Telegraf."""
    lines = values = 0
    with path.open() as stream:
        for line in stream:
            lines += 1
            values += line.split(" ")[1].count("=")
    return lines, values


def dropped(stderr: str) -> int:
    return sum(int(n) for n in re.findall(r"(\d+) metrics have been dropped", stderr))


def run_powerview(export: Path, repeat: int) -> list[ChildRun]:
    """PowerView parse + encode of `export`, written to /dev/null, one process a run."""
    script = BENCH_DIR / "bench_parse.py"
    runs = []
    for n in range(repeat):
        print(f"  powerview {n + 1}/{repeat}", file=sys.stderr, flush=True)
        run = run_child(
            [sys.executable, str(script), "--child", "encode", str(export), "--out", os.devnull]
        )
        if run.returncode != 0:
            raise RuntimeError(f"powerview child failed:\n{run.stderr}")
        runs.append(run)
    return runs


def summarize(runs: list[ChildRun], values: int) -> dict[str, Any]:
    """Best of `runs`: least wall for values/s, least CPU (user + system) for values per
    CPU-second; the largest peak RSS seen."""
    best = min(runs, key=lambda r: r.cpu_s)
    wall = min(r.wall_s for r in runs)
    return {
        "values": values,
        "wall_s": wall,
        "user_s": best.user_s,
        "sys_s": best.sys_s,
        "cpu_s": best.cpu_s,
        "values_per_s": values / wall,
        "values_per_cpu_s": values / best.cpu_s,
        "cores_used": best.cpu_s / best.wall_s,
        "peak_rss_mb": max(r.maxrss_mb for r in runs),
        "runs_wall_s": [round(r.wall_s, 3) for r in runs],
        "runs_cpu_s": [round(r.cpu_s, 3) for r in runs],
        "background_cores": sum(r.background_cores for r in runs) / len(runs),
    }


def compare(rows: int = 200_000, repeat: int = 3) -> dict[str, Any]:
    export = export_of_rows(rows)
    values = rows * CHANNELS
    result: dict[str, Any] = {
        "machine": machine(),
        "file": {"path": str(export), "bytes": export.stat().st_size, "rows": rows},
        "telegraf_version": VERSION,
        "repeat": repeat,
    }
    runs = run_powerview(export, repeat)
    result["powerview"] = summarize(runs, values)
    result["powerview"]["output_bytes"] = runs[0].report.get("lp_bytes")
    if runs[0].report.get("values") != values:
        raise RuntimeError(f"PowerView encoded {runs[0].report.get('values')} of {values} values")

    binary, how = build()
    result["telegraf_build"] = how
    if binary is None:
        result["telegraf"] = None
        return result
    folder = work_dir() / "telegraf"
    folder.mkdir(exist_ok=True)
    limit = rows + 10_000

    # Correctness first: every row out, with a real output file; then the default limit.
    out = folder / "out.lp"
    for buffer_limit, key in ((limit, "check"), (None, "default_limit")):
        out.unlink(missing_ok=True)
        config = write_config(export, out, buffer_limit, folder, key)
        print(f"  telegraf {key}", file=sys.stderr, flush=True)
        run = run_telegraf(binary, config)
        lines, written = count_output(out)
        output_bytes = out.stat().st_size
        result[key] = {
            "output_bytes": output_bytes,
            "metric_buffer_limit": buffer_limit or DEFAULT_BUFFER_LIMIT,
            "rows_written": lines,
            "values_written": written,
            "dropped_logged": dropped(run.stderr),
            "exit_status": run.returncode,
        }
    out.unlink(missing_ok=True)
    if result["check"]["values_written"] != values:
        raise RuntimeError(f"Telegraf wrote {result['check']['values_written']} of {values}")

    config = write_config(export, os.devnull, limit, folder, "devnull")
    result["config"] = str(config)
    timed = []
    for n in range(repeat):
        print(f"  telegraf {n + 1}/{repeat}", file=sys.stderr, flush=True)
        timed.append(run_telegraf(binary, config))
    result["telegraf"] = summarize(timed, values)

    ours, theirs = result["powerview"], result["telegraf"]
    cpu_ratio = ours["values_per_cpu_s"] / theirs["values_per_cpu_s"]
    memory_fraction = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    result["cpu_ratio"] = cpu_ratio
    result["memory_fraction"] = memory_fraction
    result["goals"] = {
        "vs_telegraf_cpu": {
            "goal": f">= {GOAL_CPU_RATIO}x Telegraf's values per CPU-second",
            "measured": f"{cpu_ratio:.2f}x",
            "met": cpu_ratio >= GOAL_CPU_RATIO,
        },
        "vs_telegraf_memory": {
            "goal": "<= 1/5 of Telegraf's peak RSS",
            "measured": f"1/{1 / memory_fraction:.1f}",
            "met": memory_fraction <= GOAL_MEMORY_FRACTION,
        },
    }
    return result


def render(result: dict[str, Any]) -> str:
    f = result["file"]
    out = [
        f"Telegraf {result['telegraf_version']} vs PowerView: {f['rows']:,} rows x {CHANNELS} "
        f"channels ({f['bytes'] / MB:.1f} MB), output to /dev/null, best of "
        f"{result['repeat']} (least wall, least CPU), whole processes (wait4);",
        "cores: CPU s / wall s; others: cores used meanwhile by other processes",
        f"telegraf: {result['telegraf_build']}",
    ]
    rows = []
    for label, key in (
        ("PowerView parse + encode -> /dev/null", "powerview"),
        ("Telegraf csv + influx (--once)", "telegraf"),
    ):
        r = result.get(key)
        if r is None:
            rows.append([label, "-", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                label,
                f"{r['wall_s']:.2f}",
                f"{r['cpu_s']:.2f}",
                f"{r['cores_used']:.2f}",
                mvals(r["values_per_s"]),
                mvals(r["values_per_cpu_s"]),
                f"{r['peak_rss_mb']:.0f}",
                f"{r['background_cores']:.2f}",
            ]
        )
    headers = [
        "process",
        "wall s",
        "CPU s",
        "cores",
        "values/s",
        "values/CPU-s",
        "RSS MB",
        "others",
    ]
    out.append(table(headers, rows))
    if result.get("telegraf") is None:
        return "\n".join(out)
    out.append(
        f"PowerView / Telegraf: {result['cpu_ratio']:.2f}x the values per CPU-second, "
        f"1/{1 / result['memory_fraction']:.1f} of the memory"
    )
    check, default = result["check"], result["default_limit"]
    ours_bytes = result["powerview"].get("output_bytes") or 0
    out.append(
        f"output: PowerView {ours_bytes / MB:,.0f} MB of line protocol (the schema: one line per "
        f"value, with tags), Telegraf {check['output_bytes'] / MB:,.0f} MB (one wide line per row)"
    )
    out.append(
        f"checked: with metric_buffer_limit {check['metric_buffer_limit']:,} Telegraf wrote "
        f"{check['rows_written']:,} rows / {check['values_written']:,} values (all); with its "
        f"default ({default['metric_buffer_limit']:,}) only {default['rows_written']:,} rows "
        f"({100 * (1 - default['rows_written'] / f['rows']):.0f} % dropped; exit status "
        f"{default['exit_status']}, {default['dropped_logged']:,} drops reported as W! log lines)"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="wait up to S s for an idle machine per run"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    set_quiet_wait(args.quiet_wait)
    result = compare(args.rows, args.repeat)
    if args.json:
        print_json(result)
        return 0
    print(render(result))
    for name, goal in result.get("goals", {}).items():
        state = "MET " if goal["met"] else "MISS"
        print(f"  {state} {name}: {goal['goal']}; measured {goal['measured']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
