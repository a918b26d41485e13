"""Campaign report figures: `build_report` time, each format's write time and peak RSS
on a campaign of 10 devices x 90 days x 30 channels (3.9 M points).

Input: 10 generated V003 exports (tests.factories: a three-phase master with 3
channels + 4 slaves x 6, a row every 10 minutes for 90 days, 12,960 rows each),
written with PowerView's own pipeline (`ingest_file` + `InfluxTarget`) into a
throwaway influxd. The report is then built in a fresh child process, so that its
peak RSS (`resource.getrusage`) is the report's alone, twice: first with the hourly
figures from the raw bucket (`aggregateWindow`), then after `downsample ensure` and
a backfill, from `<company>_1h`. Each format registered in `outputs.WRITERS` is
written by that child and timed.

    .venv/bin/python bench/bench_report.py [--tz Europe/Paris] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factories import Export

from bench.common import REPO  # noqa: F401  (puts src/ and tests/ on sys.path)
from powerview import settings as config
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, ingest_file
from powerview.provision.downsample import backfill, ensure_downsampling
from powerview.stack import find_influxd, throwaway_server

COMPANY = "benchco"
CAMPAIGN = "audit"
DEVICES = 10
DAYS = 90


def exports() -> list[Export]:
    return [
        Export(
            master_sn=f"0200{7000 + n:04d}",
            slaves=tuple(f"0400{7000 + 10 * n + i:04d}" for i in range(4)),
            rows=DAYS * 144,
            start=dt.datetime(2026, 6, 1),
            step_s=600,
            seed=n,
        )
        for n in range(DEVICES)
    ]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def child(url: str, token: str, org: str, zone: str, out: Path) -> dict[str, Any]:
    """In the child process: build the report, write every format, measure."""
    from powerview.campaign_report.figures import ReportOptions, build_report
    from powerview.campaign_report.flux import InfluxFlux
    from powerview.campaign_report.outputs import WRITERS

    client = make_client(url, token, org, 600)
    began = time.perf_counter()
    report = build_report(InfluxFlux(client), COMPANY, CAMPAIGN, options=ReportOptions(zone))
    figures: dict[str, Any] = {
        "build_report_s": round(time.perf_counter() - began, 2),
        "source": report.source,
        "power_channels": len(report.power),
        "load_curve_points": sum(len(p.load_curve) for p in report.power),
    }
    for fmt, writer in WRITERS.items():
        began = time.perf_counter()
        writer(report, out / f"report.{fmt}")
        figures[f"write_{fmt}_s"] = round(time.perf_counter() - began, 2)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    client.close()
    return figures


def measure_in_child(url: str, token: str, org: str, zone: str, out: Path) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", url, token, org, "--tz", zone, "--out", str(out)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(zone: str) -> dict[str, Any]:
    binary = find_influxd(None)
    if binary is None:
        raise SystemExit("no influxd: run `powerview stack install`")
    scratch = Path(tempfile.mkdtemp(prefix="pv-bench-report-"))
    try:
        return _measure(binary, scratch, zone)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # 3.9 M points of generated files


def _measure(binary: Path, scratch: Path, zone: str) -> dict[str, Any]:
    devices = exports()
    figures: dict[str, Any] = {
        "devices": DEVICES,
        "days": DAYS,
        "channels_per_device": devices[0].width,
        "points": DEVICES * DAYS * 144 * devices[0].width,
    }
    with throwaway_server(binary, scratch / "influxd") as (_, setup):
        client = make_client(setup.url, setup.token, setup.org, 600)
        root = scratch / "data"
        log(f"ingesting {DEVICES} devices x {DAYS} days ...")
        began = time.perf_counter()
        target = InfluxTarget(client, setup.org, 0)
        for export in devices:
            path = export.write(root / COMPANY / CAMPAIGN / export.master_sn / "T302_90d.tsv")
            report = ingest_file(path, target, IngestOptions(root))
            assert report.status == "success", report.error
        figures["ingest_s"] = round(time.perf_counter() - began, 1)
        log(f"  {figures['ingest_s']} s")
        log("report from the raw bucket ...")
        raw = measure_in_child(setup.url, setup.token, setup.org, zone, scratch / "raw")
        figures |= {f"raw_{k}": v for k, v in raw.items()}
        log(f"  {raw}")
        settings = config.load(
            influxdb_url=setup.url, influxdb_org=setup.org, influxdb_admin_token=setup.token
        )
        ensure_downsampling(client, settings, COMPANY)
        began = time.perf_counter()
        for _ in backfill(client, COMPANY):
            pass
        figures["backfill_s"] = round(time.perf_counter() - began, 1)
        log(f"  backfill {figures['backfill_s']} s")
        log("report from the _1h bucket ...")
        hourly = measure_in_child(setup.url, setup.token, setup.org, zone, scratch / "1h")
        figures |= {f"1h_{k}": v for k, v in hourly.items()}
        client.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tz", default="Europe/Paris")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("URL", "TOKEN", "ORG"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps(child(*args.child, args.tz, args.out)))
        return 0
    figures = measure(args.tz)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
