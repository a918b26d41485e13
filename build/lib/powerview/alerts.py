"""Alerts from `powerview health --notify`: once per new problem, then quiet.

Each problem of a health report has a key (`check` or `check:subject`). The
alert state, `<state_dir>/alerts.json`, remembers the open problems with when
they began and when they were last sent, so that across runs (and restarts):

- a problem not seen before, or one that got worse, is sent at once;
- a problem still open is sent again only after the quiet period
  (POWERVIEW_ALERT_QUIET_PERIOD_S) as a reminder;
- a problem that is gone is sent once as recovered;
- a problem of a check that could not run this time (InfluxDB down: no
  freshness check; a query that failed) is kept as it is, neither repeated
  nor recovered.

All events of one run go out in one webhook request, in one of three formats:
plain JSON, ntfy (text body, Title/Priority/Tags headers) or Slack-compatible
(`{"text": ...}`, also understood by Mattermost, Rocket.Chat and Discord's
`/slack` endpoints). The state is saved only when the webhook took the
request, so an alert that could not be delivered goes out on the next run.

Messages quote file and folder names that clients chose, so each format gets
its own escaping: Slack text escapes `&`, `<` and `>` (Slack's formatting
rules: `<!channel>` in a file name pings no one), ntfy headers carry no line
break and encode non-latin-1 text as RFC 2047 words, JSON goes through
`json.dumps`. A redirect is followed only to the webhook's own origin
(scheme, host, port): credentials never reach another server.

Webhook and heartbeat URLs carry secrets (a Slack path, an ntfy topic, a
token, `user:password@`): they appear in messages and logs only through
`mask_url`, and error texts are scrubbed of them.
"""

from __future__ import annotations

import base64
import contextlib
import email.header
import fcntl
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from powerview.health import CheckResult, HealthReport, Status, ago, iso, mask_url
from powerview.private_files import checked_dir, write_private

log = logging.getLogger(__name__)

STATE_FILE = "alerts.json"
LOCK_FILE = "alerts.lock"
STATE_VERSION = 1
TIMEOUT_S = 10.0
USER_AGENT = "powerview-health"
Format = Literal["json", "ntfy", "slack"]
EventKind = Literal["problem", "reminder", "recovered"]

_NTFY_TAGS = {
    Status.CRITICAL: "rotating_light",
    Status.UNKNOWN: "question",
    Status.WARNING: "warning",
}
_SLACK_ICONS = {
    Status.CRITICAL: ":red_circle:",
    Status.UNKNOWN: ":grey_question:",
    Status.WARNING: ":warning:",
    Status.OK: ":white_check_mark:",
}


@dataclass(frozen=True)
class Event:
    kind: EventKind
    check: str
    subject: str
    status: Status  # the problem's status; for a recovery, the status it had
    message: str  # the problem's message; for a recovery, its last one
    since: float  # when the problem began

    def line(self, now: float) -> str:
        """One line of text: `CRITICAL influxdb: ...`, `RECOVERED ...: ... (was: ...)`."""
        where = f"{self.check} {self.subject}" if self.subject else self.check
        if self.kind == "recovered":
            return (
                f"RECOVERED {where} after {ago(now - self.since)} "
                f"(was {self.status.label}: {self.message})"
            )
        again = f" (still, for {ago(now - self.since)})" if self.kind == "reminder" else ""
        return f"{self.status.name} {where}: {self.message}{again}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "check": self.check,
            "subject": self.subject,
            "status": self.status.label,
            "message": self.message,
            "since": iso(self.since),
        }


@dataclass
class AlertDelivery:
    """What `notify` did: the events of this run and whether the webhook took them."""

    events: list[Event] = field(default_factory=list)
    sent: bool = False
    error: str | None = None
    destination: str = ""

    def as_check(self) -> CheckResult:
        """A line for the health table (never itself alerted)."""
        if self.error:
            return CheckResult(
                "alerts",
                Status.WARNING,
                f"{len(self.events)} alert(s) not delivered to {self.destination}: {self.error}"
                " (retried on the next run)",
                alert=False,
            )
        text = f"{len(self.events)} sent to {self.destination}" if self.events else "nothing new"
        return CheckResult("alerts", Status.OK, text, alert=False)


# -- what to send (pure) -----------------------------------------------------------


def problem_key(check: str, subject: str) -> str:
    return f"{check}:{subject}" if subject else check


