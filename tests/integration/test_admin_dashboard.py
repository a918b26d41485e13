"""The admin ingestion dashboard: every panel's Flux query, substituted as Grafana
would, returns rows from a real InfluxDB after an ingestion; provisioning posts it
with its datasource and folder into the admin's own organization, idempotently."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from powerview import settings as config
from powerview.influx import InfluxTarget
from powerview.ingest import IngestOptions, ingest_paths, write_run
from powerview.provision.admin_dashboard import (
    DATASOURCE_UID,
    FOLDER_UID,
    load_dashboard,
    provision_admin_dashboard,
)
from powerview.provision.tokens import revoke_tokens
from tests.conftest import InfluxInstance
from tests.grafana_standin import GrafanaStandin
from tests.integration.helpers_ops import file_point, write_lines

pytestmark = pytest.mark.influxdb

STALE_DEVICE = "02009999"


def grafana_v(now: dt.datetime) -> str:
    """The record Grafana gives a Flux query: the time range and the interval."""
    start = (now - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stop = (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"v = {{timeRangeStart: {start}, timeRangeStop: {stop}, windowPeriod: 1h}}\n"


def substitute(query: str, dashboard: dict[str, Any]) -> str:
    constants = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
    return re.sub(r"\$\{(\w+)\}", lambda m: str(constants[m[1]]), query)


@pytest.fixture
def ingested(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    bucket: str,
    samples: Path,
    tmp_path: Path,
) -> Iterator[tuple[str, str]]:
    """A company with one good and one rejected file ingested, meta points in `bucket`."""
    company = f"co_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "data"
    good = root / company / "c1" / "02001084"
    bad = root / company / "c1" / "02001283"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    shutil.copy(samples / "acme/campaign1/02001084/T302_251012_031720.tsv", good)
    shutil.copy(samples / "faulty/campaign/02001283/T302_260109_120045.tsv", bad)
    settings = config.Settings(meta_bucket=bucket, report_dir=tmp_path / "reports")
    target = InfluxTarget(influx_client, influxdb.org)
    run = ingest_paths(sorted(root.rglob("*.tsv")), target, IngestOptions(data_root=root))
    write_run(run, target, settings, root)
    assert run.meta_written
    assert [f.status for f in run.files] == ["success", "error"]
    # A device that last uploaded 40 hours ago.
    write_lines(
        influx_client,
        bucket,
        [file_point(time.time() - 40 * 3600, "success", company, "c1", STALE_DEVICE, "old.tsv")],
    )
    yield company, bucket
    api = influx_client.buckets_api()
    api.delete_bucket(api.find_bucket_by_name(company))


def run_panel(client: InfluxDBClient, query: str) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    tables = client.query_api().query(grafana_v(now) + query)
    return [record.values for table in tables for record in table.records]


def test_every_admin_panel_returns_rows_after_an_ingestion(
    influx_client: InfluxDBClient, ingested: tuple[str, str]
) -> None:
    company, meta_bucket = ingested
    dashboard = load_dashboard(meta_bucket, 26, "ds-uid", "influxdb-adecwatts-datasource")
    rows = {
        panel["title"]: run_panel(
            influx_client, substitute(panel["targets"][0]["query"], dashboard)
        )
        for panel in dashboard["panels"]
    }
    assert all(rows.values()), {title: len(found) for title, found in rows.items()}

    files = rows["Files ingested per company per day"]
    assert {r["company"] for r in files} == {company}
    assert sum(r["_value"] for r in files) == 2  # the good file and the 40-hour-old one
    values = rows["Values written per company per day"]
    written = sum(r["_value"] for r in values)
    assert written > 100  # the sample's points (+ the 100 of the hand-written point)
    assert {r["status"] for r in rows["Files per outcome per day"]} == {"success", "error"}
    rejected = rows["Rejected and deferred files"]
    assert [(r["company"], r["device"], r["status"]) for r in rejected] == [
        (company, "02001283", "error")
    ]
    assert rejected[0]["reason"]
    reasons = rows["Reject reasons"]
    assert [(r["reason"], r["files"]) for r in reasons] == [(rejected[0]["reason"], 1)]
    stale = rows["Stale devices"]
    assert [(r["company"], r["device"]) for r in stale] == [(company, STALE_DEVICE)]
    assert 39.9 < stale[0]["hours_since"] < 40.5


def test_the_dashboard_json_is_filled_in_for_the_deployment() -> None:
    dashboard = load_dashboard("my_meta", 30.5, "ds-1", "influxdb")
    constants = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
    assert constants == {"meta_bucket": "my_meta", "cadence_h": "30.5"}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "influxdb", "uid": "ds-1"}
        assert panel["targets"][0]["datasource"] == {"type": "influxdb", "uid": "ds-1"}
        assert '"${meta_bucket}"' in panel["targets"][0]["query"]
    assert len(dashboard["uid"]) <= 40


def test_provisioning_posts_it_once_into_the_admins_organization(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    bucket: str,
    grafana: GrafanaStandin,
    tmp_path: Path,
) -> None:
    settings = config.Settings(
        influxdb_url=influxdb.url,
        influxdb_org=influxdb.org,
        influxdb_admin_token=influxdb.token,
        meta_bucket=bucket,
        state_dir=tmp_path / "state",
        grafana_url=grafana.url,
        grafana_username=grafana.admin_user,
        grafana_password=grafana.admin_password,
        expected_cadence_h=30,
    )
    try:
        first = provision_admin_dashboard(settings)
        second = provision_admin_dashboard(settings)
        token = (tmp_path / "state" / "secrets" / f"{bucket}.token").read_text().strip()
    finally:
        revoke_tokens(influx_client, influxdb.org, bucket, tmp_path / "state" / "secrets")

    assert [(c.resource, c.action) for c in first] == [
        (f"read token for bucket {bucket}", "create"),
        ("folder PowerView admin", "create"),
        ("datasource powerview_meta", "create"),
        ("dashboard PowerView ingestion (admin)", "create"),
    ]
    assert second == []  # nothing differs the second time
    assert grafana.violations == []
    state = grafana.state
    datasource = state.datasource_by_uid(1, DATASOURCE_UID)
    assert datasource is not None  # in org 1, the admin's own
    assert datasource.secure_json_data == {"token": token}
    assert token != influxdb.token  # a read token of the meta bucket, never the admin's
    assert datasource.json_data["defaultBucket"] == bucket
    stored = state.dashboard(1, "pv-admin-ingestion")
    assert stored is not None
    assert stored.folder_uid == FOLDER_UID
    constants = {v["name"]: v["query"] for v in stored.model["templating"]["list"]}
    assert constants == {"meta_bucket": bucket, "cadence_h": "30"}


def test_a_renamed_admin_folder_is_reported_by_check_then_renamed_back_once(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    bucket: str,
    grafana: GrafanaStandin,
    tmp_path: Path,
) -> None:
    settings = config.Settings(
        influxdb_url=influxdb.url,
        influxdb_org=influxdb.org,
        influxdb_admin_token=influxdb.token,
        meta_bucket=bucket,
        state_dir=tmp_path / "state",
        grafana_url=grafana.url,
        grafana_username=grafana.admin_user,
        grafana_password=grafana.admin_password,
    )
    admin = grafana.client()
    try:
        provision_admin_dashboard(settings)
        folder = admin.folder.get_folder(FOLDER_UID)
        admin.folder.update_folder(FOLDER_UID, title="Renamed by hand", version=folder["version"])

        checked = provision_admin_dashboard(settings, check=True)
        title_after_check = admin.folder.get_folder(FOLDER_UID)["title"]
        mended = provision_admin_dashboard(settings)
        again = provision_admin_dashboard(settings)
    finally:
        revoke_tokens(influx_client, influxdb.org, bucket, tmp_path / "state" / "secrets")

    rename = ("update", "folder PowerView admin", "renamed from 'Renamed by hand'")
    assert [(c.action, c.resource, c.detail) for c in checked] == [rename]
    assert title_after_check == "Renamed by hand"
    assert [(c.action, c.resource, c.detail) for c in mended] == [rename]
    assert mended[0].diff()["after"] == {"uid": FOLDER_UID, "title": "PowerView admin"}
    assert admin.folder.get_folder(FOLDER_UID)["title"] == "PowerView admin"
    assert again == []
    assert grafana.violations == []
