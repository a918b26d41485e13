"""Every command that prints a result, twice: as text and with `--json`, against the real
InfluxDB and the Grafana stand-in. The JSON is valid and says the same facts as the text
(one result built, two renderings), and the exit status does not depend on the form."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from powerview import cli
from tests.conftest import InfluxInstance
from tests.grafana_standin.server import GrafanaStandin
from tests.integration.helpers_ingest import drop_buckets

SETTING_PREFIXES = ("POWERVIEW_", "INFLUXDB_", "TSV_", "GRAFANA_")
MONO = "v003-mono/02001311/T302_260122_162658_UTC.tsv"


@dataclass
class Both:
    """One command's text run and --json run."""

    status: int
    text: str
    json_status: int
    document: Any
    err: str = ""


@dataclass
class Env:
    data: Path
    state: Path
    grafana: GrafanaStandin
    capsys: pytest.CaptureFixture[str]
    companies: list[str] = field(default_factory=list)

    def company(self) -> str:
        name = f"co{uuid.uuid4().hex[:8]}"
        self.companies.append(name)
        return name

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = cli.run(list(argv))
        captured = self.capsys.readouterr()
        return int(status), captured.out, captured.err

    def both(self, *argv: str) -> Both:
        """`argv` as text, then `argv --json` (for commands that change nothing)."""
        status, text, _ = self.run(*argv)
        json_status, raw, err = self.run(*argv, "--json")
        assert raw, err
        return Both(status, text, json_status, json.loads(raw), err)


@pytest.fixture
def env(
    influxdb: InfluxInstance,
    grafana: GrafanaStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    influx_client: InfluxDBClient,
) -> Iterator[Env]:
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    meta = f"meta_{uuid.uuid4().hex[:10]}"
    for key, value in {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "TSV_META_BUCKET": meta,
        "TSV_REPORT_DIR": str(tmp_path / "reports"),
        "POWERVIEW_DATA_ROOT": str(tmp_path / "data"),
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
        "POWERVIEW_HEALTH_EXPECT": "",
        "GRAFANA_URL": grafana.url,
        "GRAFANA_USERNAME": grafana.admin_user,
        "GRAFANA_PASSWORD": grafana.admin_password,
        "POWERVIEW_TENANCY": "org",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "data").mkdir()
    created = Env(tmp_path / "data", (tmp_path / "state").resolve(), grafana, capsys)
    yield created
    drop_buckets(influx_client, [*created.companies, meta])
    assert grafana.violations == [], grafana.violations


def _rows(text: str) -> list[list[str]]:
    """A borderless table's rows as cells (two or more spaces apart), header dropped."""
    lines = [line for line in text.splitlines() if line.strip()]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


def test_config_json_has_every_row_of_the_table(env: Env) -> None:
    both = env.both("config")

    assert both.status == both.json_status == 0
    table = {cells[0]: cells for cells in _rows(both.text)}
    assert set(table) == {row["variable"] for row in both.document.values()}
    for row in both.document.values():
        assert table[row["variable"]][-1] == row["origin"]
    assert both.document["state_dir"]["value"] == str(env.state.parent / "state")


def test_tenant_create_json_lists_the_changes_and_shows_the_password_once(env: Env) -> None:
    company = env.company()

    check_status, check_text, _ = env.run(
        "tenant", "create", company, "--campaign", "c1", "--check"
    )
    status, raw, _ = env.run(
        "tenant", "create", company, "--campaign", "c1", "--default-user", "--json"
    )

    assert check_status == status == 0
    document = json.loads(raw)
    assert document["company"] == company
    assert document["check"] is False
    assert document["token_created"] is True
    assert document["changed"] is True
    created = {(c["action"], c["resource"]) for c in document["grafana"]["changes"]}
    # What --check said as text is what the run did (plus the default user, asked only here).
    would = set(re.findall(r"Grafana would change: (\w+) (.+?)(?: \(|$)", check_text, re.M))
    assert would
    assert would <= created
    org = env.grafana.state.org_by_name(company)
    assert org is not None
    user = env.grafana.state.user_by_login(f"user_{company}")
    assert user is not None
    assert document["default_user_password"] == user.password
    assert list(env.state.glob("secrets/*password*")) == []  # taken from disk once shown

    again = env.both("tenant", "create", company, "--campaign", "c1")
    assert again.status == again.json_status == 0
    assert "Grafana: no change" in again.text
    assert again.document["grafana"]["changes"] == []
    assert again.document["changed"] is False
    assert again.document["default_user_password"] is None


def test_tenant_delete_check_json_says_what_the_text_says(env: Env) -> None:
    company = env.company()
    assert env.run("tenant", "create", company, "--campaign", "c1")[0] == 0

    both = env.both("tenant", "delete", company, "--check")

    assert both.status == both.json_status == 0
    lines = re.findall(r"Grafana would change: (\w+) (.+?)(?: \(|$)", both.text, re.M)
    changes = both.document["grafana"]["changes"]
    assert lines
    assert lines == [(c["action"], c["resource"]) for c in changes]
    assert env.grafana.state.org_by_name(company) is not None  # --check changed nothing


