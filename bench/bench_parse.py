"""Parse and encode speed on one core, and peak memory, over a generated export.

    .venv/bin/python bench/bench_parse.py [--size-mb 110] [--repeat 3] [--json] [--telegraf]

Each measurement runs in its own child process, so that its peak RSS is its own
(read with wait4): (a) a plain `line.split('\\t')` + `float()` loop, the
baseline; (b) PowerView's parser alone; (c) parse + encode to line protocol;
(d) parse + encode + per-channel statistics, i.e. all the CPU work of
ingestion. (c) also runs on a file 4x smaller to show that memory does not
grow with the file. influxdb_client's `Point` is timed on a 20,000-row slice
against PowerView's encoder. `--telegraf` adds the comparison with Telegraf
(bench/telegraf.py). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    MB,
    ChildRun,
    export_of_size,
    machine,
    mvals,
    peak_rss_mb,
    print_json,
    run_child,
    set_quiet_wait,
    table,
)

DEFAULT_SIZE_MB = 110.0
RSS_LIMIT_MB = 150.0
GOAL_VALUES_PER_S = 2_000_000
# What ingestion uses: lines_per_write 5000 // 30 channels = 166 rows a batch.
DEFAULT_BATCH_ROWS = 5000 // 30

MODES = {
    "baseline": "(a) baseline: split('\\t') + float()",
    "parse": "(b) PowerView parse",
    "encode": "(c) parse + encode (line protocol)",
    "stats": "(d) parse + encode + stats (ingest CPU)",
}


# -- child side: one workload, one JSON line on stdout ------------------------


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_parse.py --child")
    parser.add_argument("mode", choices=[*MODES, "point", "idle"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--point-rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="write the line protocol here (e.g. /dev/null)")
    args = parser.parse_args(argv)
    if args.mode == "point":
        result = _point_vs_encoder(args.path, args.point_rows, args.batch_rows)
    elif args.mode == "idle":
        import powerview.lineprotocol
        import powerview.stats  # noqa: F401

        result = {"values": 0, "wall_s": 0.0, "cpu_s": 0.0}
    else:
        started, cpu_started = time.perf_counter(), time.process_time()
        values, lp_bytes = WORKLOADS[args.mode](args.path, args.batch_rows, args.out)
        result = {
            "values": values,
            "lp_bytes": lp_bytes,
            "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started,
        }
    result |= {"mode": args.mode, "peak_rss_mb": peak_rss_mb()}
    print_json(result)
    return 0


def _baseline(path: Path, batch_rows: int, out: Path | None) -> tuple[int, int]:
    """The plainest loop that reads every value as a float."""
    values = 0
    with path.open(encoding="utf-8") as stream:
        stream.readline()
        stream.readline()
        for line in stream:
            for text in line.split("\t")[1:]:
                float(text)
                values += 1
    return values, 0


def _parse(path: Path, batch_rows: int, out: Path | None) -> tuple[int, int]:
    from powerview.formats import ParseOptions, open_device_file

    values = 0
    with open_device_file(path, ParseOptions()) as device_file:
        for batch in device_file.batches(batch_rows):
            values += len(batch.values)
    return values, 0


def _encode(path: Path, batch_rows: int, out: Path | None, stats: bool = False) -> tuple[int, int]:
    from powerview.formats import ParseOptions, open_device_file
    from powerview.ingest import encode_file
    from powerview.stats import FileStats

    lp_bytes = 0
    sink = out.open("w", encoding="utf-8") if out is not None else None
    try:
        with open_device_file(path, ParseOptions()) as device_file:
            # The pipeline's own loop (ingest, parse and the golden tests use it).
            encoded = encode_file(device_file, "bench", batch_rows)
            file_stats = FileStats(len(device_file.header.columns))
            for batch, lines in encoded:
                if stats:
                    file_stats.add(batch)
                lp_bytes += len(lines)
                if sink is not None:
                    sink.write(lines)
    finally:
        if sink is not None:
            sink.close()
    return encoded.points, lp_bytes


def _stats(path: Path, batch_rows: int, out: Path | None) -> tuple[int, int]:
    return _encode(path, batch_rows, out, stats=True)


WORKLOADS = {"baseline": _baseline, "parse": _parse, "encode": _encode, "stats": _stats}


def _point_vs_encoder(path: Path, rows: int, batch_rows: int) -> dict[str, Any]:
    """The first `rows` rows, parsed once, then encoded by BatchEncoder and by Point."""
    from influxdb_client import Point, WritePrecision

    from powerview.formats import ParseOptions, open_device_file
    from powerview.lineprotocol import BatchEncoder
    from powerview.schema import MEASUREMENT, series_for

    batches = []
    with open_device_file(path, ParseOptions()) as device_file:
        series = series_for(device_file.header, "bench")
        seen = 0
        for batch in device_file.batches(batch_rows):
            batches.append(batch)
            seen += len(batch.epochs)
            if seen >= rows:
                break
    values = sum(len(b.values) for b in batches)

    started = time.process_time()
    encoder = BatchEncoder(series)
    ours = [encoder.encode(batch) for batch in batches]
    ours_cpu = time.process_time() - started

    started = time.process_time()
    theirs = []
    for batch in batches:
        width = batch.width
        lines = []
        for i, epoch in enumerate(batch.epochs):
            row = batch.values[i * width : (i + 1) * width]
            for s, text in zip(series, row, strict=True):
                if text is None:
                    continue
                point = Point(MEASUREMENT)
                for key, value in s.tags.items():
                    point.tag(key, value)
                point.field(s.field, float(text)).time(epoch, WritePrecision.S)
                lines.append(point.to_line_protocol())
        theirs.append("\n".join(lines) + "\n")
    point_cpu = time.process_time() - started

    # Same lines? Point writes 424.0 as `424` (still a float in line protocol).
    ours_lines = "".join(ours).splitlines()
    theirs_lines = "".join(theirs).splitlines()
    same = sum(
        a == b or _same_float_line(a, b) for a, b in zip(ours_lines, theirs_lines, strict=True)
    )
    return {
        "values": values,
        "encoder_cpu_s": ours_cpu,
        "point_cpu_s": point_cpu,
        "lines": len(ours_lines),
        "lines_equal": same,
        "wall_s": 0.0,
        "cpu_s": ours_cpu + point_cpu,
    }


def _same_float_line(ours: str, theirs: str) -> bool:
    head_a, _, rest_a = ours.rpartition("=")
    head_b, _, rest_b = theirs.rpartition("=")
    value_a, _, time_a = rest_a.partition(" ")
    value_b, _, time_b = rest_b.partition(" ")
    return head_a == head_b and time_a == time_b and float(value_a) == float(value_b)


# -- parent side --------------------------------------------------------------


def child(mode: str, path: Path, batch_rows: int, *extra: str) -> ChildRun:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(path)]
    run = run_child([*argv, "--batch-rows", str(batch_rows), *extra])
    if run.returncode != 0:
        raise SystemExit(f"child {mode} failed ({run.returncode}):\n{run.stderr}")
    return run


def best_of(mode: str, path: Path, batch_rows: int, repeat: int) -> dict[str, Any]:
    """Best of `repeat` runs: least wall time for values/s, least CPU time for values per
    CPU-second; peak RSS is the largest seen."""
    runs = []
    for n in range(repeat):
        print(f"  {mode} {n + 1}/{repeat}", file=sys.stderr, flush=True)
        runs.append(child(mode, path, batch_rows))
    report = dict(runs[0].report)
    report["wall_s"] = min(r.report["wall_s"] for r in runs)
    report["cpu_s"] = min(r.report["cpu_s"] for r in runs)
    report["peak_rss_mb"] = max(r.maxrss_mb for r in runs)
    report["values_per_s"] = report["values"] / report["wall_s"]
    report["values_per_cpu_s"] = report["values"] / report["cpu_s"]
    report["runs_wall_s"] = [round(r.report["wall_s"], 3) for r in runs]
    report["runs_cpu_s"] = [round(r.report["cpu_s"], 3) for r in runs]
    report["background_cores"] = sum(r.background_cores for r in runs) / len(runs)
    return report


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path, rows = export_of_size(args.size_mb)
    small, small_rows = export_of_size(args.size_mb / 4)
    size = path.stat().st_size
    print(f"file: {path} ({size / MB:.1f} MB, {rows:,} rows x 30)", file=sys.stderr)
    results: dict[str, Any] = {
        "machine": machine(),
        "file": {"path": str(path), "bytes": size, "rows": rows, "channels": 30},
        "batch_rows": args.batch_rows,
        "repeat": args.repeat,
        "modes": {},
    }
    for mode in MODES:
        results["modes"][mode] = best_of(mode, path, args.batch_rows, args.repeat)
    base = results["modes"]["baseline"]["values_per_cpu_s"]
    for report in results["modes"].values():
        report["vs_baseline"] = report["values_per_cpu_s"] / base

    print("  encode on the 4x smaller file, and idle interpreter", file=sys.stderr)
    quarter = child("encode", small, args.batch_rows)
    idle = child("idle", small, args.batch_rows)
    results["rss"] = [
        {
            "file_mb": small.stat().st_size / MB,
            "rows": small_rows,
            "peak_rss_mb": quarter.maxrss_mb,
        },
        {
            "file_mb": size / MB,
            "rows": rows,
            "peak_rss_mb": results["modes"]["encode"]["peak_rss_mb"],
        },
    ]
    results["idle_rss_mb"] = idle.maxrss_mb

    print(f"  Point vs BatchEncoder on {args.point_rows:,} rows", file=sys.stderr)
    point = child("point", path, args.batch_rows, "--point-rows", str(args.point_rows)).report
    point["encoder_values_per_cpu_s"] = point["values"] / point["encoder_cpu_s"]
    point["point_values_per_cpu_s"] = point["values"] / point["point_cpu_s"]
    point["ratio"] = point["point_cpu_s"] / point["encoder_cpu_s"]
    results["point"] = point

    if args.telegraf:
        from bench import telegraf

        results["telegraf"] = telegraf.compare(rows=args.telegraf_rows, repeat=args.repeat)

    encode = results["modes"]["encode"]
    rss = [r["peak_rss_mb"] for r in results["rss"]]
    results["goals"] = {
        "parse_encode_values_per_s": {
            "goal": f">= {GOAL_VALUES_PER_S:,} values/s on one core",
            "measured": round(encode["values_per_s"]),
            "met": encode["values_per_s"] >= GOAL_VALUES_PER_S,
        },
        "rss_flat": {
            "goal": f"peak RSS <= {RSS_LIMIT_MB:.0f} MB whatever the file size",
            "measured": [round(r, 1) for r in rss],
            "met": max(rss) <= RSS_LIMIT_MB and max(rss) - min(rss) <= 5,
        },
    }
    return results


def render(results: dict[str, Any]) -> str:
    out = []
    m, f = results["machine"], results["file"]
    out.append(
        f"PowerView parse benchmark, {m['date']}, {m['cpus']} CPUs ({m['cpu_model']}), "
        f"Python {m['python']}"
    )
    out.append(
        f"file: {f['bytes'] / MB:.1f} MB, {f['rows']:,} rows x {f['channels']} channels = "
        f"{f['rows'] * f['channels']:,} values; batches of {results['batch_rows']} rows; "
        f"best of {results['repeat']} runs (least wall, least CPU); others: cores used "
        "meanwhile by other processes"
    )
    out.append("")
    rows = []
    for mode, label in MODES.items():
        r = results["modes"][mode]
        rows.append(
            [
                label,
                f"{r['wall_s']:.2f}",
                f"{r['cpu_s']:.2f}",
                mvals(r["values_per_s"]),
                mvals(r["values_per_cpu_s"]),
                f"{r['vs_baseline']:.2f}x",
                f"{r['peak_rss_mb']:.1f}",
                f"{r['background_cores']:.2f}",
            ]
        )
    headers = [
        "measurement",
        "wall s",
        "CPU s",
        "values/s",
        "values/CPU-s",
        "vs (a)",
        "RSS MB",
        "others",
    ]
    out.append(table(headers, rows))
    out.append("")
    out.append("peak RSS of (c) parse + encode by file size (one child process each):")
    out.append(
        table(
            ["file MB", "rows", "peak RSS MB"],
            [
                [f"{r['file_mb']:.1f}", f"{r['rows']:,}", f"{r['peak_rss_mb']:.1f}"]
                for r in results["rss"]
            ],
        )
    )
    out.append(f"(an idle interpreter with powerview imported: {results['idle_rss_mb']:.1f} MB)")
    p = results["point"]
    out.append("")
    out.append(
        f"encoding {p['values']:,} values ({p['values'] // f['channels']:,} rows, {p['lines']:,} "
        "lines), parsed beforehand, CPU time:"
    )
    out.append(
        table(
            ["encoder", "CPU s", "values/CPU-s", "relative"],
            [
                [
                    "powerview BatchEncoder",
                    f"{p['encoder_cpu_s']:.3f}",
                    mvals(p["encoder_values_per_cpu_s"]),
                    "1x",
                ],
                [
                    "influxdb_client Point",
                    f"{p['point_cpu_s']:.3f}",
                    mvals(p["point_values_per_cpu_s"]),
                    f"{p['ratio']:.0f}x slower",
                ],
            ],
        )
    )
    out.append(f"(same lines: {p['lines_equal']:,} of {p['lines']:,}; Point writes 424.0 as 424)")
    if "telegraf" in results:
        from bench import telegraf

        out.append("")
        out.append(telegraf.render(results["telegraf"]))
    out.append("")
    out.append("goals:")
    for name, goal in results["goals"].items():
        out.append(
            f"  {'MET ' if goal['met'] else 'MISS'} {name}: {goal['goal']}; "
            f"measured {goal['measured']}"
        )
    if "telegraf" in results:
        for name, goal in results["telegraf"].get("goals", {}).items():
            out.append(
                f"  {'MET ' if goal['met'] else 'MISS'} {name}: {goal['goal']}; "
                f"measured {goal['measured']}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=DEFAULT_SIZE_MB, help="file size (10^6 B)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS)
    parser.add_argument("--point-rows", type=int, default=20_000)
    parser.add_argument("--telegraf", action="store_true", help="add the Telegraf comparison")
    parser.add_argument("--telegraf-rows", type=int, default=200_000)
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="wait up to S s for an idle machine per run"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    set_quiet_wait(args.quiet_wait)
    results = measure(args)
    if args.json:
        print_json(results)
    else:
        print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
