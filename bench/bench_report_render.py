"""Campaign report drawing: time and peak memory of each writer on a large campaign.

Input: a CampaignReport of `--devices` devices x `--days` days x `--channels` power
channels (tests.report.factory: hourly load curves, so 2,160 points per channel for 90
days, the size the load curve has when read from the _1h bucket; 900 source files),
built once and pickled into the bench folder. Each writer then runs in a fresh child
process (wait4: its own peak RSS), `--repeat` times, best kept; a child that only
loads the model gives the baseline memory. The figures computed in InfluxDB are not
part of this: it measures the drawing alone (charts, HTML, PDF layout, XLSX).

    .venv/bin/python bench/bench_report_render.py [--devices 10 --days 90 --channels 30]
        [--formats html,pdf,xlsx] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.report.factory import build_report

from bench.common import (
    MB,
    machine,
    peak_rss_mb,
    print_json,
    run_child,
    set_quiet_wait,
    table,
    work_dir,
)


def model_path(devices: int, days: int, channels: int) -> Path:
    path = work_dir() / f"report-model-{devices}x{days}x{channels}.pickle"
    if not path.exists():
        print(f"building the model ({devices} x {days} x {channels})...", file=sys.stderr)
        report = build_report(devices, days, channels, hostile=False, interval_s=3600)
        path.write_bytes(pickle.dumps(report))
    return path


def child(model: Path, output_format: str) -> None:
    """Load the model, write one format, print what it took as JSON."""
    from powerview.campaign_report.outputs import WRITERS

    report = pickle.loads(model.read_bytes())  # noqa: S301 - our own file, just written
    baseline = peak_rss_mb()
    figures: dict[str, Any] = {"model_rss_mb": baseline}
    if output_format != "none":
        out = model.parent / f"report-bench.{output_format}"
        started = time.perf_counter()
        WRITERS[output_format](report, out)
        figures["write_s"] = time.perf_counter() - started
        figures["bytes"] = out.stat().st_size
    figures["peak_rss_mb"] = peak_rss_mb()
    print_json(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--channels", type=int, default=30)
    parser.add_argument("--formats", default="html,pdf,xlsx")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.child)
        return
    set_quiet_wait(args.quiet_wait)
    model = model_path(args.devices, args.days, args.channels)
    results: dict[str, Any] = {}
    for output_format in ["none", *args.formats.split(",")]:
        runs = []
        for _ in range(args.repeat):
            print(f"  {output_format}...", file=sys.stderr, flush=True)
            run = run_child([sys.executable, __file__, "--child", output_format,
                             "--model", str(model)])  # fmt: skip
            if run.returncode != 0:
                sys.exit(f"{output_format}: exit {run.returncode}\n{run.stderr[-3000:]}")
            runs.append(run)
        best = min(runs, key=lambda r: r.report.get("write_s", r.wall_s))
        results[output_format] = {**best.report, "wall_s": best.wall_s,
                                  "maxrss_mb": best.maxrss_mb,
                                  "others_cores": best.background_cores}  # fmt: skip
    size = {"devices": args.devices, "days": args.days, "channels": args.channels}
    if args.json:
        print_json({"machine": machine(), "size": size, "results": results})
        return
    print(f"campaign: {args.devices} devices x {args.days} days x {args.channels} channels "
          f"(hourly load curve), best of {args.repeat}")  # fmt: skip
    rows = [
        [name, r.get("write_s"), r["wall_s"], r.get("bytes", 0) / MB, r["maxrss_mb"],
         r["others_cores"]]
        for name, r in results.items()
    ]  # fmt: skip
    print(table(["format", "write s", "child wall s", "output MB", "peak RSS MB", "others"],
                rows))  # fmt: skip


if __name__ == "__main__":
    main()
