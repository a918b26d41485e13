"""`powerview health`: every part of the pipeline checked, one status per part.

Each check returns a `CheckResult` (a status and a one-line message, plus the
individual problems it found, which the alerts deduplicate on); the report's
status is the worst of them. Statuses follow the monitoring-plugin convention,
so cron, systemd, Nagios, Icinga and friends can use the exit code as is:

    0 OK        every check passed
    1 WARNING   data is late, rejected or missing after its write (ledger), a
                queue waits too long, a process that is not expected is stale,
                a webhook is down
    2 CRITICAL  InfluxDB unreachable or refusing writes, an expected worker or
                watcher dead, the data root unusable, Grafana down, the queue
                stuck, hook events left in the spool (not drained)
    3 UNKNOWN   the check itself could not run (configuration error, a query
                that failed for another reason than InfluxDB being down)

For the worst status, UNKNOWN ranks between WARNING and CRITICAL (as Icinga
ranks service states): "cannot tell" is worse than a known warning.

Checks that depend on InfluxDB (freshness, rejects) are skipped when InfluxDB
failed: they say so with UNKNOWN but raise no alert, and alerts they raised
earlier are neither repeated nor recovered until they can run again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from powerview import spool
from powerview.exceptions import FormatError, InfluxRequestError, InfrastructureError
from powerview.influx import InfluxTarget, make_client, map_influx_errors
from powerview.processes import pid_alive
from powerview.queue import QUEUE_FILE, JobQueue
from powerview.report import FILE_MEASUREMENT
from powerview.settings import Settings, mask_url_secrets

HEALTH_MEASUREMENT = "powerview_health"
PROCESSES = ("worker", "watcher")  # heartbeat names in the queue's heartbeats table
REJECT_WINDOW_S = 3600  # rejected or deferred files are reported for an hour
# The worker drains the spool at every loop turn (a fraction of a second): an
# event still there after this long is not being drained at all.
SPOOL_MAX_AGE_S = 300.0
DISK_WARNING_FREE = 0.05  # data root's file system: warning under 5 % free
DISK_CRITICAL_FREE = 0.01
HTTP_TIMEOUT_S = 5.0
INFLUX_CHECK_TIMEOUT_S = 10.0
MAX_LISTED = 3  # problems named in a check's one-line message


class Status(IntEnum):
    """A check's outcome; the value is the monitoring-plugin exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class Problem:
    """One thing wrong; alerts are sent once per (check, subject)."""

    subject: str  # "" for the check as a whole, else e.g. "acme/02001084"
    status: Status
    message: str


@dataclass
class CheckResult:
    name: str
    status: Status
    message: str
    problems: list[Problem] = field(default_factory=list)
    data: dict[str, float] = field(default_factory=dict)  # numbers for perfdata and JSON
    alert: bool = True  # False: not evaluated (skipped) or about the alerting itself

    def problem_list(self) -> list[Problem]:
        if self.status == Status.OK:
            return []
        return self.problems or [Problem("", self.status, self.message)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.label,
            "message": self.message,
            "problems": [
                {"subject": p.subject, "status": p.status.label, "message": p.message}
                for p in self.problem_list()
            ],
            "data": self.data,
        }


@dataclass
class HealthReport:
    checks: list[CheckResult]
    at: float = field(default_factory=time.time)
    host: str = field(default_factory=socket.gethostname)

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    def summary(self) -> str:
        """One line: the status and what is wrong (the first line a monitoring system shows)."""
        bad = [c for c in self.checks if c.status != Status.OK]
        bad.sort(key=lambda c: -c.status.severity)
        text = "; ".join(f"{c.name}: {c.message}" for c in bad) or "all checks passed"
        return f"POWERVIEW {self.status.name} - {text}"

    def perfdata(self) -> str:
        values = [
            f"{name}={value:g}" for check in self.checks for name, value in check.data.items()
        ]
        return " ".join(values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.label,
            "exit_code": int(self.status),
            "host": self.host,
            "time": iso(self.at),
            "summary": self.summary(),
            "checks": [c.to_dict() for c in self.checks],
        }


def iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def ago(seconds: float) -> str:
    """A short, readable duration: 45 s, 12 min, 30.5 h, 3.2 d."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 4 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def mask_url(url: str) -> str:
    """An URL fit for logs: scheme, host and port only; user, path and query may be secrets."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "****"
    rest = "/****" if (parts.path.strip("/") or parts.query or parts.username) else ""
    return f"{parts.scheme or '?'}://{host}{port}{rest}"