def plan(
    report: HealthReport, state: dict[str, dict[str, Any]], now: float, quiet_s: float
) -> tuple[list[Event], dict[str, dict[str, Any]]]:
    """The events to send now and the state to keep once they are delivered."""
    # A check that could not tell (UNKNOWN) says so, but its earlier problems stand.
    evaluated = {c.name for c in report.checks if c.alert and c.status != Status.UNKNOWN}
    events: list[Event] = []
    kept: dict[str, dict[str, Any]] = {}
    for check in report.checks:
        if not check.alert:
            continue
        for problem in check.problem_list():
            key = problem_key(check.name, problem.subject)
            old = state.get(key)
            entry: dict[str, Any] = {
                "check": check.name,
                "subject": problem.subject,
                "status": problem.status.label,
                "message": problem.message,
                "since": now if old is None else float(old["since"]),
                "last_sent": now if old is None else float(old["last_sent"]),
            }
            worse = old is not None and problem.status.severity > _status(old).severity
            kind: EventKind | None = None
            if old is None or worse:
                kind = "problem"
            elif now - float(old["last_sent"]) >= quiet_s:
                kind = "reminder"
            if kind is not None:
                entry["last_sent"] = now
                events.append(
                    Event(
                        kind,
                        check.name,
                        problem.subject,
                        problem.status,
                        problem.message,
                        entry["since"],
                    )
                )
            kept[key] = entry
    order = {check.name: index for index, check in enumerate(report.checks)}
    ranked = sorted(
        state.items(), key=lambda item: (order.get(str(item[1].get("check")), 99), item[0])
    )
    for key, old in ranked:
        if key in kept:
            continue
        if old.get("check") not in evaluated:
            kept[key] = old  # its check did not run this time: no news either way
            continue
        events.append(
            Event(
                "recovered",
                str(old.get("check")),
                str(old.get("subject") or ""),
                _status(old),
                str(old.get("message") or ""),
                float(old.get("since") or now),
            )
        )
    return events, kept


def _status(entry: dict[str, Any]) -> Status:
    try:
        return Status[str(entry.get("status", "unknown")).upper()]
    except KeyError:
        return Status.UNKNOWN


def title(events: list[Event], host: str) -> str:
    problems = [e for e in events if e.kind != "recovered"]
    if not problems:
        return f"PowerView on {host}: recovered"
    status = max((e.status for e in problems), key=lambda s: s.severity)
    return f"PowerView on {host}: {status.label}"


