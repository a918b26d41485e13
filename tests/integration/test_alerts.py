"""Alert delivery to a real local HTTP receiver: exact bodies in the three formats,
a webhook that is down, credentials kept out of logs, the heartbeat ping."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from powerview import alerts
from powerview.health import CheckResult, HealthReport, Problem, Status
from powerview.queue import JobQueue
from tests.conftest import InfluxInstance
from tests.integration.helpers_ops import (
    Request,
    closed_port_url,
    powerview,
    receiver,
    set_env,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOST = "pv-test"
SINCE = "2027-01-15T08:00:00Z"


def down_report() -> HealthReport:
    return HealthReport(
        [
            CheckResult("influxdb", Status.CRITICAL, "http://db:8086: InfluxDB unreachable"),
            CheckResult(
                "freshness",
                Status.WARNING,
                "1 of 2 devices late",
                [Problem("acme/02001084", Status.WARNING, "acme/02001084: last file 30.0 h ago")],
            ),
            CheckResult("grafana", Status.OK, "not configured"),
        ],
        at=NOW,
        host=HOST,
    )


def up_report() -> HealthReport:
    return HealthReport(
        [
            CheckResult("influxdb", Status.OK, "http://db:8086 accepted a write"),
            CheckResult("freshness", Status.OK, "2 devices of 1 companies uploaded within 26 h"),
            CheckResult("grafana", Status.OK, "not configured"),
        ],
        at=NOW + 600,
        host=HOST,
    )


ALERT_LINES = [
    "CRITICAL influxdb: http://db:8086: InfluxDB unreachable",
    "WARNING freshness acme/02001084: acme/02001084: last file 30.0 h ago",
]
RECOVERY_LINES = [
    "RECOVERED influxdb after 10 min (was critical: http://db:8086: InfluxDB unreachable)",
    "RECOVERED freshness acme/02001084 after 10 min "
    "(was warning: acme/02001084: last file 30.0 h ago)",
]

EXPECTED = {
    "json": (
        {"Content-Type": "application/json"},
        {
            "source": "powerview",
            "host": HOST,
            "time": SINCE,
            "status": "critical",
            "title": "PowerView on pv-test: critical",
            "events": [
                {
                    "event": "problem",
                    "check": "influxdb",
                    "subject": "",
                    "status": "critical",
                    "message": "http://db:8086: InfluxDB unreachable",
                    "since": SINCE,
                },
                {
                    "event": "problem",
                    "check": "freshness",
                    "subject": "acme/02001084",
                    "status": "warning",
                    "message": "acme/02001084: last file 30.0 h ago",
                    "since": SINCE,
                },
            ],
            "text": "\n".join(ALERT_LINES),
        },
        {
            "source": "powerview",
            "host": HOST,
            "time": "2027-01-15T08:10:00Z",
            "status": "ok",
            "title": "PowerView on pv-test: recovered",
            "events": [
                {
                    "event": "recovered",
                    "check": "influxdb",
                    "subject": "",
                    "status": "critical",
                    "message": "http://db:8086: InfluxDB unreachable",
                    "since": SINCE,
                },
                {
                    "event": "recovered",
                    "check": "freshness",
                    "subject": "acme/02001084",
                    "status": "warning",
                    "message": "acme/02001084: last file 30.0 h ago",
                    "since": SINCE,
                },
            ],
            "text": "\n".join(RECOVERY_LINES),
        },
    ),
    "ntfy": (
        {"Content-Type": "text/plain; charset=utf-8"},
        (
            {
                "Title": "PowerView on pv-test: critical",
                "Priority": "urgent",
                "Tags": "rotating_light",
            },
            "\n".join(ALERT_LINES),
        ),
        (
            {
                "Title": "PowerView on pv-test: recovered",
                "Priority": "default",
                "Tags": "white_check_mark",
            },
            "\n".join(RECOVERY_LINES),
        ),
    ),
    "slack": (
        {"Content-Type": "application/json"},
        {
            "text": "*PowerView on pv-test: critical*\n"
            f":red_circle: {ALERT_LINES[0]}\n:warning: {ALERT_LINES[1]}"
        },
        {
            "text": "*PowerView on pv-test: recovered*\n"
            f":white_check_mark: {RECOVERY_LINES[0]}\n:white_check_mark: {RECOVERY_LINES[1]}"
        },
    ),
}


def body_of(fmt: str, request: Request) -> object:
    if fmt == "ntfy":
        headers = {k: request.headers[k] for k in ("Title", "Priority", "Tags")}
        return headers, request.body.decode()
    return request.json()


@pytest.mark.parametrize("fmt", ["json", "ntfy", "slack"])
def test_the_receiver_gets_exactly_the_alert_then_the_recovery(
    fmt: alerts.Format, tmp_path: Path
) -> None:
    content_type, alert_body, recovery_body = EXPECTED[fmt]
    with receiver() as hook:
        url = f"{hook.url}/hooks/T0/B0/s3cr3t"
        first = alerts.notify(down_report(), tmp_path, url, fmt, quiet_s=3600, now=NOW)
        again = alerts.notify(down_report(), tmp_path, url, fmt, quiet_s=3600, now=NOW + 300)
        back = alerts.notify(up_report(), tmp_path, url, fmt, quiet_s=3600, now=NOW + 600)
        quiet = alerts.notify(up_report(), tmp_path, url, fmt, quiet_s=3600, now=NOW + 900)

    assert (first.sent, again.sent, back.sent, quiet.sent) == (True, False, True, False)
    assert [r.method for r in hook.requests] == ["POST", "POST"]
    assert all(r.path == "/hooks/T0/B0/s3cr3t" for r in hook.requests)
    for request in hook.requests:
        assert request.headers["Content-Type"] == content_type["Content-Type"]
    assert body_of(fmt, hook.requests[0]) == alert_body
    assert body_of(fmt, hook.requests[1]) == recovery_body
    assert first.destination == f"{hook.url}/****"


def test_a_problem_that_persists_is_repeated_after_the_quiet_period_only(tmp_path: Path) -> None:
    with receiver() as hook:
        url = f"{hook.url}/alerts"
        for offset in (0, 1800, 3599, 3600, 5000, 7200):
            alerts.notify(down_report(), tmp_path, url, "json", quiet_s=3600, now=NOW + offset)
    kinds = [[e["event"] for e in r.json()["events"]] for r in hook.requests]
    assert kinds == [["problem", "problem"], ["reminder", "reminder"], ["reminder", "reminder"]]
    assert hook.requests[1].json()["text"].endswith("(still, for 60 min)")


def test_a_webhook_that_is_down_is_reported_and_the_alert_goes_out_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = closed_port_url() + "/hook/s3cr3t"
    outcome = alerts.notify(down_report(), tmp_path, dead, "json", now=NOW)

    assert not outcome.sent
    assert outcome.error is not None
    assert outcome.error.startswith("unreachable (")
    check = outcome.as_check()
    assert check.status == Status.WARNING
    assert check.message.startswith(f"2 alert(s) not delivered to {dead.split('/hook')[0]}/****")
    assert not (tmp_path / alerts.STATE_FILE).exists()  # nothing remembered as sent

    with receiver() as hook:
        hook.status = 500
        failed = alerts.notify(down_report(), tmp_path, f"{hook.url}/s3cr3t", "json", now=NOW)
        assert failed.error == "answered 500 Internal Server Error"
        hook.status = 200
        later = alerts.notify(down_report(), tmp_path, f"{hook.url}/s3cr3t", "json", now=NOW + 60)
    assert later.sent
    assert [len(r.json()["events"]) for r in hook.requests] == [2, 2]
    assert "s3cr3t" not in caplog.text


def test_health_notify_with_a_dead_webhook_still_reports_every_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").mkdir()
    JobQueue.in_state_dir(tmp_path / "state").close()
    secret_url = closed_port_url().replace("http://", "http://bot:pa55word@") + "/t/s3cr3t"
    set_env(
        monkeypatch,
        tmp_path,
        POWERVIEW_DATA_ROOT=str(tmp_path / "data"),
        POWERVIEW_STATE_DIR=str(tmp_path / "state"),
        POWERVIEW_HEALTH_EXPECT="worker",  # never ran: critical, so something to send
        POWERVIEW_ALERT_WEBHOOK_URL=secret_url,
    )
    result = powerview(capsys, "health", "--notify", "--json")

    assert result.status == 2
    names = [c["name"] for c in result.json()["checks"]]
    assert names[-1] == "alerts"
    assert {"influxdb", "queue", "worker", "watcher", "data root", "grafana"} <= set(names)
    assert result.check("alerts")["status"] == "warning"
    assert "not delivered" in result.check("alerts")["message"]
    for secret in ("s3cr3t", "pa55word", "bot:"):
        assert secret not in result.out + result.err


def test_credentials_in_the_url_become_basic_auth_and_are_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with receiver() as hook:
        url = hook.url.replace("http://", "http://bot:pa55%40word@") + "/topic-s3cr3t"
        outcome = alerts.notify(down_report(), tmp_path, url, "ntfy", now=NOW)
    assert outcome.sent
    request = hook.requests[0]
    assert request.path == "/topic-s3cr3t"
    assert (
        request.headers["Authorization"] == "Basic " + base64.b64encode(b"bot:pa55@word").decode()
    )
    assert outcome.destination == hook.url + "/****"
    state = json.loads((tmp_path / alerts.STATE_FILE).read_text())
    assert sorted(state["problems"]) == ["freshness:acme/02001084", "influxdb"]
    for secret in ("s3cr3t", "pa55"):
        assert secret not in caplog.text


@pytest.mark.influxdb
def test_the_heartbeat_is_pinged_only_when_nothing_is_critical(
    influxdb: InfluxInstance,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "data").mkdir()
    with receiver() as beat:
        set_env(
            monkeypatch,
            tmp_path,
            INFLUXDB_URL=influxdb.url,
            INFLUXDB_ORG=influxdb.org,
            INFLUXDB_ADMIN_TOKEN=influxdb.token,
            TSV_META_BUCKET=bucket,
            POWERVIEW_DATA_ROOT=str(tmp_path / "data"),
            POWERVIEW_STATE_DIR=str(tmp_path / "state"),
            POWERVIEW_HEALTH_EXPECT="",
            POWERVIEW_HEARTBEAT_URL=f"{beat.url}/ping/0f9e-uuid",
        )
        # No queue file yet: a warning, which still pings (warnings go to the webhook).
        warning = powerview(capsys, "health", "--notify")
        assert warning.status == 1
        JobQueue.in_state_dir(tmp_path / "state").close()
        ok = powerview(capsys, "health", "--notify")
        assert ok.status == 0, ok.out
        assert "heartbeat ping  OK" in ok.out.replace("   ", "  ")
        assert [(r.method, r.path) for r in beat.requests] == [("GET", "/ping/0f9e-uuid")] * 2

        monkeypatch.setenv("POWERVIEW_DATA_ROOT", str(tmp_path / "gone"))
        critical = powerview(capsys, "health", "--notify")
        assert critical.status == 2
        assert len(beat.requests) == 2  # silence: the heartbeat service raises the alarm
        assert "0f9e-uuid" not in warning.out + ok.out + critical.out