def expected_processes(settings: Settings) -> set[str]:
    return {name for name in settings.health_expect.split(",") if name}


# -- the checks -----------------------------------------------------------------


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """A check that crashed is UNKNOWN with the reason, never a crash of the command."""
    try:
        return check()
    except Exception as exc:
        return CheckResult(name, Status.UNKNOWN, f"check failed: {type(exc).__name__}: {exc}")


def run_checks(settings: Settings, now: float | None = None) -> HealthReport:
    """Run every check once; `now` is for tests (heartbeat and data ages)."""
    moment = time.time() if now is None else now
    report = HealthReport(checks=[], at=moment)
    target = _open_target(settings)
    try:
        influx = _guarded("influxdb", lambda: check_influxdb(settings, target))
        report.checks.append(influx)
        queue_path = settings.state_dir / QUEUE_FILE
        beats: dict[str, dict[str, Any]] | Exception | None
        try:
            beats = _heartbeats(queue_path)
        except Exception as exc:  # a locked or damaged queue file: said by each check
            beats = exc
        report.checks.append(_guarded("queue", lambda: check_queue(settings, queue_path, moment)))
        report.checks.append(_guarded("spool", lambda: check_spool(settings.state_dir, moment)))
        report.checks.append(_guarded("ledger", lambda: check_ledger(settings.state_dir)))
        for name in PROCESSES:
            report.checks.append(_process_check(settings, name, beats, moment))
        report.checks.append(_guarded("data root", lambda: check_data_root(settings.data_root)))
        report.checks.append(_guarded("grafana", lambda: check_grafana(settings.grafana_url)))
        if target is None or influx.status != Status.OK:
            why = "InfluxDB not configured" if target is None else "InfluxDB failed"
            for name in ("freshness", "rejects"):
                report.checks.append(
                    CheckResult(name, Status.UNKNOWN, f"not checked: {why}", alert=False)
                )
        else:
            live = target
            report.checks.append(
                _guarded("freshness", lambda: check_freshness(settings, live, moment))
            )
            report.checks.append(_guarded("rejects", lambda: check_rejects(settings, live, moment)))
    finally:
        if target is not None:
            target.close()
    return report


def _process_check(
    settings: Settings,
    name: str,
    beats: dict[str, dict[str, Any]] | Exception | None,
    now: float,
) -> CheckResult:
    if isinstance(beats, Exception):
        reason = f"{type(beats).__name__}: {beats}"
        return CheckResult(name, Status.UNKNOWN, f"heartbeats unreadable ({reason})")
    return _guarded(name, lambda: check_process(settings, name, beats, now))


def _open_target(settings: Settings) -> InfluxTarget | None:
    """A client that fails fast: no retries, a short timeout (a check, not an ingestion)."""
    token = settings.influxdb_admin_token
    if token is None or not token.get_secret_value():
        return None
    client = make_client(
        settings.influxdb_url,
        token.get_secret_value(),
        settings.influxdb_org,
        min(settings.influxdb_timeout_s, INFLUX_CHECK_TIMEOUT_S),
        retries=0,
    )
    return InfluxTarget(client, settings.influxdb_org, gzip_level=0)


def check_influxdb(settings: Settings, target: InfluxTarget | None) -> CheckResult:
    """InfluxDB reachable and accepting a write: a tiny point in the meta bucket."""
    name = "influxdb"
    if target is None:
        return CheckResult(name, Status.UNKNOWN, "INFLUXDB_ADMIN_TOKEN is not set")
    started = time.perf_counter()
    host = socket.gethostname().replace(" ", "_").replace(",", "_").replace("=", "_")
    line = f"{HEALTH_MEASUREMENT},host={host} ok=1i {time.time_ns()}\n"
    try:
        target.ensure_bucket(settings.meta_bucket)
        target.write_now(settings.meta_bucket, line, precision="ns")
    except (InfrastructureError, InfluxRequestError, FormatError) as exc:
        # influx.py words connection errors without urllib3's object reprs.
        return CheckResult(
            name, Status.CRITICAL, f"{mask_url_secrets(settings.influxdb_url)}: {exc}"
        )
    elapsed = time.perf_counter() - started
    return CheckResult(
        name,
        Status.OK,
        f"{mask_url_secrets(settings.influxdb_url)} accepted a write to {settings.meta_bucket} "
        f"in {elapsed * 1000:.0f} ms",
        data={"influxdb_write_ms": round(elapsed * 1000, 1)},
    )


