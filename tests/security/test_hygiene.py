"""Hygiene attacks (issue 10, "Smaller"): each test is the attack, against the real parts.

- private files: links planted at a secret's target and at its old temporary
  name, then `powerview token ensure`, the stack's env file and the alert state;
- output: an upload over real SFTP with a `[/x]` label and `\\x1b[2J` in its
  name, then `powerview ingest`;
- alerts: `<!channel>` in a name, a webhook that redirects elsewhere (two real
  local HTTP servers);
- `powerview config` with a password inside a URL;
- reserved company names through `tenant create`, `token ensure` and the hook;
- the Grafana uid pair that used to collide.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from powerview import alerts, events, private_files, stack
from powerview import settings as config
from powerview.health import CheckResult, HealthReport, Problem, Status
from powerview.plain_text import VisibleFormatter
from powerview.provision import provision_campaign
from powerview.provision.dashboard import dashboard_uid, legacy_dashboard_uid
from tests.conftest import SAMPLES, InfluxInstance
from tests.e2e.sshd import Company
from tests.integration.helpers_ops import Result, powerview, receiver, set_env

OUTSIDE_TEXT = "precious: not PowerView's to write\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the state folder that a planted link points at."""
    path = tmp_path / "outside" / "precious.txt"
    path.parent.mkdir()
    path.write_text(OUTSIDE_TEXT)
    return path


def _plant(folder: Path, names: list[str], target: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(target)


def _assert_private(path: Path, outside: Path) -> None:
    assert outside.read_text() == OUTSIDE_TEXT
    info = path.lstat()
    assert stat.S_ISREG(info.st_mode), f"{path} is not a regular file"
    assert stat.S_IMODE(info.st_mode) == 0o600
    # No temporary file left behind: only the planted links end in .tmp.
    assert all(p.is_symlink() for p in path.parent.iterdir() if p.name.endswith(".tmp"))


# -- private files ---------------------------------------------------------------------


def test_token_ensure_writes_no_secret_through_a_planted_link(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    tmp_path: Path,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    company = f"co{uuid.uuid4().hex[:8]}"
    secrets = state / "secrets"
    _plant(secrets, [f"{company}.token", f".{company}.token.tmp"], outside)
    secrets.chmod(0o700)
    set_env(
        monkeypatch,
        tmp_path,
        INFLUXDB_URL=influxdb.url,
        INFLUXDB_ORG=influxdb.org,
        INFLUXDB_ADMIN_TOKEN=influxdb.token,
        POWERVIEW_STATE_DIR=str(state),
    )
    try:
        result = powerview(capsys, "token", "ensure", company)
        assert result.status == 0, result.err
        token_file = secrets / f"{company}.token"
        _assert_private(token_file, outside)
        # The value on file is the token InfluxDB made: it reads the company's bucket.
        token = token_file.read_text().strip()
        with InfluxDBClient(url=influxdb.url, token=token, org=influxdb.org) as reader:
            reader.query_api().query(f'from(bucket: "{company}") |> range(start: -1m)')
    finally:
        bucket = influx_client.buckets_api().find_bucket_by_name(company)
        if bucket is not None:
            influx_client.buckets_api().delete_bucket(bucket)


def test_stack_env_file_and_alert_state_replace_planted_links(
    tmp_path: Path, outside: Path
) -> None:
    state = tmp_path / "state"
    _plant(state, ["stack.env", ".stack.env.tmp", "alerts.json", ".alerts.json.tmp"], outside)
    state.chmod(0o700)
    stack.write_env_file(state / "stack.env", {"INFLUXDB_ADMIN_TOKEN": "s3cret"})
    alerts.save_state(state, {"influxdb": {"check": "influxdb", "since": 1.0, "last_sent": 1.0}})
    _assert_private(state / "stack.env", outside)
    _assert_private(state / "alerts.json", outside)
    assert "INFLUXDB_ADMIN_TOKEN=s3cret" in (state / "stack.env").read_text()
    assert "influxdb" in alerts.load_state(state)


def test_the_alert_lock_is_not_opened_through_a_planted_link(tmp_path: Path, outside: Path) -> None:
    state = tmp_path / "state"
    _plant(state, [alerts.LOCK_FILE], outside)
    state.chmod(0o700)
    outcome = alerts.notify(_report("fine"), state, "http://127.0.0.1:9/never")
    assert outcome.error is not None
    assert "unusable" in outcome.error
    assert outside.read_text() == OUTSIDE_TEXT


@pytest.mark.parametrize(
    ("mode", "refused"),
    [
        (0o700, None),
        (0o755, None),
        (0o2770, None),  # the deployment's shared folder: setgid, one group
        (0o770, "group-writable"),
        (0o777, "world-writable"),
        (0o2777, "world-writable"),
    ],
)
def test_an_unsafe_state_folder_is_refused_before_any_secret_is_written(
    tmp_path: Path,
    mode: int,
    refused: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(mode)
    target = state / "stack.env"
    if refused is None:
        private_files.write_private(target, "x=1\n")
        assert target.read_text() == "x=1\n"
        return
    with pytest.raises(private_files.UnsafeDirError, match=refused):
        private_files.write_private(target, "x=1\n")
    assert not target.exists()
    # Every command that opens the state folder stops with one line and status 2.
    set_env(monkeypatch, tmp_path, POWERVIEW_STATE_DIR=str(state))
    result = powerview(capsys, "queue")
    assert result.status == 2
    assert refused in result.err
    assert "Traceback" not in result.err


def test_a_state_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    with pytest.raises(private_files.UnsafeDirError, match="link"):
        private_files.write_private(tmp_path / "state" / "stack.env", "x=1\n")
    assert list(real.iterdir()) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o007, 0o2770), (0o077, 0o700), (0o022, 0o755)])
