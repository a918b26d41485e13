"""`powerview health` against real servers and processes: an InfluxDB stopped and
started again, late devices and rejected files in the meta bucket, a worker killed,
Grafana up and down. Alerts go to a real local HTTP receiver."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview import stack
from powerview.queue import JobQueue
from tests.conftest import InfluxInstance
from tests.grafana_standin import GrafanaStandin
from tests.integration import helpers_events as ev
from tests.integration.helpers_ops import (
    file_point,
    powerview,
    receiver,
    set_env,
    write_lines,
)

pytestmark = pytest.mark.influxdb


def site_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A deployment in `tmp_path` with a queue file, no process expected unless said."""
    data, state = tmp_path / "data", tmp_path / "state"
    data.mkdir(exist_ok=True)
    JobQueue.in_state_dir(state).close()
    return {
        "POWERVIEW_DATA_ROOT": str(data),
        "POWERVIEW_STATE_DIR": str(state),
        "POWERVIEW_HEALTH_EXPECT": "",
        "HOME": str(tmp_path),
        **extra,
    }


def influx_settings(influxdb: InfluxInstance, meta_bucket: str) -> dict[str, str]:
    return {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "TSV_META_BUCKET": meta_bucket,
    }


def test_influxdb_stopped_is_critical_and_its_recovery_is_sent_once(
    influxd_binary: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with (
        stack.throwaway_server(influxd_binary, tmp_path / "influxd") as (server, setup),
        receiver() as hook,
    ):
        env = site_env(
            tmp_path,
            INFLUXDB_URL=setup.url,
            INFLUXDB_ORG=setup.org,
            INFLUXDB_ADMIN_TOKEN=setup.token,
            TSV_META_BUCKET=setup.bucket,
            POWERVIEW_ALERT_WEBHOOK_URL=f"{hook.url}/hook/s3cr3t-topic",
        )
        set_env(monkeypatch, tmp_path, **env)

        healthy = powerview(capsys, "health", "--notify")
        assert healthy.status == 0, healthy.out
        assert healthy.first_line.startswith("POWERVIEW OK")
        assert hook.requests == []

        server.stop()
        down = powerview(capsys, "health", "--notify")
        assert down.status == 2
        assert down.first_line.startswith("POWERVIEW CRITICAL - influxdb: ")
        assert setup.url in down.first_line
        assert [r.json()["events"] for r in hook.wait_for(1)] == [
            [
                {
                    "event": "problem",
                    "check": "influxdb",
                    "subject": "",
                    "status": "critical",
                    "message": hook.requests[0].json()["events"][0]["message"],
                    "since": hook.requests[0].json()["events"][0]["since"],
                }
            ]
        ]
        assert "unreachable" in hook.requests[0].json()["events"][0]["message"]
        # Freshness and rejects cannot run without InfluxDB: said, but not alerted.
        assert "not checked: InfluxDB failed" in down.out
        assert powerview(capsys, "health", "--notify").status == 2
        assert len(hook.requests) == 1  # still down: no second alert

        server.start()
        back = powerview(capsys, "health", "--notify")
        assert back.status == 0, back.out
        requests = hook.wait_for(2)
        assert len(requests) == 2
        recovery = requests[1].json()
        assert recovery["status"] == "ok"
        assert [(e["event"], e["check"]) for e in recovery["events"]] == [("recovered", "influxdb")]
        assert recovery["title"].endswith(": recovered")
        assert powerview(capsys, "health", "--notify").status == 0
        time.sleep(0.2)
        assert len(hook.requests) == 2  # exactly one recovery message
        assert "s3cr3t" not in down.out + down.err + back.out + back.err


def test_a_late_device_is_a_warning_naming_the_company_and_the_device(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    company = f"co_{uuid.uuid4().hex[:8]}"
    now = time.time()
    write_lines(
        influx_client,
        bucket,
        [
            # The late device: an older success, then its last one 30 h ago.
            file_point(now - 50 * 3600, "success", company, "c1", "02000001", "T302_a.tsv"),
            file_point(now - 30 * 3600, "success", company, "c1", "02000001", "T302_b.tsv"),
            # On time: its last file 2 h ago, an older one before.
            file_point(now - 40 * 3600, "success", company, "c1", "02000002", "T302_c.tsv"),
            file_point(now - 2 * 3600, "success", company, "c1", "02000002", "T302_d.tsv"),
            # A device whose last file was rejected after a late success is late too.
            file_point(now - 28 * 3600, "success", "other_co", "c9", "02000003", "T302_e.tsv"),
            file_point(now - 600, "error", "other_co", "c9", "02000003", "T302_f.tsv", "bad"),
        ],
    )
    set_env(monkeypatch, tmp_path, **site_env(tmp_path), **influx_settings(influxdb, bucket))

    result = powerview(capsys, "health", "--json")

    assert result.status == 1
    freshness = result.check("freshness")
    assert freshness["status"] == "warning"
    assert [p["subject"] for p in freshness["problems"]] == [
        f"{company}/02000001",
        "other_co/02000003",
    ]
    assert freshness["problems"][0]["message"].startswith(f"{company}/02000001: last file 30.0 h")
    assert "02000002" not in freshness["message"]
    assert freshness["data"] == {"devices": 3.0, "late_devices": 2.0}

    # A longer cadence for this deployment: nobody is late.
    monkeypatch.setenv("POWERVIEW_EXPECTED_CADENCE_H", "48")
    relaxed = powerview(capsys, "health", "--json")
    assert relaxed.check("freshness")["status"] == "ok"
    assert relaxed.check("freshness")["message"] == (
        "3 devices of 2 companies uploaded within 48 h"
    )


def test_a_rejected_file_is_one_alert_not_one_per_run(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = time.time()
    write_lines(
        influx_client,
        bucket,
        [
            file_point(now - 300, "error", "acme", "c1", "02001084", "T302_x.tsv", "empty file"),
            # Deferred, then ingested on the retry: nothing wrong any more.
            file_point(now - 900, "deferred", "acme", "c1", "02001084", "T302_y.tsv", "down"),
            file_point(now - 800, "success", "acme", "c1", "02001084", "T302_y.tsv"),
            # Rejected two hours ago: out of the last hour's window.
            file_point(now - 7200, "error", "acme", "c1", "02001084", "T302_z.tsv", "old"),
        ],
    )
    with receiver() as hook:
        env = site_env(tmp_path, POWERVIEW_ALERT_WEBHOOK_URL=f"{hook.url}/alerts")
        set_env(monkeypatch, tmp_path, **env, **influx_settings(influxdb, bucket))

        first = powerview(capsys, "health", "--notify")
        second = powerview(capsys, "health", "--notify")

        assert first.status == second.status == 1
        assert "rejects: 1 files rejected or deferred in the last hour" in first.first_line
        assert len(hook.wait_for(1)) == 1
        time.sleep(0.2)
        assert len(hook.requests) == 1
        events = hook.requests[0].json()["events"]
        assert [(e["event"], e["check"], e["subject"], e["status"]) for e in events] == [
            ("problem", "rejects", "acme/c1/02001084/T302_x.tsv", "warning")
        ]
        assert events[0]["message"] == "rejected acme/c1/02001084/T302_x.tsv: empty file"
        state = json.loads((tmp_path / "state" / "alerts.json").read_text())
        assert list(state["problems"]) == ["rejects:acme/c1/02001084/T302_x.tsv"]


def test_a_killed_worker_goes_stale_and_is_critical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = ev.make_site(tmp_path / "site")
    env = site.base_env(POWERVIEW_METRICS_PORT="0", POWERVIEW_SCAN_INTERVAL_S="0")
    settings = {
        "POWERVIEW_DATA_ROOT": str(site.data),
        "POWERVIEW_STATE_DIR": str(site.state),
        "POWERVIEW_HEALTH_EXPECT": "worker",
        "POWERVIEW_HEARTBEAT_MAX_AGE_S": "30",
    }
    with (
        ev.background(["worker"], env, site.home, tmp_path / "worker.log") as worker,
        ev.background(["watch"], env, site.home, tmp_path / "watch.log") as watcher,
    ):

        def beats() -> dict[str, dict[str, object]]:
            if not (site.state / "queue.sqlite3").exists():
                return {}
            queue = site.queue()
            try:
                return queue.heartbeats()
            finally:
                queue.close()

        ev.wait_for(lambda: {"worker", "watcher"} <= set(beats()), 20, "both heartbeats")
        set_env(monkeypatch, tmp_path, **settings)
        alive = powerview(capsys, "health", "--json")
        assert alive.check("worker")["status"] == "ok"
        assert alive.check("worker")["message"].startswith(f"alive: pid {worker.pid} on ")
        assert alive.check("watcher")["status"] == "ok"

        ev.kill_group(worker)
        ev.kill_group(watcher)
        time.sleep(1.1)
        monkeypatch.setenv("POWERVIEW_HEARTBEAT_MAX_AGE_S", "1")
        dead = powerview(capsys, "health", "--json")

    assert dead.status == 2
    assert dead.check("worker")["status"] == "critical"
    assert "heartbeat stale" in dead.check("worker")["message"]
    assert "no longer runs" in dead.check("worker")["message"]
    # The watcher is not expected here (an SFTPGo deployment): stale is a warning ...
    assert dead.check("watcher")["status"] == "warning"
    # ... and critical where it is expected (plain OpenSSH deployments).
    monkeypatch.setenv("POWERVIEW_HEALTH_EXPECT", "worker,watcher")
    assert powerview(capsys, "health", "--json").check("watcher")["status"] == "critical"


def test_a_cron_worker_run_that_finished_is_judged_by_its_period_not_as_a_dead_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's cron variant: `worker --until-idle`, POWERVIEW_HEALTH_EXPECT empty."""
    site = ev.make_site(tmp_path / "site")
    env = site.base_env(POWERVIEW_METRICS_PORT="0", POWERVIEW_SCAN_INTERVAL_S="0")
    done, _ = ev.run(["worker", "--until-idle"], env, site.home)
    assert done.returncode == 0, done.stderr
    settings = {
        "POWERVIEW_DATA_ROOT": str(site.data),
        "POWERVIEW_STATE_DIR": str(site.state),
        "POWERVIEW_HEALTH_EXPECT": "",
        # Past the daemon's limit already: a finished run is not judged by it.
        "POWERVIEW_HEARTBEAT_MAX_AGE_S": "1",
    }
    time.sleep(1.1)
    set_env(monkeypatch, tmp_path, **settings)
    between_runs = powerview(capsys, "health", "--json").check("worker")
    assert between_runs["status"] == "ok", between_runs
    assert between_runs["message"].startswith("last run (--until-idle) finished cleanly ")
    assert "stale" not in between_runs["message"]

    # The cron job stopped: its last run grows older than POWERVIEW_WORKER_RUN_MAX_AGE_S.
    monkeypatch.setenv("POWERVIEW_WORKER_RUN_MAX_AGE_S", "1")
    stopped = powerview(capsys, "health", "--json").check("worker")
    assert stopped["status"] == "warning", stopped
    assert "is its cron job still there?" in stopped["message"]
    monkeypatch.setenv("POWERVIEW_HEALTH_EXPECT", "worker")
    assert powerview(capsys, "health", "--json").check("worker")["status"] == "critical"


def test_a_worker_that_never_ran_is_critical_only_where_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, tmp_path, **site_env(tmp_path, POWERVIEW_HEALTH_EXPECT="worker"))
    result = powerview(capsys, "health", "--json")
    assert result.check("worker")["status"] == "critical"
    assert result.check("watcher") == {
        "name": "watcher",
        "status": "ok",
        "message": "not deployed (never beat; not expected)",
        "problems": [],
        "data": {},
    }


def test_grafana_up_down_and_unreachable(
    grafana: GrafanaStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(monkeypatch, tmp_path, **site_env(tmp_path, GRAFANA_URL=grafana.url))
    assert powerview(capsys, "health", "--json").check("grafana")["status"] == "ok"
    assert grafana.violations == []
    with receiver() as other:
        other.answer = b'{"database": "ok", "version": "11.2.0", "commit": "abc"}'
        monkeypatch.setenv("GRAFANA_URL", other.url)
        up = powerview(capsys, "health", "--json").check("grafana")
        assert up["status"] == "ok"
        assert up["message"] == f"{other.url} healthy, version 11.2.0"
        assert other.requests[-1].path == "/api/health"

        other.status, other.answer = 503, b'{"database": "failing"}'
        assert powerview(capsys, "health", "--json").check("grafana")["status"] == "critical"
        url = other.url
    result = powerview(capsys, "health", "--json")
    assert result.check("grafana")["status"] == "critical"
    assert result.check("grafana")["message"].startswith(f"{url} unreachable")
    assert result.status == 2


def test_a_missing_data_root_is_critical_and_bad_settings_are_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = site_env(tmp_path)
    env["POWERVIEW_DATA_ROOT"] = str(tmp_path / "nowhere")
    set_env(monkeypatch, tmp_path, **env)
    result = powerview(capsys, "health", "--json")
    assert result.check("data root")["status"] == "critical"
    assert result.status == 2

    monkeypatch.setenv("POWERVIEW_HEALTH_EXPECT", "worker,sftpgo")
    bad = powerview(capsys, "health")
    assert bad.status == 3
    assert bad.first_line.startswith("POWERVIEW UNKNOWN - configuration error: ")
    assert "POWERVIEW_HEALTH_EXPECT" in bad.first_line
