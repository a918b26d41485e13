"""Error texts a person reads carry no object repr (issue 11).

The queue's `last_error` once began with `<urllib3.connection.HTTPConnection object
at 0x7f…>: Failed to establish a new connection`. Here the real worker meets an
InfluxDB that is stopped (nothing listens on its port any more) and one whose
host name does not resolve, for an upload and for a campaign's provisioning;
every `last_error` and everything the worker logged must read as plain text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
from pathlib import Path

import pytest

from powerview import events
from tests.factories import Export
from tests.integration.helpers_events import (
    Site,
    background,
    influx_env,
    make_site,
    new_company,
    run,
    wait_for,
)

OBJECT_REPR = re.compile(r"object at 0x[0-9a-fA-F]+|<[\w.]+ object")


def stopped_port() -> int:
    """A port a server just stopped listening on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def enqueue_upload_and_campaign(site: Site, company: str) -> None:
    upload = Export(master_sn="02001000", rows=5, seed=1, start=dt.datetime(2026, 1, 1))
    path = upload.write(site.data / company / "c1" / "02001000" / "T302_000.tsv")
    campaign = site.data / company / "c2"
    campaign.mkdir(parents=True)
    queue = site.queue()
    try:
        for kind, target in (("file", path), ("dir", campaign)):
            decision = events.decide_path(kind, str(target), site.data, company)
            assert decision.kind in ("ingest", "provision"), decision.reason
            events.enqueue(queue, decision, source="test")
    finally:
        queue.close()


@pytest.mark.parametrize(
    ("case", "url"),
    [
        ("stopped", f"http://127.0.0.1:{stopped_port()}"),
        ("unresolvable", "http://influxdb.invalid:8086"),
    ],
)
def test_the_queue_and_the_log_say_what_failed_in_plain_words(
    case: str, url: str, influxdb: object, tmp_path: Path
) -> None:
    site = make_site(tmp_path / "site")
    company = new_company()
    enqueue_upload_and_campaign(site, company)
    env = influx_env(site, influxdb, INFLUXDB_URL=url, POWERVIEW_INFLUXDB_RETRIES="0")

    def every_job_failed_once() -> bool:
        jobs = site.jobs()
        return len(jobs) == 2 and all(job.last_error for job in jobs)

    log = tmp_path / "worker.log"
    with background(["worker", "--scan-interval", "0"], env, site.home, log) as proc:
        wait_for(every_job_failed_once, 60, f"both jobs failing ({case})", interval=0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]

    jobs = site.jobs()
    assert sorted(job.kind for job in jobs) == ["ingest", "provision"]
    for job in jobs:
        assert job.state == "queued", job  # an infrastructure failure: retried, not failed
        error = job.last_error or ""
        assert "unreachable" in error, error
        assert OBJECT_REPR.search(error) is None, error
    logged = log.read_text()
    assert logged.strip(), "the worker logged nothing about the failures"
    assert OBJECT_REPR.search(logged) is None, logged[-3000:]
    # The JSON report of the deferred upload: its reason and the meta bucket's failure.
    reports = [json.loads(p.read_text()) for p in sorted(site.reports.glob("tsv_run_*.json"))]
    assert reports, "no run report for the deferred upload"
    for report in reports:
        [entry] = report["files"]
        assert entry["status"] == "deferred"
        assert "unreachable" in entry["error"], entry
        assert "unreachable" in report["meta_error"], report
        for text in (entry["error"], report["meta_error"]):
            assert OBJECT_REPR.search(text) is None, text
    # And `powerview health`, which a person or an alert reads.
    done, _ = run(["health", "--json"], env, site.home)
    checked = json.loads(done.stdout)
    influx = next(c for c in checked["checks"] if c["name"] == "influxdb")
    assert influx["status"] == "critical", influx
    assert OBJECT_REPR.search(done.stdout) is None, done.stdout
