"""Downsampling figures: task run time on a year of one device, and the query time of a
one-year panel from the raw bucket vs the 1d bucket.

Input: one year of 10-minute rows of a 30-channel device (tests.factories: a
3-phase master with 3 channels + 4 slaves x 6; 52,560 rows, 1.58 M points),
written with PowerView's writer (`ingest_file` + `InfluxTarget`) into a
throwaway influxd. Then, through InfluxDB's task API (manual runs, as the tests
do): the 1h task over the whole year (lookback 366 d), the 1d and 1w tasks
after it, and the 1h task with the default 7-day lookback (its steady-state
cost every hour). Finally the campaign dashboard's power panel over 365 days,
once on the raw bucket and once on the 1d bucket it picks, best of `--repeat`.

    .venv/bin/python bench/bench_downsample.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from influxdb_client.rest import ApiException
from tests.factories import Export

from bench.common import REPO  # noqa: F401  (puts src/ and tests/ on sys.path)
from powerview import settings as config
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, ingest_file
from powerview.provision.dashboard import build_dashboard
from powerview.provision.downsample import LEVELS, ensure_downsampling
from powerview.stack import find_influxd, throwaway_server

COMPANY = "benchco"
CAMPAIGN = "year"
SCHEDULED = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)  # the tasks' "now": after the year
YEAR = Export(
    master_sn="02001171",
    slaves=tuple(f"0400{i:04d}" for i in range(466, 470)),
    rows=365 * 144,
    start=dt.datetime(2025, 12, 1),
    step_s=600,
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_task(client: Any, task_id: str) -> float:
    """Run a task manually, wait for it; its duration as InfluxDB recorded it (s)."""
    api = client.tasks_api()
    run = api.run_manually(task_id, scheduled_for=SCHEDULED)
    while run.status not in ("success", "failed", "canceled"):
        time.sleep(0.2)
        try:
            run = api.get_run(task_id, str(run.id))
        except ApiException as exc:  # 404 while the run moves from the queue to the run log
            if exc.status != 404:
                raise
    if run.status != "success":
        logs = [e.message for e in api.get_run_logs(task_id, str(run.id))]
        raise SystemExit(f"task run {run.status}: {logs}")
    return (run.finished_at - run.started_at).total_seconds()


def panel_query(bucket_level: str | None) -> str:
    """The dashboard's power panel over 365 days; `bucket_level` forces a bucket."""
    dashboard = build_dashboard(COMPANY, CAMPAIGN, "ds", "influxdb-adecwatts-datasource")
    panel = next(p for p in dashboard["panels"] if p["title"].endswith("(W)"))
    query = str(panel["targets"][0]["query"])
    query = query.replace("${campaign}", CAMPAIGN).replace("${device:regex}", ".*")
    query = query.replace("${channel:regex}", ".*")
    if bucket_level is not None:
        lines = query.splitlines()
        lines[1] = f'level = "{bucket_level}"'
        query = "\n".join(lines)
    start = SCHEDULED - dt.timedelta(days=365)
    # Grafana's windowPeriod for a 365-day range on a ~1,500-pixel-wide panel.
    v = (
        f"v = {{timeRangeStart: {start:%Y-%m-%dT%H:%M:%SZ}, "
        f"timeRangeStop: {SCHEDULED:%Y-%m-%dT%H:%M:%SZ}, windowPeriod: 6h}}\n"
    )
    return v + query


def time_query(client: Any, flux: str, repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        began = time.perf_counter()
        tables = client.query_api().query(flux)
        best = min(best, time.perf_counter() - began)
        rows = sum(len(t.records) for t in tables)
    return best, rows


def measure(repeat: int) -> dict[str, Any]:
    binary = find_influxd(None)
    if binary is None:
        raise SystemExit("no influxd: run `powerview stack install`")
    scratch = Path(tempfile.mkdtemp(prefix="pv-bench-downsample-"))
    figures: dict[str, Any] = {"rows": YEAR.rows, "channels": YEAR.width}
    with throwaway_server(binary, scratch / "influxd") as (_, setup):
        client = make_client(setup.url, setup.token, setup.org, 600)
        root = scratch / "data"
        path = YEAR.write(root / COMPANY / CAMPAIGN / YEAR.master_sn / "T302_year.tsv")
        log("ingesting a year of one device ...")
        began = time.perf_counter()
        report = ingest_file(path, InfluxTarget(client, setup.org, 0), IngestOptions(root))
        figures["ingest_s"] = round(time.perf_counter() - began, 2)
        figures["points"] = report.nb_points
        assert report.status == "success", report.error
        settings = config.load(
            influxdb_url=setup.url,
            influxdb_org=setup.org,
            influxdb_admin_token=setup.token,
            downsample_lookback="366d",
        )
        tasks = ensure_downsampling(client, settings, COMPANY).task_ids
        for level in LEVELS:
            log(f"task {level.suffix} over the year ...")
            figures[f"task{level.suffix}_year_s"] = run_task(client, tasks[level.suffix])
        steady = settings.model_copy(update={"downsample_lookback": "7d"})
        tasks = ensure_downsampling(client, steady, COMPANY).task_ids
        figures["task_1h_lookback_7d_s"] = run_task(client, tasks["_1h"])
        for label, level in (("raw", ""), ("1d", "_1d"), ("picked", None)):
            seconds, rows = time_query(client, panel_query(level), repeat)
            figures[f"panel_365d_{label}_s"] = round(seconds, 3)
            figures[f"panel_365d_{label}_rows"] = rows
        client.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = measure(args.repeat)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
