"""The Grafana ensure core: pure plans, and the applier through the `connect` seam.

The plans are pure functions and are tested as such. The applier is tested through
`GrafanaTenant(connect, ...)` and `provision_admin_dashboard(connect=...)` with
`FakeGrafana`, an in-memory double of the part of grafana-client's `GrafanaApi`
PowerView calls, which records every write. Grafana's real behaviour is tested
against the stand-in (tests/integration/test_tenant.py, test_admin_dashboard.py).
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from powerview import settings as config
from powerview.provision.admin_dashboard import FOLDER_TITLE, FOLDER_UID, provision_admin_dashboard
from powerview.provision.dashboard import build_dashboard
from powerview.provision.grafana import GrafanaError, GrafanaTenant, TenantSpec
from powerview.provision.grafana_ensure import (
    describe_diff,
    flux_datasource,
    plan_dashboard,
    plan_datasource,
    plan_folder,
    plan_folder_permissions,
)

TOKEN = "read-token-value-7f3c"


def _absent(what: str) -> GrafanaClientError:
    return GrafanaClientError(404, None, f"{what} not found")


class FakeGrafana:
    """In-memory double of grafana-client's GrafanaApi at the `connect` seam.

    Organizations are not told apart (the stand-in does that); every write is
    appended to `writes` as (method, key arguments), reads are not.
    """

    def __init__(self) -> None:
        self.org_ids: dict[str, int] = {}
        self.team_ids: dict[str, int] = {}
        self.folder_rows: dict[str, dict[str, Any]] = {}
        self.acl: dict[str, list[dict[str, Any]]] = {}
        self.datasource_rows: dict[str, dict[str, Any]] = {}
        self.dashboard_rows: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[Any, ...]] = []
        self.connected: list[int | None] = []

    def connect(self, org_id: int | None) -> GrafanaApi:
        """The seam: stands where `connector(...)` returns a client for `org_id`."""
        self.connected.append(org_id)
        return cast(GrafanaApi, self)

    # grafana-client groups calls in namespaces; their method names do not clash.
    @property
    def organization(self) -> FakeGrafana:
        return self

    organizations = teams = folder = datasource = dashboard = search = organization

    def find_organization(self, name: str) -> dict[str, Any]:
        if name not in self.org_ids:
            raise _absent("organization")
        return {"id": self.org_ids[name], "name": name}

    def create_organization(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("create_organization", body["name"]))
        self.org_ids[body["name"]] = len(self.org_ids) + 2
        return {"orgId": self.org_ids[body["name"]], "message": "Organization created"}

    def delete_organization(self, org_id: int) -> None:
        self.writes.append(("delete_organization", org_id))
        self.org_ids = {k: v for k, v in self.org_ids.items() if v != org_id}

    def search_teams(self, query: str) -> list[dict[str, Any]]:
        return [{"id": i, "name": n} for n, i in self.team_ids.items() if query in n]

    def add_team(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(("add_team", body["name"]))
        self.team_ids[body["name"]] = len(self.team_ids) + 10
        return {"teamId": self.team_ids[body["name"]]}

    def delete_team(self, team_id: int) -> None:
        self.writes.append(("delete_team", team_id))
        self.team_ids = {k: v for k, v in self.team_ids.items() if v != team_id}

    def get_folder(self, uid: str) -> dict[str, Any]:
        if uid not in self.folder_rows:
            raise _absent("folder")
        return dict(self.folder_rows[uid])

    def create_folder(self, title: str, uid: str) -> dict[str, Any]:
        self.writes.append(("create_folder", uid, title))
        self.folder_rows[uid] = {"uid": uid, "title": title, "version": 1}
        # Grafana's default grants on a new folder.
        self.acl[uid] = [{"role": "Editor", "permission": 2}, {"role": "Viewer", "permission": 1}]
        return dict(self.folder_rows[uid])

    def update_folder(self, uid: str, title: str, version: int) -> dict[str, Any]:
        self.writes.append(("update_folder", uid, title))
        assert version == self.folder_rows[uid]["version"]  # a stale version is a 412
        self.folder_rows[uid] = {"uid": uid, "title": title, "version": version + 1}
        return dict(self.folder_rows[uid])

    def delete_folder(self, uid: str) -> None:
        self.writes.append(("delete_folder", uid))
        del self.folder_rows[uid]

    def get_folder_permissions(self, uid: str) -> list[dict[str, Any]]:
        if uid not in self.acl:
            raise _absent("folder")
        return list(self.acl[uid])

    def update_folder_permissions(self, uid: str, items: dict[str, Any]) -> None:
        self.writes.append(("update_folder_permissions", uid))
        self.acl[uid] = list(items["items"])

    def get_datasource_by_uid(self, uid: str) -> dict[str, Any]:
        if uid not in self.datasource_rows:
            raise _absent("datasource")
        stored = dict(self.datasource_rows[uid])
        secure = stored.pop("secureJsonData", {})  # write-only, as in Grafana
        return {**stored, "secureJsonFields": {key: True for key in secure}}

    def get_datasource_by_name(self, name: str) -> dict[str, Any]:
        for uid, row in self.datasource_rows.items():
            if row["name"] == name:
                return self.get_datasource_by_uid(uid)
        raise _absent("datasource")

    def create_datasource(self, body: dict[str, Any]) -> None:
        self.writes.append(("create_datasource", body["uid"]))
        self.datasource_rows[body["uid"]] = {**body, "id": len(self.datasource_rows) + 1}

    def update_datasource_by_uid(self, uid: str, body: dict[str, Any]) -> None:
        self.writes.append(("update_datasource_by_uid", uid))
        kept = self.datasource_rows[uid].get("secureJsonData", {})
        self.datasource_rows[uid] = {"secureJsonData": kept, **body}

    def delete_datasource_by_uid(self, uid: str) -> None:
        self.writes.append(("delete_datasource_by_uid", uid))
        del self.datasource_rows[uid]

    def get_dashboard(self, uid: str) -> dict[str, Any]:
        if uid not in self.dashboard_rows:
            raise _absent("dashboard")
        copied: dict[str, Any] = json.loads(json.dumps(self.dashboard_rows[uid]))
        return copied

    def update_dashboard(self, body: dict[str, Any]) -> None:
        uid = body["dashboard"]["uid"]
        self.writes.append(("update_dashboard", uid))
        model = {**body["dashboard"], "id": 7, "version": 3}
        self.dashboard_rows[uid] = {"dashboard": model, "meta": {"folderUid": body["folderUid"]}}

    def delete_dashboard(self, uid: str) -> None:
        self.writes.append(("delete_dashboard", uid))
        del self.dashboard_rows[uid]

    def search_dashboards(self, type_: str, folder_uids: list[str]) -> list[dict[str, Any]]:
        return [
            {"uid": uid, "title": row["dashboard"]["title"]}
            for uid, row in self.dashboard_rows.items()
            if row["meta"]["folderUid"] in folder_uids
        ]


SPEC = TenantSpec(company="acme", campaigns=("c1",), read_token=TOKEN, token_id="tok1")
EVERY_RESOURCE = [
    ("create", "organization acme"),
    ("create", "team acme"),
    ("create", "folder acme"),
    ("update", "permissions of folder acme"),
    ("create", "datasource influxdb_acme"),
    ("create", "dashboard c1"),
]


def _actions(tenant: GrafanaTenant) -> list[tuple[str, str]]:
    return [(c.action, c.resource) for c in tenant.result.changes]


def _provisioned() -> FakeGrafana:
    grafana = FakeGrafana()
    GrafanaTenant(grafana.connect, SPEC).ensure()
    grafana.writes.clear()
    return grafana


# -- plans ------------------------------------------------------------------------------


def test_plan_folder_creates_keeps_or_renames_back() -> None:
    created = plan_folder("pv-acme", "acme", None)
    assert created is not None
    assert (created.action, created.before, created.after) == (
        "create",
        None,
        {"uid": "pv-acme", "title": "acme"},
    )
    assert plan_folder("pv-acme", "acme", {"uid": "pv-acme", "title": "acme", "version": 4}) is None
    renamed = plan_folder("pv-acme", "acme", {"uid": "pv-acme", "title": "Other", "version": 4})
    assert renamed is not None
    assert renamed.action == "update"
    assert renamed.detail == "renamed from 'Other'"
    assert renamed.diff() == {
        "before_header": "folder acme",
        "after_header": "folder acme",
        "before": {"uid": "pv-acme", "title": "Other"},
        "after": {"uid": "pv-acme", "title": "acme"},
    }


def test_plan_folder_permissions_keeps_the_team_viewer_grant_only() -> None:
    only_team: list[dict[str, Any]] = [
        {"teamId": 12, "permission": 1},
        {"role": "Admin", "permission": 4, "inherited": True},
    ]
    assert plan_folder_permissions("acme", "pv-acme", only_team, 12, "acme") is None
    defaults = [{"role": "Editor", "permission": 2}, {"role": "Viewer", "permission": 1}]
    change = plan_folder_permissions("acme", "pv-acme", defaults, 12, "acme")
    assert change is not None
    assert change.before == {
        "folder": "pv-acme",
        "items": [
            {"role": "Editor", "permission": "Edit"},
            {"role": "Viewer", "permission": "View"},
        ],
    }
    assert change.after == {"folder": "pv-acme", "items": [{"teamId": 12, "permission": "View"}]}
    to_come = plan_folder_permissions("acme", "pv-acme", [], None, "acme")
    assert to_come is not None
    assert to_come.after == {
        "folder": "pv-acme",
        "items": [{"teamId": "team acme, to be created", "permission": "View"}],
    }


def _wanted_datasource(url: str = "http://influx:8086") -> dict[str, Any]:
    return flux_datasource("influxdb_acme", "pv-ds-acme", "influxdb", url, "pv", "acme", True, "t1")


def test_plan_datasource_names_each_difference_and_never_shows_the_token() -> None:
    wanted = _wanted_datasource()
    created = plan_datasource("datasource influxdb_acme", wanted, None)
    assert created is not None
    assert created.action == "create"
    assert created.after is not None
    assert created.after["token"] == "set"
    stored = {**wanted, "id": 3, "version": 2, "secureJsonFields": {"token": True}}
    assert plan_datasource("datasource influxdb_acme", wanted, stored) is None

    moved = plan_datasource(
        "datasource influxdb_acme", _wanted_datasource("http://new:8086"), stored
    )
    assert moved is not None
    assert moved.detail == "url"
    assert moved.before is not None
    assert moved.after is not None
    assert (moved.before["url"], moved.after["url"]) == ("http://influx:8086", "http://new:8086")
    assert moved.before["token"] == moved.after["token"] == "set"

    without_token = {**stored, "secureJsonFields": {}}
    change = plan_datasource("datasource influxdb_acme", wanted, without_token)
    assert change is not None
    assert change.detail == "token"
    assert change.before is not None
    assert change.after is not None
    assert (change.before["token"], change.after["token"]) == ("absent", "new value")
    replaced = plan_datasource("datasource influxdb_acme", wanted, stored, token_replaced=True)
    assert replaced is not None
    assert replaced.detail == "token"


def test_plan_dashboard_ignores_server_fields_and_names_what_differs() -> None:
    wanted = build_dashboard("acme", "c1", "pv-ds-acme", "influxdb")
    assert plan_dashboard("dashboard c1", wanted, "pv-acme", None) is not None
    stored = {"dashboard": {**wanted, "id": 9, "version": 5}, "meta": {"folderUid": "pv-acme"}}
    assert plan_dashboard("dashboard c1", wanted, "pv-acme", stored) is None
    edited = {"dashboard": {**wanted, "title": "x"}, "meta": {"folderUid": "elsewhere"}}
    change = plan_dashboard("dashboard c1", wanted, "pv-acme", edited)
    assert change is not None
    assert change.action == "update"
    assert change.detail == f"uid {wanted['uid']}: title, folder"
    assert change.before is not None
    assert change.before["folderUid"] == "elsewhere"


def test_describe_diff_lists_the_changed_fields_dotted() -> None:
    diff = {
        "before": {"title": "Other", "jsonData": {"url": "a", "same": 1}},
        "after": {"title": "acme", "jsonData": {"url": "b", "same": 1}},
    }
    assert describe_diff(diff) == ['jsonData.url: "a" -> "b"', 'title: "Other" -> "acme"']
    assert describe_diff({"before": {}, "after": {"x": "y" * 200}}, width=10) == [
        'x: null -> "yyyyyyyy…'
    ]


# -- applier, through the connect seam -------------------------------------------------


def test_ensure_writes_each_resource_once_and_records_every_write() -> None:
    grafana = FakeGrafana()
    tenant = GrafanaTenant(grafana.connect, SPEC)
    result = tenant.ensure()
    assert _actions(tenant) == EVERY_RESOURCE
    assert [w[0] for w in grafana.writes] == [
        "create_organization",
        "add_team",
        "create_folder",
        "update_folder_permissions",
        "create_datasource",
        "update_dashboard",
    ]
    assert result.changed
    assert grafana.acl["pv-folder-acme"] == [{"teamId": 10, "permission": 1}]
    assert grafana.datasource_rows[SPEC.datasource_uid]["secureJsonData"] == {"token": TOKEN}
    assert TOKEN not in json.dumps(result.diff())  # a diff never carries the secret

    again = GrafanaTenant(grafana.connect, SPEC)
    assert again.ensure().changed is False
    assert len(grafana.writes) == 6


def test_a_folder_renamed_out_of_band_is_renamed_back_and_recorded() -> None:
    grafana = _provisioned()
    grafana.folder_rows[SPEC.folder_uid]["title"] = "Hijacked"
    tenant = GrafanaTenant(grafana.connect, SPEC)
    result = tenant.ensure()
    assert grafana.writes == [("update_folder", SPEC.folder_uid, "acme")]
    assert [c.summary() for c in result.changes] == [
        {"resource": "folder acme", "action": "update", "detail": "renamed from 'Hijacked'"}
    ]
    assert result.diff()[0]["before"] == {"uid": SPEC.folder_uid, "title": "Hijacked"}
    assert result.changed
    assert GrafanaTenant(grafana.connect, SPEC).ensure().changed is False


def test_check_mode_plans_what_a_run_applies_and_writes_nothing() -> None:
    grafana = FakeGrafana()
    checked = GrafanaTenant(grafana.connect, SPEC, check=True)
    checked.ensure()
    assert _actions(checked) == EVERY_RESOURCE
    assert grafana.writes == []

    grafana = _provisioned()
    grafana.folder_rows[SPEC.folder_uid]["title"] = "Hijacked"
    grafana.datasource_rows[SPEC.datasource_uid]["url"] = "http://elsewhere:8086"
    checked = GrafanaTenant(grafana.connect, SPEC, check=True)
    planned = [c.summary() for c in checked.ensure().changes]
    assert grafana.writes == []
    applied = [c.summary() for c in GrafanaTenant(grafana.connect, SPEC).ensure().changes]
    assert (
        planned
        == applied
        == [
            {"resource": "folder acme", "action": "update", "detail": "renamed from 'Hijacked'"},
            {"resource": "datasource influxdb_acme", "action": "update", "detail": "url"},
        ]
    )
    assert [w[0] for w in grafana.writes] == ["update_folder", "update_datasource_by_uid"]


def test_a_datasource_without_a_token_to_give_fails_before_writing_it() -> None:
    grafana = FakeGrafana()
    spec = TenantSpec(company="acme", tenancy="team")
    with pytest.raises(GrafanaError, match="no read token"):
        GrafanaTenant(grafana.connect, spec).ensure()
    assert "create_datasource" not in [w[0] for w in grafana.writes]
    # Check mode runs before the token exists: it reports, it does not fail.
    checked = GrafanaTenant(FakeGrafana().connect, spec, check=True).ensure()
    assert ("create", "datasource influxdb_acme") in [
        (c.action, c.resource) for c in checked.changes
    ]


def test_delete_records_each_deletion_with_its_before_view() -> None:
    grafana = _provisioned()
    checked = GrafanaTenant(grafana.connect, SPEC, check=True).delete()
    assert grafana.writes == []
    result = GrafanaTenant(grafana.connect, SPEC).delete()
    assert [c.summary() for c in checked.changes] == [c.summary() for c in result.changes]
    assert [(c.action, c.resource) for c in result.changes] == [
        ("delete", "dashboard c1"),
        ("delete", "folder acme"),
        ("delete", "datasource influxdb_acme"),
        ("delete", "team acme"),
        ("delete", "organization acme"),
    ]
    assert len(grafana.writes) == len(result.changes)
    assert all(c.after is None and c.before for c in result.changes)
    assert GrafanaTenant(grafana.connect, SPEC).delete().changed is False


def test_the_admin_dashboard_uses_the_same_core_and_check_mode_writes_nothing() -> None:
    grafana = FakeGrafana()
    grafana.create_folder("Renamed by hand", uid=FOLDER_UID)
    grafana.writes.clear()
    settings = config.Settings(
        grafana_url="http://grafana.invalid:3000", grafana_username="admin", meta_bucket="meta"
    )
    changes = provision_admin_dashboard(settings, check=True, connect=grafana.connect)
    assert [(c.action, c.resource, c.detail) for c in changes] == [
        ("update", f"folder {FOLDER_TITLE}", "renamed from 'Renamed by hand'"),
        ("create", "datasource powerview_meta", "type influxdb-adecwatts-datasource, bucket meta"),
        ("create", "dashboard PowerView ingestion (admin)", "uid pv-admin-ingestion"),
    ]
    assert grafana.writes == []
    assert grafana.connected == [None]  # the admin's own organization, never a company's