def test_a_state_folder_powerview_creates_is_one_it_accepts(
    tmp_path: Path, umask: int, mode: int
) -> None:
    """The hook (umask 0007) may be first to make the state folder: shared, so setgid."""
    state = tmp_path / "state"
    old = os.umask(umask)
    try:
        private_files.make_shared_dir(state)
    finally:
        os.umask(old)
    assert stat.S_IMODE(state.stat().st_mode) == mode
    assert private_files.check_state_dir(state) == state
    state.chmod(0o770)  # an existing folder is the operator's: left as it is, and refused
    private_files.make_shared_dir(state)
    with pytest.raises(private_files.UnsafeDirError, match="group-writable"):
        private_files.check_state_dir(state)


def test_a_secret_root_writes_in_the_services_state_folder_stays_the_services(
    tmp_path: Path,
) -> None:
    """`tenant create` runs as root; the worker must still read and replace its tokens."""
    assert os.geteuid() == 0, "this test plays root writing for the service user"
    service = 65534  # nobody: any user but root
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, service, service)
    token = state / "secrets" / "acme.token"
    private_files.write_private(token, "t1\n")
    private_files.write_private(token, "t2\n")  # the folder root handed over is accepted
    for path in (token.parent, token):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (service, service), path
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text() == "t2\n"
    # A folder of another owner inside a root-owned one is still refused.
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, service, service)
    os.chown(tmp_path, 0, 0)
    with pytest.raises(private_files.UnsafeDirError, match="belongs to uid"):
        private_files.write_private(foreign / "x.token", "x\n")


# -- output hygiene ----------------------------------------------------------------------


