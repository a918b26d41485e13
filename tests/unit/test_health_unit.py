"""Health, alerts and metrics without servers: statuses and their order, the alert
plan across runs, URL masking, heartbeat and queue checks, metric bookkeeping."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from powerview import alerts, health
from powerview import settings as config
from powerview.exceptions import ConfigError
from powerview.health import CheckResult, HealthReport, Problem, Status
from powerview.metrics import WorkerMetrics
from powerview.queue import JobQueue

NOW = 1_800_000_000.0


def settings(**values: object) -> config.Settings:
    return config.Settings(**values)  # type: ignore[arg-type]


# -- statuses -----------------------------------------------------------------------


def test_exit_codes_follow_the_monitoring_plugin_convention() -> None:
    assert [int(s) for s in (Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN)] == [
        0,
        1,
        2,
        3,
    ]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Status.OK),
        ([Status.OK, Status.WARNING], Status.WARNING),
        ([Status.WARNING, Status.UNKNOWN], Status.UNKNOWN),
        ([Status.UNKNOWN, Status.CRITICAL, Status.WARNING], Status.CRITICAL),
    ],
)
def test_the_overall_status_is_the_worst(statuses: list[Status], expected: Status) -> None:
    assert health.worst(statuses) == expected


def test_the_summary_line_puts_the_worst_first_and_carries_perfdata() -> None:
    report = HealthReport(
        [
            CheckResult("queue", Status.OK, "0 queued", data={"queued": 0.0}),
            CheckResult("freshness", Status.WARNING, "1 of 2 devices late"),
            CheckResult("worker", Status.CRITICAL, "heartbeat stale"),
        ],
        at=NOW,
        host="h",
    )
    assert report.summary() == (
        "POWERVIEW CRITICAL - worker: heartbeat stale; freshness: 1 of 2 devices late"
    )
    assert report.perfdata() == "queued=0"
    as_dict = report.to_dict()
    assert (as_dict["status"], as_dict["exit_code"], as_dict["time"]) == (
        "critical",
        2,
        "2027-01-15T08:00:00Z",
    )
    assert as_dict["checks"][2]["problems"] == [
        {"subject": "", "status": "critical", "message": "heartbeat stale"}
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (119, "119 s"), (600, "10 min"), (30 * 3600, "30.0 h"), (5 * 86400, "5.0 d")],
)
def test_durations_read_well(seconds: float, text: str) -> None:
    assert health.ago(seconds) == text


# -- secrets in URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T00/B00/XXXX", "https://hooks.slack.com/****"),
        ("https://ntfy.sh/my-secret-topic", "https://ntfy.sh/****"),
        ("https://bot:pw@ntfy.example.org:8443/alerts", "https://ntfy.example.org:8443/****"),
        ("https://hc-ping.com/?token=abc", "https://hc-ping.com/****"),
        ("http://grafana:3000", "http://grafana:3000"),
        ("http://[::1", "****"),
    ],
)
def test_urls_are_masked_down_to_scheme_host_and_port(url: str, shown: str) -> None:
    assert health.mask_url(url) == shown


def test_credentials_leave_the_url_for_a_basic_auth_header() -> None:
    url, header = alerts.split_credentials("https://bot:p%40ss@ntfy.example.org/topic")
    assert url == "https://ntfy.example.org/topic"
    assert header == {"Authorization": "Basic Ym90OnBAc3M="}
    assert alerts.split_credentials("https://ntfy.sh/t") == ("https://ntfy.sh/t", {})


def test_error_texts_are_scrubbed_of_every_secret_part() -> None:
    url = "https://bot:pw123@hooks.example.org/services/T0/B0/s3cr3t?x=tok"
    text = f"cannot reach {url}: /services/T0/B0/s3cr3t failed for bot with pw123 and x=tok"
    cleaned = alerts.scrub(text, url)
    for secret in ("s3cr3t", "pw123", "x=tok"):
        assert secret not in cleaned


# -- the alert plan ---------------------------------------------------------------------


def report_of(*checks: CheckResult, at: float = NOW) -> HealthReport:
    return HealthReport(list(checks), at=at, host="h")


def late(*devices: str) -> CheckResult:
    problems = [Problem(d, Status.WARNING, f"{d}: late") for d in devices]
    status = Status.WARNING if problems else Status.OK
    return CheckResult("freshness", status, "late" if problems else "fine", problems)


def kinds(events: list[alerts.Event]) -> list[tuple[str, str, str]]:
    return [(e.kind, e.check, e.subject) for e in events]


def test_each_problem_is_sent_once_then_reminded_after_the_quiet_period() -> None:
    events, state = alerts.plan(report_of(late("a/1")), {}, NOW, quiet_s=3600)
    assert kinds(events) == [("problem", "freshness", "a/1")]
    events, state = alerts.plan(report_of(late("a/1")), state, NOW + 3599, quiet_s=3600)
    assert events == []
    events, state = alerts.plan(report_of(late("a/1", "b/2")), state, NOW + 3600, quiet_s=3600)
    assert kinds(events) == [("reminder", "freshness", "a/1"), ("problem", "freshness", "b/2")]
    assert state["freshness:a/1"]["since"] == NOW
    events, state = alerts.plan(report_of(late("b/2")), state, NOW + 3700, quiet_s=3600)
    assert kinds(events) == [("recovered", "freshness", "a/1")]
    assert list(state) == ["freshness:b/2"]


def test_a_problem_that_gets_worse_is_sent_again_and_one_that_improves_is_not() -> None:
    warning = CheckResult("queue", Status.WARNING, "waits 20 min")
    critical = CheckResult("queue", Status.CRITICAL, "waits 2 h")
    _, state = alerts.plan(report_of(warning), {}, NOW, 3600)
    events, state = alerts.plan(report_of(critical), state, NOW + 60, 3600)
    assert [(e.kind, e.status) for e in events] == [("problem", Status.CRITICAL)]
    events, state = alerts.plan(report_of(warning), state, NOW + 120, 3600)
    assert events == []
    assert state["queue"]["status"] == "warning"


def test_a_check_that_did_not_run_keeps_its_problems_as_they_are() -> None:
    _, state = alerts.plan(report_of(late("a/1")), {}, NOW, 3600)
    skipped = CheckResult("freshness", Status.UNKNOWN, "not checked", alert=False)
    down = CheckResult("influxdb", Status.CRITICAL, "unreachable")
    events, state = alerts.plan(report_of(down, skipped), state, NOW + 60, 3600)
    assert kinds(events) == [("problem", "influxdb", "")]
    assert set(state) == {"influxdb", "freshness:a/1"}
    up = CheckResult("influxdb", Status.OK, "fine")
    events, state = alerts.plan(report_of(up, late("a/1")), state, NOW + 120, 3600)
    assert kinds(events) == [("recovered", "influxdb", "")]
    # A query that failed: the failure is news, the late device is neither news nor gone.
    failed = CheckResult("freshness", Status.UNKNOWN, "check failed: query timed out")
    events, state = alerts.plan(report_of(up, failed), state, NOW + 180, 3600)
    assert kinds(events) == [("problem", "freshness", "")]
    assert set(state) == {"freshness", "freshness:a/1"}
    events, state = alerts.plan(report_of(up, late()), state, NOW + 240, 3600)
    assert kinds(events) == [("recovered", "freshness", ""), ("recovered", "freshness", "a/1")]


def test_reminders_alone_go_to_ntfy_at_default_priority() -> None:
    _, state = alerts.plan(report_of(late("a/1")), {}, NOW, 60)
    events, _ = alerts.plan(report_of(late("a/1")), state, NOW + 60, 60)
    headers, body = alerts.build_request(events, report_of(late("a/1")), "ntfy", NOW + 60)
    assert headers["Priority"] == "default"
    assert headers["Tags"] == "warning"
    assert body.decode() == "WARNING freshness a/1: a/1: late (still, for 60 s)"


def test_an_unreadable_state_file_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / alerts.STATE_FILE).write_text("{not json")
    assert alerts.load_state(tmp_path) == {}
    alerts.save_state(tmp_path, {"k": {"check": "x"}})
    saved = json.loads((tmp_path / alerts.STATE_FILE).read_text())
    assert saved == {"version": 1, "problems": {"k": {"check": "x"}}}
    assert (tmp_path / alerts.STATE_FILE).stat().st_mode & 0o777 == 0o600


# -- checks without servers -----------------------------------------------------------


def beat(at: float, pid: int = 999_999_999, host: str = "elsewhere") -> dict[str, object]:
    return {"pid": pid, "host": host, "at": at, "info": {"running": 1, "completed": 5}}


@pytest.mark.parametrize(
    ("expect", "beats", "status", "start"),
    [
        ("worker", {}, Status.CRITICAL, "never beat"),
        ("", {}, Status.OK, "not deployed"),
        ("worker", {"worker": beat(NOW - 5)}, Status.OK, "alive: pid 999999999 on elsewhere"),
        ("worker", {"worker": beat(NOW - 500)}, Status.CRITICAL, "heartbeat stale"),
        ("", {"worker": beat(NOW - 500)}, Status.WARNING, "heartbeat stale"),
    ],
)
def test_process_heartbeats(
    expect: str, beats: dict[str, dict[str, object]], status: Status, start: str
) -> None:
    result = health.check_process(
        settings(health_expect=expect, heartbeat_max_age_s=120), "worker", beats, NOW
    )
    assert result.status == status
    assert result.message.startswith(start)


@pytest.mark.parametrize(
    ("expect", "age", "status", "words"),
    [
        ("", 500, Status.OK, "finished cleanly 8 min ago"),
        ("", 1000, Status.WARNING, "is its cron job still there?"),
        ("worker", 1000, Status.CRITICAL, "is its cron job still there?"),
    ],
)
def test_a_finished_until_idle_run_is_judged_by_the_run_limit(
    expect: str, age: float, status: Status, words: str
) -> None:
    finished = beat(NOW - age)
    finished["info"] = {"running": 0, "completed": 3, "finished": "idle"}
    result = health.check_process(
        settings(health_expect=expect, heartbeat_max_age_s=120, worker_run_max_age_s=900),
        "worker",
        {"worker": finished},
        NOW,
    )
    assert result.status == status
    assert words in result.message
    assert "stale" not in result.message


def test_a_stale_heartbeat_of_a_local_process_says_it_is_gone() -> None:
    import socket

    gone = beat(NOW - 500, pid=2**22 + 12345, host=socket.gethostname())
    result = health.check_process(settings(), "worker", {"worker": gone}, NOW)
    assert "(that process no longer runs)" in result.message


def test_the_queue_check_reports_long_waits_and_each_failed_job(tmp_path: Path) -> None:
    queue = JobQueue.in_state_dir(tmp_path)
    queue.enqueue("ingest", "/d/a.tsv", {"path": "/d/a.tsv"})
    queue.enqueue("ingest", "/d/b.tsv", {"path": "/d/b.tsv"})
    job = queue.claim("me:1", 60)
    assert job is not None
    queue.retry_or_fail(job, "InfluxDB refused: 401", None)
    queue.close()
    config_ = settings(queue_max_wait_s=900)
    path = tmp_path / "queue.sqlite3"

    fresh = health.check_queue(config_, path, time.time())
    assert fresh.status == Status.WARNING
    assert [p.subject for p in fresh.problems] == ["ingest:/d/a.tsv"]
    assert "job failed: /d/a.tsv: InfluxDB refused: 401" in fresh.message
    assert fresh.data["queued"] == 1
    assert fresh.data["failed"] == 1

    later = health.check_queue(config_, path, time.time() + 1000)
    assert [p.subject for p in later.problems] == ["waiting", "ingest:/d/a.tsv"]
    assert later.status == Status.WARNING
    stuck = health.check_queue(config_, path, time.time() + 4000)
    assert stuck.status == Status.CRITICAL
    assert "is the worker stuck?" in stuck.message


def test_no_queue_file_is_a_warning_and_is_not_created(tmp_path: Path) -> None:
    result = health.check_queue(settings(), tmp_path / "queue.sqlite3", NOW)
    assert result.status == Status.WARNING
    assert not (tmp_path / "queue.sqlite3").exists()


def test_the_data_root_must_be_a_folder_that_can_be_listed_and_written(tmp_path: Path) -> None:
    assert health.check_data_root(tmp_path / "missing").status == Status.CRITICAL
    (tmp_path / "file").write_text("")
    assert health.check_data_root(tmp_path / "file").status == Status.CRITICAL
    ok = health.check_data_root(tmp_path)
    assert ok.status == Status.OK
    assert list(tmp_path.glob(".powerview-health-*")) == []  # the probe is removed


def test_a_check_that_crashes_is_unknown_not_a_crash() -> None:
    def broken() -> CheckResult:
        raise RuntimeError("boom")

    result = health._guarded("queue", broken)
    assert (result.status, result.message) == (Status.UNKNOWN, "check failed: RuntimeError: boom")


# -- settings -------------------------------------------------------------------------


def test_operations_settings_have_their_defaults() -> None:
    defaults = settings()
    assert defaults.expected_cadence_h == 26
    assert defaults.metrics_port == 9464
    assert defaults.metrics_address == "127.0.0.1"
    assert defaults.alert_format == "json"
    assert defaults.health_expect == "worker"
    assert defaults.alert_webhook_url is None


def test_expected_processes_are_checked_and_secrets_masked() -> None:
    assert settings(health_expect=" watcher , worker ").health_expect == "watcher,worker"
    assert settings(health_expect="").health_expect == ""
    with pytest.raises(ConfigError, match="POWERVIEW_HEALTH_EXPECT: sftpgo"):
        config.load(health_expect="worker,sftpgo")
    with pytest.raises(ConfigError, match="POWERVIEW_ALERT_FORMAT"):
        config.load(alert_format="teams")
    shown = config.masked(settings(alert_webhook_url="https://hooks.slack.com/services/x"))
    assert shown["alert_webhook_url"] == "****"


# -- metrics --------------------------------------------------------------------------


def test_job_results_are_counted_per_company_and_outcome() -> None:
    metrics = WorkerMetrics()
    ok = {"outcome": "done", "status": "success", "points": 120, "company": "acme",
          "device_sn": "02001171", "duration_s": 0.4}  # fmt: skip
    metrics.record_job("ingest", NOW - 30, ok, now=NOW)
    metrics.record_job("ingest", NOW, {**ok, "status": "error", "points": 0}, now=NOW)
    metrics.record_job("ingest", NOW, {**ok, "outcome": "retry", "status": "deferred"}, now=NOW)
    metrics.record_job("ingest", NOW, {"outcome": "postpone", "error": "busy"}, now=NOW)
    metrics.record_job("ingest", NOW, {"outcome": "done", "status": "gone"}, now=NOW)
    metrics.record_job("provision", NOW, {"outcome": "done"}, now=NOW)
    value = metrics.registry.get_sample_value

    assert value("powerview_files_total", {"company": "acme", "outcome": "ingested"}) == 1
    assert value("powerview_files_total", {"company": "acme", "outcome": "rejected"}) == 1
    assert value("powerview_files_total", {"company": "acme", "outcome": "deferred"}) == 1
    assert value("powerview_values_written_total", {"company": "acme"}) == 120
    assert value("powerview_jobs_total", {"kind": "ingest", "outcome": "postponed"}) == 1
    assert value("powerview_jobs_total", {"kind": "ingest", "outcome": "done"}) == 3
    assert value("powerview_jobs_total", {"kind": "provision", "outcome": "done"}) == 1
    assert value("powerview_ingest_duration_seconds_count") == 2
    assert value("powerview_upload_to_queryable_seconds_sum") == 30
    assert (
        value("powerview_last_success_timestamp_seconds", {"company": "acme", "device": "02001171"})
        == NOW
    )


def test_a_damaged_queue_file_makes_its_checks_unknown_not_the_command_crash(
    tmp_path: Path,
) -> None:
    (tmp_path / "queue.sqlite3").write_bytes(b"not a database, " * 100)
    report = health.run_checks(settings(state_dir=tmp_path, data_root=tmp_path))
    statuses = {check.name: check.status for check in report.checks}
    assert statuses["queue"] == Status.UNKNOWN
    assert statuses["worker"] == Status.UNKNOWN
    assert statuses["data root"] == Status.OK
    assert report.status == Status.UNKNOWN
    worker = next(c for c in report.checks if c.name == "worker")
    assert worker.message.startswith("heartbeats unreadable (DatabaseError: ")


def test_an_unwritable_state_folder_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    report = report_of(CheckResult("influxdb", Status.CRITICAL, "down"))
    outcome = alerts.notify(report, blocker, "http://127.0.0.1:9/x", "json", now=NOW)
    assert not outcome.sent
    assert outcome.error is not None
    assert outcome.error.startswith(f"alert state in {blocker} unusable (")
    assert outcome.as_check().status == Status.WARNING
