"""The worker's Prometheus endpoint: a real `powerview worker` ingests files into the
real InfluxDB; the exposition parses with prometheus_client's own parser and its
counters move by exactly the files and the values of that ingestion."""

from __future__ import annotations

import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient
from prometheus_client.parser import text_string_to_metric_families

from powerview import events
from powerview.stack import free_port
from tests.conftest import InfluxInstance
from tests.integration import helpers_events as ev

pytestmark = pytest.mark.influxdb

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def endpoint_up(port: int) -> Samples | None:
    try:
        return scrape(port)
    except OSError:
        return None


def test_counters_move_by_exactly_the_files_and_values_ingested(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    samples: Path,
    tmp_path: Path,
) -> None:
    site = ev.make_site(tmp_path / "site")
    company = ev.new_company()
    port = free_port()
    env = ev.influx_env(
        site, influxdb, POWERVIEW_METRICS_PORT=str(port), POWERVIEW_SCAN_INTERVAL_S="0"
    )
    good = site.data / company / "c1" / "02001084" / "T302_251012_031720.tsv"
    good.parent.mkdir(parents=True)
    bad = site.data / company / "c1" / "02001283" / "T302_260109_120045.tsv"
    bad.parent.mkdir(parents=True)
    try:
        with ev.background(["worker"], env, site.home, tmp_path / "worker.log"):
            before = ev.wait_for(lambda: endpoint_up(port), 20, "the metrics endpoint")
            assert value(before, "powerview_files_total", company=company, outcome="ingested") == 0
            assert value(before, "powerview_queue_jobs", state="queued") == 0
            build = [k for k in before if k[0] == "powerview_build_info"]
            assert len(build) == 1
            assert dict(build[0][1])["version"] == "0.1.0"

            shutil.copy(samples / "acme/campaign1/02001084/T302_251012_031720.tsv", good)
            shutil.copy(samples / "faulty/campaign/02001283/T302_260109_120045.tsv", bad)
            queue = site.queue()
            try:
                for path in (good, bad):
                    decision = events.decide_path("file", str(path), site.data)
                    assert events.enqueue(queue, decision, source="test")
            finally:
                queue.close()
            ev.wait_for(
                lambda: [j.state for j in site.jobs()] == ["done", "done"], 60, "both jobs done"
            )
            after = ev.wait_for(
                lambda: (
                    (s := scrape(port))
                    and value(s, "powerview_jobs_total", kind="ingest", outcome="done") == 2
                    and s
                ),
                10,
                "the jobs counted",
            )
    finally:
        points = ev.count_points(influx_client, company)
        ev.delete_bucket(influx_client, company)

    assert points > 0

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("powerview_files_total", company=company, outcome="ingested") == 1
    assert moved("powerview_files_total", company=company, outcome="rejected") == 1
    assert moved("powerview_files_total", company=company, outcome="deferred") == 0
    assert moved("powerview_values_written_total", company=company) == points
    assert moved("powerview_ingest_duration_seconds_count") == 2  # the rejected one took time too
    assert moved("powerview_upload_to_queryable_seconds_count") == 1
    assert 0 < value(after, "powerview_upload_to_queryable_seconds_sum") < 60
    # The file's master serial (02001171), as on its points, not the folder's name.
    last = value(
        after, "powerview_last_success_timestamp_seconds", company=company, device="02001171"
    )
    assert time.time() - 60 < last <= time.time()
    assert value(after, "powerview_queue_jobs", state="queued") == 0
    assert value(after, "powerview_queue_jobs", state="failed") == 0
    assert ("process_cpu_seconds_total", ()) in after