def test_token_and_tenant_lists_in_json_match_their_tables(env: Env) -> None:
    company = env.company()
    assert env.run("tenant", "create", company)[0] == 0

    ensure = env.both("token", "ensure", company)
    tokens = env.both("token", "list", company)
    tenants = env.both("tenant", "list")

    assert ensure.status == ensure.json_status == 0
    assert ensure.document["created"] is False
    assert f"token for bucket {company!r} kept; value in {ensure.document['token_file']}" in (
        ensure.text
    )
    assert tokens.status == tokens.json_status == 0
    (token,) = tokens.document
    assert token["description"] == f"powerview_token_for_bucket_{company}"
    assert token["id"] == ensure.document["id"]
    assert token["permissions"]
    assert token["permissions"][0].startswith("read buckets/")
    assert [cells[:3] for cells in _rows(tokens.text)] == [
        [token["id"], token["description"], token["status"]]
    ]
    (row,) = [r for r in tenants.document if r["company"] == company]
    assert row == {"company": company, "bucket": True, "read_token": True, "token_on_file": True}
    assert [company, "yes", "yes"] in _rows(tenants.text)

    revoked_status, revoked_raw, _ = env.run("token", "revoke", company, "--json")
    assert revoked_status == 0
    assert json.loads(revoked_raw) == {"company": company, "revoked": 1}
    assert env.both("token", "list", company).document == []


def test_ingest_summary_queue_and_health_json_match_their_text(env: Env, samples: Path) -> None:
    company = env.company()
    target = env.data / company / MONO
    target.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / MONO, target)

    dry = env.both("ingest", str(env.data), "--dry-run")
    assert dry.status == dry.json_status == 0
    totals = dry.document["totals"]
    assert f"{totals['nb_files_total']} files: {totals['nb_files_success']} ingested" in dry.text
    assert f"{totals['nb_points_total']:,} points" in dry.text
    assert totals["nb_points_total"] > 0
    status, raw, _ = env.run("ingest", str(env.data), "--json")
    assert status == 0
    assert json.loads(raw)["files"][0]["status"] == "success"

    summary = env.both("summary", company)
    assert summary.status == summary.json_status == 0
    (row,) = summary.document
    assert row["bucket"] == company
    assert row["device"] == "02001311"
    # Stored points, not written ones: rows repeating a time overwrite each other.
    assert 0 < row["points"] <= totals["nb_points_total"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", row["first"]), row["first"]
    (cells,) = _rows(summary.text)
    assert cells[:4] == [company, row["campaign"], "02001311", f"{row['points']:,}"]
    assert cells[5] == row["first"].replace("T", " ")

    # The ingested file's campaign folder waits for its provisioning job.
    scan_status, scan_raw, _ = env.run("queue", "scan", "--json")
    assert scan_status == 0
    queued = json.loads(scan_raw)["queued"]
    assert queued >= 1
    shown = env.both("queue")
    assert shown.status == shown.json_status == 0
    assert shown.document["counts"]["queued"] == queued
    assert shown.text.startswith(
        ", ".join(f"{n} {state}" for state, n in shown.document["counts"].items())
    )
    table = _rows(shown.text.split("\n", 1)[1])  # below the counts line
    assert sorted(cells[:4] for cells in table) == sorted(
        [str(job["id"]), job["kind"], job["state"], str(job["attempts"])]
        for job in shown.document["jobs"]
    )

    health = env.both("health")
    assert health.status == health.json_status
    first_line = health.text.splitlines()[0]
    assert first_line.startswith(f"POWERVIEW {health.document['status'].upper()}")
    # The status line first, then the table.
    table = {cells[0]: cells[1] for cells in _rows(health.text.split("\n", 1)[1])}
    assert table == {c["name"]: c["status"].upper() for c in health.document["checks"]}
    assert first_line.startswith(health.document["summary"].split(" | ")[0])


def test_admin_dashboard_json_lists_the_changes_of_the_text(env: Env) -> None:
    check = env.both("tenant", "admin-dashboard", "--check")
    status, raw, _ = env.run("tenant", "admin-dashboard", "--json")
    again = env.both("tenant", "admin-dashboard", "--check")
    meta = os.environ["TSV_META_BUCKET"]
    assert env.run("token", "revoke", meta)[0] == 0

    assert check.status == check.json_status == status == 0
    expected = [
        f"Grafana would change: {c['action']} {c['resource']}"
        + (f" ({c['detail']})" if c["detail"] else "")
        for c in check.document["changes"]
    ]
    assert check.text.splitlines() == (expected or ["admin dashboard: no change"])
    applied = json.loads(raw)
    assert applied["check"] is False
    assert applied["changes"]  # the datasource at least: its token is this test's
    assert again.document == {"check": True, "changes": []}
    assert again.text.strip() == "admin dashboard: no change"