def _heartbeats(queue_path: Path) -> dict[str, dict[str, Any]] | None:
    if not queue_path.is_file():
        return None
    queue = JobQueue(queue_path, timeout_s=5)
    try:
        return queue.heartbeats()
    finally:
        queue.close()


def check_queue(settings: Settings, queue_path: Path, now: float) -> CheckResult:
    """Depth, age of the oldest waiting job and failed jobs of the durable queue."""
    name = "queue"
    if not queue_path.is_file():
        return CheckResult(
            name,
            Status.WARNING,
            f"no queue at {queue_path}: nothing was ever queued here (POWERVIEW_STATE_DIR?)",
        )
    queue = JobQueue(queue_path, timeout_s=5)
    try:
        counts = queue.counts()
        oldest = queue.oldest_waiting_age_s()
        failed = queue.jobs(("failed",), limit=20)
    finally:
        queue.close()
    if oldest is not None:
        oldest = max(0.0, oldest - (time.time() - now))  # as seen at `now`
    data = {
        "queued": float(counts["queued"]),
        "running": float(counts["running"]),
        "failed": float(counts["failed"]),
        "oldest_wait_s": round(oldest or 0.0, 1),
    }
    problems: list[Problem] = []
    limit = settings.queue_max_wait_s
    if oldest is not None and oldest > limit:
        status = Status.CRITICAL if oldest > 4 * limit else Status.WARNING
        problems.append(
            Problem(
                "waiting",
                status,
                f"oldest job waits for {ago(oldest)} (limit {ago(limit)}): is the worker stuck?",
            )
        )
    for job in failed:
        problems.append(
            Problem(job.key, Status.WARNING, f"job failed: {job.subject}: {job.last_error or '?'}")
        )
    base = f"{counts['queued']} queued, {counts['running']} running, {counts['failed']} failed" + (
        f", oldest waiting {ago(oldest)}" if oldest is not None else ""
    )
    if not problems:
        return CheckResult(name, Status.OK, base, data=data)
    status = worst(p.status for p in problems)
    named = [p.message for p in problems[:MAX_LISTED]]
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    return CheckResult(name, status, f"{base}; " + "; ".join(named) + more, problems, data)


def check_spool(state_dir: Path, now: float) -> CheckResult:
    """Events the hook could not queue: drained within a loop turn by a live worker."""
    name = "spool"
    events = spool.pending(state_dir, now)
    waiting = [e for e in events if not e.bad]
    bad = [e for e in events if e.bad]
    data = {"spooled": float(len(waiting)), "spool_unreadable": float(len(bad))}
    if not events:
        return CheckResult(name, Status.OK, "empty", data=data)
    problems: list[Problem] = []
    oldest = max((e.age_s for e in waiting), default=0.0)
    if waiting and oldest > SPOOL_MAX_AGE_S:
        problems.append(
            Problem(
                "",
                Status.CRITICAL,
                f"{len(waiting)} event(s) spooled, oldest {ago(oldest)}: the worker is not "
                f"draining {spool.spool_dir(state_dir)} (worker down, or the queue unusable?)",
            )
        )
    if bad:
        problems.append(
            Problem(
                "unreadable",
                Status.WARNING,
                f"{len(bad)} unreadable spool file(s) set aside: {bad[0].path.name}",
            )
        )
    if not problems:
        return CheckResult(
            name, Status.OK, f"{len(waiting)} event(s) spooled, being drained", data=data
        )
    status = worst(p.status for p in problems)
    return CheckResult(name, status, "; ".join(p.message for p in problems), problems, data)