def build_request(
    events: list[Event], report: HealthReport, fmt: Format, now: float
) -> tuple[dict[str, str], bytes]:
    """The headers and body of the webhook request in format `fmt`."""
    lines = [event.line(now) for event in events]
    heading = title(events, report.host)
    if fmt == "ntfy":
        problems = [e for e in events if e.kind != "recovered"]
        worst = max((e.status for e in problems), key=lambda s: s.severity, default=Status.OK)
        priority = {Status.CRITICAL: "urgent", Status.UNKNOWN: "high", Status.WARNING: "high"}
        only_reminders = all(e.kind == "reminder" for e in problems)
        headers = {
            "Title": ntfy_header(heading),
            "Priority": "default" if only_reminders else priority.get(worst, "default"),
            "Tags": _NTFY_TAGS.get(worst, "white_check_mark"),
            "Content-Type": "text/plain; charset=utf-8",
        }
        return headers, "\n".join(lines).encode()
    if fmt == "slack":
        text = f"*{slack_escape(heading)}*\n" + "\n".join(
            f"{_SLACK_ICONS[Status.OK if e.kind == 'recovered' else e.status]} {slack_escape(line)}"
            for e, line in zip(events, lines, strict=True)
        )
        return {"Content-Type": "application/json"}, json.dumps({"text": text}).encode()
    body = {
        "source": "powerview",
        "host": report.host,
        "time": iso(now),
        "status": report.status.label,
        "title": heading,
        "events": [event.to_dict() for event in events],
        "text": "\n".join(lines),
    }
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def slack_escape(text: str) -> str:
    """Text Slack shows as it is: `&`, `<`, `>` escaped, so `<!channel>` is no mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def ntfy_header(text: str) -> str:
    """A header value: one line, latin-1 as is, anything else as an RFC 2047 word.

    ntfy decodes `=?UTF-8?B?...?=` in its Title and Tags headers; a line break
    would end the header and start another one.
    """
    line = " ".join(text.split())
    try:
        line.encode("latin-1")
    except UnicodeEncodeError:
        return email.header.Header(line, "utf-8").encode(maxlinelen=10_000)
    return line


# -- delivery ---------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the webhook's origin.

    urllib copies every header, Authorization included, onto the redirected
    request; a redirect elsewhere is answered as the 3xx it is, never followed.
    """

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOriginRedirects())


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """`https://user:pw@host/...` → the URL without them and a Basic auth header."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, {}
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    header = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    return urlunsplit(parts._replace(netloc=netloc)), header


def scrub(text: str, url: str) -> str:
    """`text` without the URL or any of its secret parts."""
    parts = urlsplit(url)
    secrets = [url, parts.path, parts.query, parts.username or "", parts.password or ""]
    for secret in sorted({s for s in secrets if len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


def http_send(
    url: str, body: bytes | None, headers: dict[str, str], timeout_s: float = TIMEOUT_S
) -> str | None:
    """POST `body` (GET when None) to `url`; None on a 2xx answer, else why not (scrubbed)."""
    target, auth = split_credentials(url)
    request = urllib.request.Request(  # noqa: S310  (http(s) checked below)
        target,
        data=body,
        headers={"User-Agent": USER_AGENT, **headers, **auth},
        method="GET" if body is None else "POST",
    )
    if urlsplit(target).scheme not in ("http", "https"):
        return "not an http(s) URL"
    try:
        with _OPENER.open(request, timeout=timeout_s) as reply:
            reply.read()
    except urllib.error.HTTPError as exc:
        return scrub(f"answered {exc.code} {exc.reason}", url)
    except urllib.error.URLError as exc:
        return scrub(f"unreachable ({exc.reason})", url)
    except (OSError, ValueError) as exc:
        return scrub(f"failed ({type(exc).__name__}: {exc})", url)
    return None


# -- state ----------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One `--notify` at a time (a timer run and a manual run must not both alert)."""
    with checked_dir(state_dir) as folder:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(LOCK_FILE, flags, 0o600, dir_fd=folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_state(state_dir: Path) -> dict[str, dict[str, Any]]:
    path = state_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("alert state %s unreadable (%s): starting afresh", path, exc)
        return {}
    problems = data.get("problems") if isinstance(data, dict) else None
    return problems if isinstance(problems, dict) else {}


def save_state(state_dir: Path, problems: dict[str, dict[str, Any]]) -> None:
    state = {"version": STATE_VERSION, "problems": problems}
    write_private(state_dir / STATE_FILE, json.dumps(state, indent=1, sort_keys=True))


def notify(
    report: HealthReport,
    state_dir: Path,
    url: str,
    fmt: Format = "json",
    quiet_s: float = 21_600.0,
    now: float | None = None,
) -> AlertDelivery:
    """Send what is new in `report` to the webhook and remember it."""
    moment = time.time() if now is None else now
    outcome = AlertDelivery(destination=mask_url(url))
    try:
        _notify(report, state_dir, url, fmt, quiet_s, moment, outcome)
    except OSError as exc:  # the state folder is not writable: said, never a crash
        outcome.sent = False
        outcome.error = f"alert state in {state_dir} unusable ({exc.strerror or exc})"
        log.error("alerts: %s", outcome.error)
    return outcome


def _notify(
    report: HealthReport,
    state_dir: Path,
    url: str,
    fmt: Format,
    quiet_s: float,
    moment: float,
    outcome: AlertDelivery,
) -> None:
    with _locked(state_dir):
        events, kept = plan(report, load_state(state_dir), moment, quiet_s)
        outcome.events = events
        if events:
            headers, body = build_request(events, report, fmt, moment)
            outcome.error = http_send(url, body, headers)
            if outcome.error:
                log.error("alert webhook %s %s", outcome.destination, outcome.error)
                return  # state unchanged: the same events go out next time
            outcome.sent = True
            log.info("%d alert event(s) sent to %s", len(events), outcome.destination)
        save_state(state_dir, kept)


def ping_heartbeat(url: str) -> CheckResult:
    """The dead-man switch: tell the heartbeat service this machine is alive and well."""
    error = http_send(url, None, {})
    if error:
        log.error("heartbeat %s %s", mask_url(url), error)
        return CheckResult(
            "heartbeat ping", Status.WARNING, f"{mask_url(url)} {error}", alert=False
        )
    return CheckResult("heartbeat ping", Status.OK, f"{mask_url(url)} pinged", alert=False)