def test_hostile_labels_and_names_are_printed_as_plain_visible_text(
    company: Company,
    connect: Callable[..., Any],
    data_root: Path,
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = (SAMPLES / "acme/campaign1/02001084/T302_251012_031720.tsv").read_bytes()
    lines = good.split(b"\n")
    lines[1] = lines[1].replace(b"Ph 1 V", b"[/x]", 1)  # a label without a unit: rejected
    hostile = b"\n".join(lines)
    sftp = connect(company)
    for folder in ("c1", "c1/02001084"):
        sftp.mkdir(f"{company.home}/{folder}")
    # A name with an escape sequence is set aside for its name (its content is good);
    # a label with Rich markup is rejected for its content, under a name with markup.
    sftp.put(f"{company.home}/c1/02001084/T302_\x1b[2J_x.tsv", good)
    sftp.put(f"{company.home}/c1/02001084/T302_[bold]x.tsv", hostile)
    sftp.put(f"{company.home}/c1/02001084/ok_:smile:.tsv", good)
    set_env(
        monkeypatch,
        tmp_path,
        INFLUXDB_URL=influxdb.url,
        INFLUXDB_ORG=influxdb.org,
        INFLUXDB_ADMIN_TOKEN=influxdb.token,
        TSV_META_BUCKET=influxdb.meta_bucket,
        TSV_REPORT_DIR=str(tmp_path / "reports"),
        POWERVIEW_DATA_ROOT=str(data_root),
        POWERVIEW_STATE_DIR=str(tmp_path / "state"),
    )
    try:
        result = powerview(capsys, "ingest", str(data_root))
    finally:
        bucket = influx_client.buckets_api().find_bucket_by_name(company.name)
        if bucket is not None:
            influx_client.buckets_api().delete_bucket(bucket)
    assert result.status == 1, result  # two files rejected, the other ingested
    printed = result.out + result.err
    assert "\x1b" not in printed
    assert "T302_\\x1b[2J_x.tsv" in printed
    assert "T302_[bold]x.tsv" in printed
    assert "'[/x]'" in printed
    assert "1 ingested" in result.out
    assert "2 rejected" in result.out
    assert (company.folder / "c1/02001084/error/T302_\x1b[2J_x.tsv").read_bytes() == good
    assert (company.folder / "c1/02001084/error/T302_[bold]x.tsv").read_bytes() == hostile
    assert (company.folder / "c1/02001084/parsed/ok_:smile:.tsv").is_file()


# -- alerts ------------------------------------------------------------------------------


def _report(message: str) -> HealthReport:
    check = CheckResult(
        "freshness", Status.CRITICAL, message, problems=[Problem("acme", Status.CRITICAL, message)]
    )
    return HealthReport(host="pv-host", checks=[check])


def test_a_slack_mention_in_a_name_pings_no_one(tmp_path: Path) -> None:
    with receiver() as hook:
        outcome = alerts.notify(
            _report("no data from <!channel> & <https://evil|click>"), tmp_path, hook.url, "slack"
        )
        assert outcome.sent
        (request,) = hook.wait_for(1)
    text = request.json()["text"]
    assert "<!channel>" not in text
    assert "<https://evil|click>" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in text


def test_ntfy_headers_stay_one_line_whatever_the_host_name(tmp_path: Path) -> None:
    report = _report("x")
    report.host = "pv\r\nX-Injected: 1 ✓"
    with receiver() as hook:
        assert alerts.notify(report, tmp_path, hook.url, "ntfy").sent
        (request,) = hook.wait_for(1)
    assert "X-Injected" not in request.headers
    assert request.headers["Title"].startswith("=?utf-8?")


class _Redirector(BaseHTTPRequestHandler):
    location = ""

    def do_POST(self) -> None:
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        self.send_response(307)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def redirector() -> Iterator[ThreadingHTTPServer]:
    import threading

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("body", [b"{}", None], ids=["webhook POST", "heartbeat GET"])
def test_webhook_credentials_never_follow_a_redirect_to_another_origin(
    redirector: ThreadingHTTPServer, body: bytes | None
) -> None:
    with receiver() as elsewhere:
        _Redirector.location = f"{elsewhere.url}/steal"
        port = redirector.server_address[1]
        error = alerts.http_send(f"http://alice:pw@127.0.0.1:{port}/hook", body, {})
        assert error is not None
        assert "307" in error
        assert redirector.seen[0]["Authorization"].startswith("Basic ")  # sent to the webhook
        assert elsewhere.requests == []  # and nothing, credentials least, to the other server


def test_a_redirect_within_the_webhook_origin_is_followed(
    redirector: ThreadingHTTPServer,
) -> None:
    # Same host and port, another path: answered by the same redirecting server,
    # so urllib's loop guard ends it; what matters is that it was followed.
    port = redirector.server_address[1]
    _Redirector.location = f"http://127.0.0.1:{port}/moved"
    alerts.http_send(f"http://127.0.0.1:{port}/hook", None, {})
    assert len(redirector.seen) > 1


# -- secrets in settings -----------------------------------------------------------------


def test_config_masks_passwords_inside_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(
        monkeypatch,
        tmp_path,
        INFLUXDB_URL="http://bob:s3cret-pw@127.0.0.1:8086",
        GRAFANA_URL="https://admin:hunter2@grafana.example/?api_key=k3y&org=1",
    )
    text = powerview(capsys, "config").out
    as_json = powerview(capsys, "config", "--json").out
    for shown in (text, as_json):
        assert "s3cret-pw" not in shown
        assert "hunter2" not in shown
        assert "k3y" not in shown
        assert "bob:***@127.0.0.1:8086" in shown
        assert "api_key=***&org=1" in shown


# -- reserved names ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["powerview_meta", "my_meta", "acme_1h", "Acme_1D", "extra1"])
def test_reserved_company_names_are_refused_by_tenant_create_and_token_ensure(
    name: str,
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(
        monkeypatch,
        tmp_path,
        INFLUXDB_URL=influxdb.url,
        INFLUXDB_ORG=influxdb.org,
        INFLUXDB_ADMIN_TOKEN=influxdb.token,
        TSV_META_BUCKET="my_meta",
        POWERVIEW_RESERVED_NAMES="extra1, extra2",
        POWERVIEW_STATE_DIR=str(tmp_path / "state"),
    )
    for argv in (("tenant", "create", name), ("token", "ensure", name)):
        result: Result = powerview(capsys, *argv)
        assert result.status == 2, result
        assert f"company name {name!r} is reserved" in result.err
    if name != influxdb.meta_bucket:  # the test server's own meta bucket exists already
        assert influx_client.buckets_api().find_bucket_by_name(name) is None
    descriptions = [a.description for a in influx_client.authorizations_api().find_authorizations()]
    assert f"powerview_token_for_bucket_{name}" not in descriptions
    assert not (tmp_path / "state" / "secrets" / f"{name}.token").exists()


def test_the_hook_ignores_a_campaign_made_in_a_reserved_company(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "powerview_meta" / "x").mkdir(parents=True)
    env = {
        "SFTPGO_ACTION": "mkdir",
        "SFTPGO_ACTION_USERNAME": "powerview_meta",
        "SFTPGO_ACTION_PATH": str(root / "powerview_meta" / "x"),
    }
    decision = events.decide_sftpgo(env, root)
    assert decision.kind is None
    assert "reserved" in decision.reason


# -- Grafana uids ------------------------------------------------------------------------


def test_the_uid_pair_that_collided_is_now_distinct() -> None:
    assert legacy_dashboard_uid("a", "b-c") == legacy_dashboard_uid("a-b", "c")
    assert dashboard_uid("a", "b-c") != dashboard_uid("a-b", "c")


def test_json_alert_bodies_are_json_whatever_the_message(tmp_path: Path) -> None:
    with receiver() as hook:
        assert alerts.notify(_report('"},{"x":1} \x1b[2J'), tmp_path, hook.url, "json").sent
        (request,) = hook.wait_for(1)
    assert request.json()["events"][0]["message"] == '"},{"x":1} \x1b[2J'
    assert json.loads(request.body)["events"][0]["subject"] == "acme"


def test_log_lines_show_control_characters_and_mask_url_passwords() -> None:
    formatter = VisibleFormatter("%(message)s")
    record = logging.LogRecord(
        "powerview", logging.ERROR, __file__, 1, "upload %s to %s", ("a\x1b[2J\rb", None), None
    )
    record.args = ("a\x1b[2J\rb", "http://bob:s3cret@influx:8086/api")
    line = formatter.format(record)
    assert line == "upload a\\x1b[2J\\x0db to http://bob:***@influx:8086/api"


def test_the_workers_provisioning_job_refuses_a_configured_reserved_name_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, tmp_path, POWERVIEW_RESERVED_NAMES="extra1")
    result = provision_campaign(config.load(), "extra1", "c1")
    assert result["outcome"] == "done"  # not retried: no later attempt can succeed
    assert result["status"] == "refused"
    assert "'extra1' is reserved" in result["error"]