def check_ledger(state_dir: Path) -> CheckResult:
    """Files whose points were not all found in InfluxDB when last counted (ledger.py).

    A warning per file, cleared when a later count (`powerview verify`, or the
    file ingested again) finds them all.
    """
    from powerview.ledger import mismatches

    name = "ledger"
    missing = mismatches(state_dir)
    if missing is None:
        return CheckResult(name, Status.OK, "no ledger yet (nothing ingested here)")
    data = {"ledger_mismatches": float(len(missing))}
    if not missing:
        return CheckResult(name, Status.OK, "every ingested file's points found", data=data)
    problems = [
        Problem(
            row.subject,
            Status.WARNING,
            f"{row.subject}: {row.missing} of {row.points_expected} points missing from InfluxDB"
            f" (counted {row.verified_at})",
        )
        for row in missing
    ]
    named = "; ".join(p.message for p in problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    message = f"{len(problems)} files with points missing: {named}{more}"
    return CheckResult(name, Status.WARNING, message, problems, data)


def check_process(
    settings: Settings, name: str, beats: dict[str, dict[str, Any]] | None, now: float
) -> CheckResult:
    """A worker or watcher is alive when its heartbeat is fresh.

    Expected processes (POWERVIEW_HEALTH_EXPECT) that never beat or beat too
    long ago are critical. One that is not expected and never beat is simply
    not deployed (an SFTPGo deployment has no watcher; a cron deployment runs
    `worker --until-idle` and has no long-lived worker); one that beat once
    and stopped is a warning, since something ran it and it stopped.
    """
    expected = name in expected_processes(settings)
    beat = (beats or {}).get(name)
    max_age = settings.heartbeat_max_age_s
    if beat is None:
        if expected:
            return CheckResult(
                name, Status.CRITICAL, f"never beat: no {name} ever ran with this state folder"
            )
        return CheckResult(name, Status.OK, "not deployed (never beat; not expected)")
    age = max(0.0, now - float(beat["at"]))
    where = f"pid {beat['pid']} on {beat['host']}"
    data = {f"{name}_beat_age_s": round(age, 1)}
    if age <= max_age:
        info = beat.get("info") or {}
        extra = ""
        if name == "worker" and "completed" in info:
            extra = f", {info.get('running', 0)} running, {info['completed']} done"
        return CheckResult(
            name, Status.OK, f"alive: {where}, beat {ago(age)} ago{extra}", data=data
        )
    gone = ""
    if beat["host"] == socket.gethostname() and not pid_alive(int(beat["pid"])):
        gone = " (that process no longer runs)"
    status = Status.CRITICAL if expected else Status.WARNING
    hint = "" if expected else "; not expected (POWERVIEW_HEALTH_EXPECT), so a warning"
    return CheckResult(
        name,
        status,
        f"heartbeat stale: last beat {ago(age)} ago (limit {ago(max_age)}), {where}{gone}{hint}",
        data=data,
    )


def check_data_root(root: Path) -> CheckResult:
    """The data root exists, can be listed and written, and its disk is not full."""
    name = "data root"
    if not root.is_dir():
        return CheckResult(name, Status.CRITICAL, f"{root} is not a folder (POWERVIEW_DATA_ROOT)")
    try:
        entries = len(os.listdir(root))
    except OSError as exc:
        return CheckResult(name, Status.CRITICAL, f"{root} cannot be read: {exc.strerror or exc}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".powerview-health-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return CheckResult(
            name, Status.CRITICAL, f"{root} cannot be written: {exc.strerror or exc}"
        )
    usage = shutil.disk_usage(root)
    free = usage.free / usage.total if usage.total else 1.0
    data = {"data_root_free_ratio": round(free, 4)}
    message = f"{root} readable and writable, {entries} entries, {free:.0%} of its disk free"
    if free < DISK_CRITICAL_FREE:
        return CheckResult(name, Status.CRITICAL, f"{message}: disk almost full", data=data)
    if free < DISK_WARNING_FREE:
        return CheckResult(name, Status.WARNING, f"{message}: disk nearly full", data=data)
    return CheckResult(name, Status.OK, message, data=data)


def check_grafana(url: str | None) -> CheckResult:
    """Grafana's `GET /api/health` answers 200 with its database ok (when configured)."""
    name = "grafana"
    if not url:
        return CheckResult(name, Status.OK, "not configured (GRAFANA_URL unset)")
    shown = mask_url(url) if urlsplit(url).username else url
    health_url = url.rstrip("/") + "/api/health"
    try:
        with urllib.request.urlopen(health_url, timeout=HTTP_TIMEOUT_S) as reply:  # noqa: S310
            body = json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return CheckResult(name, Status.CRITICAL, f"{shown}: /api/health answered {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return CheckResult(name, Status.CRITICAL, f"{shown} unreachable ({reason})")
    except ValueError:
        return CheckResult(name, Status.CRITICAL, f"{shown}: /api/health is not JSON")
    database = body.get("database")
    if database != "ok":
        return CheckResult(name, Status.CRITICAL, f"{shown}: database {database!r}")
    return CheckResult(name, Status.OK, f"{shown} healthy, version {body.get('version', '?')}")


# Last successful file per company (tag `bucket`) and device over the window.
_FRESHNESS_FLUX = f"""
from(bucket: bucket)
  |> range(start: start)
  |> filter(fn: (r) => r._measurement == "{FILE_MEASUREMENT}" and r._field == "nb_points"
      and r.status == "success")
  |> group(columns: ["bucket", "device_master_sn"])
  |> sort(columns: ["_time"])
  |> last()
"""

# The latest outcome of each file seen in the last hour; kept if it is not a success.
# Not last(): a success's `error` is "", which reads back as null, and last() skips
# nulls (it would return the file's earlier deferral); last(column: "_time") panics.
_REJECTS_FLUX = f"""
from(bucket: bucket)
  |> range(start: start)
  |> filter(fn: (r) => r._measurement == "{FILE_MEASUREMENT}" and r._field == "error")
  |> group(columns: ["bucket", "campaign", "device_master_sn", "file_name"])
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: 1)
  |> filter(fn: (r) => r.status != "success")
"""


def _query(target: InfluxTarget, flux: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with map_influx_errors("querying the meta bucket"):
        tables = target.client.query_api().query(flux, params=params)
    return [record.values for table in tables for record in table.records]


def check_freshness(settings: Settings, target: InfluxTarget, now: float) -> CheckResult:
    """Each device's last successfully ingested file against the expected cadence."""
    name = "freshness"
    window_s = settings.freshness_window_d * 86_400
    start = dt.datetime.fromtimestamp(now - window_s, dt.UTC)
    rows = _query(target, _FRESHNESS_FLUX, {"bucket": settings.meta_bucket, "start": start})
    cadence_s = settings.expected_cadence_h * 3600
    late: list[tuple[float, Problem]] = []
    companies = set()
    for row in rows:
        company = str(row.get("bucket") or "?")
        device = str(row.get("device_master_sn") or "?")
        companies.add(company)
        age = now - row["_time"].timestamp()
        if age > cadence_s:
            message = (
                f"{company}/{device}: last file {ago(age)} ago "
                f"(expected every {settings.expected_cadence_h:g} h)"
            )
            late.append((age, Problem(f"{company}/{device}", Status.WARNING, message)))
    late.sort(key=lambda item: (-item[0], item[1].subject))
    problems = [problem for _, problem in late]
    data = {"devices": float(len(rows)), "late_devices": float(len(problems))}
    window = f"{settings.freshness_window_d:g} d"
    if not rows:
        return CheckResult(name, Status.OK, f"no file ingested in the last {window}", data=data)
    if not problems:
        return CheckResult(
            name,
            Status.OK,
            f"{len(rows)} devices of {len(companies)} companies uploaded within "
            f"{settings.expected_cadence_h:g} h",
            data=data,
        )
    named = "; ".join(p.message for p in problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    message = f"{len(problems)} of {len(rows)} devices late: {named}{more}"
    return CheckResult(name, Status.WARNING, message, problems, data)


def check_rejects(settings: Settings, target: InfluxTarget, now: float) -> CheckResult:
    """Files rejected (error/) or deferred (left for a retry) in the last hour."""
    name = "rejects"
    start = dt.datetime.fromtimestamp(now - REJECT_WINDOW_S, dt.UTC)
    rows = _query(target, _REJECTS_FLUX, {"bucket": settings.meta_bucket, "start": start})
    problems = []
    for row in sorted(rows, key=lambda r: r["_time"]):
        path = "/".join(
            str(row.get(tag) or "?") for tag in ("bucket", "campaign", "device_master_sn")
        )
        path += f"/{row.get('file_name') or '?'}"
        status = str(row.get("status"))
        verb = "rejected" if status == "error" else status
        reason = str(row.get("_value") or "no reason recorded")
        problems.append(Problem(path, Status.WARNING, f"{verb} {path}: {reason}"))
    data = {"rejected_files": float(len(problems))}
    if not problems:
        return CheckResult(
            name, Status.OK, "no file rejected or deferred in the last hour", data=data
        )
    named = "; ".join(p.message for p in problems[:MAX_LISTED])
    more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
    message = f"{len(problems)} files rejected or deferred in the last hour: {named}{more}"
    return CheckResult(name, Status.WARNING, message, problems, data)
