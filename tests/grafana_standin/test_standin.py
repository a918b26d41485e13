"""The Grafana stand-in behaves like Grafana and keeps to Grafana's OpenAPI description.

Every test that only makes valid calls ends with ``grafana.violations == []``:
each request and each response of it was checked against the spec.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from tests.grafana_standin import GrafanaStandin, Permission, Role, routes
from tests.grafana_standin import fixtures as standin_fixtures

# The suite-wide registration is a conftest line; this module imports its fixtures itself.
grafana = standin_fixtures.grafana
grafana_spec = standin_fixtures.grafana_spec

PLUGIN_TYPE = "influxdb-adecwatts-datasource"


# --------------------------------------------------------------- helpers
def raw(
    server: GrafanaStandin,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A request without grafana_client, to control every header and byte."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1)
        server.url + path, data=data, method=method, headers=headers or {}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def fails(call: Callable[[], Any]) -> GrafanaClientError:
    with pytest.raises(GrafanaClientError) as info:
        call()
    return info.value


def dashboard(title: str, uid: str | None = None, version: int | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"title": title, "panels": [{"id": 1, "type": "timeseries"}]}
    if uid is not None:
        model["uid"] = uid
    if version is not None:
        model["version"] = version
    return model


def new_org(admin: GrafanaApi, name: str) -> int:
    return int(admin.organization.create_organization({"name": name})["orgId"])


# ------------------------------------------------------------ server, auth
def test_health_needs_no_credentials_and_frontend_settings_do(grafana: GrafanaStandin) -> None:
    status, body = raw(grafana, "GET", "/api/health")
    assert status == 200
    assert set(body) == {"database", "version", "commit"}
    assert raw(grafana, "GET", "/api/frontend/settings")[0] == 401
    assert grafana.client().health.check()["version"] == body["version"]
    assert grafana.violations == []


def test_requests_without_or_with_wrong_credentials_get_401(grafana: GrafanaStandin) -> None:
    assert raw(grafana, "GET", "/api/user") == (401, {"message": "Unauthorized"})
    status, body = raw(grafana, "GET", "/api/user", headers=basic("admin", "wrong"))
    assert (status, body["message"]) == (401, "Invalid username or password")
    status, body = raw(grafana, "GET", "/api/user", headers={"Authorization": "Bearer glsa_nope"})
    assert (status, body["message"]) == (401, "Invalid API key")
    assert fails(grafana.client(password="wrong").user.get_actual_user).status_code == 401
    assert grafana.violations == []


def test_basic_auth_as_server_admin(grafana: GrafanaStandin) -> None:
    me = grafana.client().user.get_actual_user()
    assert (me["login"], me["isGrafanaAdmin"], me["orgId"]) == (grafana.admin_user, True, 1)
    assert grafana.violations == []


def test_service_account_token_is_bound_to_its_org_and_role(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    org_b = new_org(admin, "b")
    viewer_token = grafana.create_service_account_token(1, Role.VIEWER)
    admin_token = grafana.create_service_account_token(1, Role.ADMIN)

    assert grafana.client(token=admin_token).teams.add_team({"name": "ops"})["teamId"] > 0
    denied = fails(lambda: grafana.client(token=viewer_token).teams.add_team({"name": "x"}))
    assert denied.status_code == 403
    # Server-admin calls are for Grafana admins, not org tokens.
    assert (
        fails(grafana.client(token=admin_token).organizations.list_organization).status_code == 403
    )
    # Another org in X-Grafana-Org-Id: Grafana refuses the token itself.
    status, body = raw(
        grafana,
        "GET",
        "/api/teams/search",
        headers={"Authorization": f"Bearer {admin_token}", "X-Grafana-Org-Id": str(org_b)},
    )
    assert (status, body["message"]) == (
        401,
        "API key does not belong to the requested organization",
    )
    grafana.revoke_token(admin_token)
    assert (
        raw(grafana, "GET", "/api/user", headers={"Authorization": f"Bearer {admin_token}"})[0]
        == 401
    )
    assert grafana.violations == []


# ------------------------------------------------------------------ users
def test_users_create_lookup_update_delete(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    created = admin.admin.create_user({"login": "ann", "email": "ann@x.io", "password": "s3cret!"})
    assert set(created) >= {"id", "message"}
    again = fails(lambda: admin.admin.create_user({"login": "ann", "password": "other-pw"}))
    assert again.status_code == 412
    assert "already exists" in again.response["message"]

    found = admin.users.find_user("ann@x.io")
    assert (found["id"], found["login"], found["orgId"]) == (created["id"], "ann", 1)
    assert grafana.state.role_of(created["id"], 1) is Role.VIEWER  # auto-assigned to Main Org.
    admin.users.update_user(created["id"], {"name": "Ann", "email": "ann@y.io", "login": "ann"})
    assert admin.users.get_user(created["id"])["email"] == "ann@y.io"

    missing = fails(lambda: admin.users.find_user("nobody"))
    assert (missing.status_code, missing.response) == (404, {"message": "user not found"})
    admin.admin.delete_user(created["id"])
    assert fails(lambda: admin.users.get_user(created["id"])).status_code == 404
    assert grafana.violations == []


def test_body_fields_match_case_insensitively_like_go(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    org = new_org(admin, "acme")
    body = {"login": "dee", "password": "dee-pass", "OrgId": org}  # Go fills orgId from OrgId
    user_id = admin.admin.create_user(body)["id"]
    assert [o["orgId"] for o in admin.users.get_user_organisations(user_id)] == [org]
    assert grafana.violations == []


def test_non_admins_cannot_use_admin_endpoints(grafana: GrafanaStandin) -> None:
    grafana.add_user("eve", "eve-pass", role=Role.ADMIN)
    eve = grafana.client(user="eve", password="eve-pass")
    assert (
        fails(lambda: eve.admin.create_user({"login": "x", "password": "xxxx"})).status_code == 403
    )
    assert fails(lambda: eve.organization.create_organization({"name": "x"})).status_code == 403
    assert fails(lambda: eve.organization.find_organization("Main Org.")).status_code == 403
    assert grafana.violations == []


# ------------------------------------------------------------------- orgs
def test_orgs_create_find_delete(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    created = admin.organization.create_organization({"name": "acme"})
    assert set(created) == {"orgId", "message"}
    assert (
        fails(lambda: admin.organization.create_organization({"name": "acme"})).status_code == 409
    )
    assert admin.organization.find_organization("acme")["id"] == created["orgId"]
    # The creator becomes an Admin of the new org, as in Grafana.
    assert grafana.state.role_of(1, created["orgId"]) is Role.ADMIN

    missing = fails(lambda: admin.organization.find_organization("nope"))
    assert (missing.status_code, missing.response) == (404, {"message": "Organization not found"})
    # Grafana refuses to delete the org the request runs in (X-Grafana-Org-Id).
    inside = fails(
        lambda: grafana.client(org_id=created["orgId"]).organizations.delete_organization(
            created["orgId"]
        )
    )
    assert inside.response["message"] == "Can not delete org for current user"
    admin.organizations.delete_organization(created["orgId"])
    assert grafana.state.org_by_name("acme") is None
    assert grafana.violations == []
    # The 404 by name is a documented leniency, noted apart from violations.
    assert [(g.path, g.status) for g in grafana.spec_gaps] == [("/orgs/name/{org_name}", 404)]


def test_org_users_and_switching_the_current_org(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    org = new_org(admin, "acme")
    user_id = admin.admin.create_user({"login": "bo", "password": "bo-pass"})["id"]
    admin.organizations.organization_user_add(org, {"loginOrEmail": "bo", "role": "Editor"})
    assert {u["login"]: u["role"] for u in admin.organizations.organization_user_list(org)} == {
        "admin": "Admin",
        "bo": "Editor",
    }
    admin.organizations.organization_user_update(org, user_id, "Viewer")
    assert grafana.state.role_of(user_id, org) is Role.VIEWER

    bo = grafana.client(user="bo", password="bo-pass")
    assert {o["orgId"] for o in bo.user.get_actual_user_organisations()} == {1, org}
    bo.organizations.switch_organization(org)
    assert bo.user.get_actual_user()["orgId"] == org
    assert fails(lambda: bo.organizations.switch_organization(999)).status_code == 401

    admin.organizations.organization_user_delete(org, user_id)
    assert grafana.state.role_of(user_id, org) is None
    assert bo.user.get_actual_user()["orgId"] == 1  # moved back to an org it belongs to
    last_admin = fails(lambda: admin.organizations.organization_user_delete(org, 1))
    assert last_admin.response["message"] == "Cannot remove last organization admin"
    assert grafana.violations == []


def test_x_grafana_org_id_scopes_every_call(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    org = new_org(admin, "acme")
    in_org = grafana.client(org_id=org)
    team_id = in_org.teams.add_team({"name": "acme"})["teamId"]
    in_org.folder.create_folder("acme", uid="acme")
    in_org.datasource.create_datasource({"name": "influxdb_acme", "type": PLUGIN_TYPE})

    assert [t["name"] for t in in_org.teams.get_team_by_name("acme")] == ["acme"]
    assert admin.teams.get_team_by_name("acme") == []  # default: the admin's current org (1)
    assert fails(lambda: admin.teams.get_team(team_id)).status_code == 404
    assert admin.folder.get_all_folders() == []
    assert admin.datasource.list_datasources() == []
    assert grafana.state.team_by_name(org, "acme") is not None
    assert grafana.violations == []


# ------------------------------------------------------------------ teams
def test_teams(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    created = admin.teams.add_team({"name": "acme"})
    assert set(created) >= {"teamId", "message"}
    taken = fails(lambda: admin.teams.add_team({"name": "acme"}))
    assert (taken.status_code, taken.response) == (409, {"message": "Team name taken"})
    team_id = created["teamId"]
    assert admin.teams.get_team(team_id)["name"] == "acme"
    assert [t["id"] for t in admin.teams.get_team_by_name("acme")] == [team_id]

    user_id = admin.admin.create_user({"login": "cy", "password": "cy-pass"})["id"]
    admin.teams.add_team_member(team_id, user_id)
    twice = fails(lambda: admin.teams.add_team_member(team_id, user_id))
    assert (twice.status_code, twice.response["message"]) == (
        400,
        "User is already added to this team",
    )
    # Grafana adds the creating user as a team admin.
    members = {m["login"]: m["permission"] for m in admin.teams.get_team_members(team_id)}
    assert members == {"admin": 4, "cy": 0}
    admin.teams.remove_team_member(team_id, user_id)
    assert [m["login"] for m in admin.teams.get_team_members(team_id)] == ["admin"]

    admin.teams.delete_team(team_id)
    gone = fails(lambda: admin.teams.get_team(team_id))
    assert (gone.status_code, gone.response) == (404, {"message": "Team not found"})
    assert fails(lambda: admin.teams.delete_team(team_id)).status_code == 404
    assert grafana.violations == []
    assert [(g.path, g.status) for g in grafana.spec_gaps] == [("/teams/{team_id}/members", 400)]


# ---------------------------------------------------------------- folders
def test_folders_conflicts_versions_and_cascade(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    folder = admin.folder.create_folder("Acme", uid="acme")
    assert (folder["uid"], folder["version"]) == ("acme", 1)
    assert fails(lambda: admin.folder.create_folder("Other", uid="acme")).status_code == 409
    assert fails(lambda: admin.folder.create_folder("Acme")).status_code == 409

    stale = fails(lambda: admin.folder.update_folder("acme", title="Acme 2", version=7))
    assert (stale.status_code, stale.response["status"]) == (412, "version-mismatch")
    updated = admin.folder.update_folder("acme", title="Acme 2", version=1)
    assert (updated["title"], updated["version"]) == ("Acme 2", 2)
    assert admin.folder.update_folder("acme", title="Acme 3", overwrite=True)["version"] == 3

    admin.dashboard.update_dashboard({"dashboard": dashboard("d1", uid="d1"), "folderUid": "acme"})
    assert [f["uid"] for f in admin.folder.get_all_folders()] == ["acme"]
    admin.folder.delete_folder("acme")
    assert grafana.state.dashboards_in(1) == []  # deleting a folder deletes its dashboards
    missing = fails(lambda: admin.folder.get_folder("acme"))
    assert (missing.status_code, missing.response["message"]) == (404, "folder not found")
    assert grafana.violations == []


def test_folder_permissions_are_replaced_as_a_whole(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    admin.folder.create_folder("Acme", uid="acme")
    defaults = {
        (p.get("role"), p.get("userId"), p["permission"])
        for p in admin.folder.get_folder_permissions("acme")
    }
    assert defaults == {("Viewer", 0, 1), ("Editor", 0, 2), (None, 1, 4)}

    team_id = admin.teams.add_team({"name": "acme"})["teamId"]
    admin.folder.update_folder_permissions(
        "acme", {"items": [{"teamId": team_id, "permission": 1}]}
    )
    items = admin.folder.get_folder_permissions("acme")
    assert [(p["teamId"], p["team"], p["permission"], p["permissionName"]) for p in items] == [
        (team_id, "acme", 1, "View")
    ]
    assert [a.team_id for a in grafana.state.folder_acl(1, "acme")] == [team_id]

    admin.folder.update_folder_permissions("acme", [{"role": "Editor", "permission": 2}])
    assert [(a.role, a.permission) for a in grafana.state.folder_acl(1, "acme")] == [
        (Role.EDITOR, Permission.EDIT)
    ]
    assert grafana.violations == []


def test_null_fields_in_request_bodies_are_accepted(grafana: GrafanaStandin) -> None:
    api = grafana.client()
    api.client.POST("/folders", json={"title": "Acme", "uid": "acme", "parentUid": None})
    assert grafana.state.folder(1, "acme") is not None
    assert grafana.violations == []


def test_folder_viewers_by_user_team_or_role(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    admin.folder.create_folder("Acme", uid="acme")
    admin.dashboard.update_dashboard(
        {"dashboard": dashboard("Volts", uid="v"), "folderUid": "acme"}
    )
    ann = grafana.add_user("ann", "ann-pass")
    grafana.add_user("bob", "bob-pass")
    as_ann = grafana.client(user="ann", password="ann-pass")
    as_bob = grafana.client(user="bob", password="bob-pass")

    # Default permissions: every Viewer of the org sees a new root folder.
    assert [h["uid"] for h in as_bob.search.search_dashboards(type_="dash-db")] == ["v"]
    admin.folder.update_folder_permissions("acme", [{"userId": ann.id, "permission": 1}])
    assert as_ann.dashboard.get_dashboard("v")["meta"]["canEdit"] is False
    assert as_bob.search.search_dashboards(type_="dash-db") == []
    assert fails(lambda: as_bob.dashboard.get_dashboard("v")).status_code == 403
    assert fails(lambda: as_ann.folder.get_folder_permissions("acme")).status_code == 403
    denied = fails(
        lambda: as_ann.dashboard.update_dashboard(
            {"dashboard": dashboard("X"), "folderUid": "acme"}
        )
    )
    assert denied.status_code == 403
    admin.folder.update_folder_permissions("acme", [{"role": "Viewer", "permission": 1}])
    assert [h["uid"] for h in as_bob.search.search_dashboards(type_="dash-db")] == ["v"]
    assert grafana.violations == []


# ------------------------------------------------------------ datasources
def test_datasources_keep_secure_json_data_write_only(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    created = admin.datasource.create_datasource(
        {
            "name": "influxdb_acme",
            "type": PLUGIN_TYPE,
            "access": "proxy",
            "url": "http://influx:8086",
            "jsonData": {"organization": "powerview", "defaultBucket": "acme"},
            "secureJsonData": {"token": "the-token"},
        }
    )
    assert set(created) >= {"id", "name", "message", "datasource"}
    uid = created["datasource"]["uid"]
    for shown in (
        created["datasource"],
        admin.datasource.get_datasource_by_uid(uid),
        admin.datasource.get_datasource_by_name("influxdb_acme"),
        admin.datasource.get_datasource_by_id(created["id"]),
    ):
        assert "secureJsonData" not in shown
        assert "the-token" not in json.dumps(shown)
        assert shown["secureJsonFields"] == {"token": True}
        assert shown["type"] == PLUGIN_TYPE
    assert "the-token" not in json.dumps(admin.datasource.list_datasources())
    stored = grafana.state.datasource_by_name(1, "influxdb_acme")
    assert stored is not None
    assert stored.secure_json_data == {"token": "the-token"}

    same_name = fails(
        lambda: admin.datasource.create_datasource({"name": "influxdb_acme", "type": "x"})
    )
    assert (same_name.status_code, same_name.response["message"]) == (
        409,
        "data source with the same name already exists",
    )
    same_uid = fails(
        lambda: admin.datasource.create_datasource({"name": "n", "uid": uid, "type": "x"})
    )
    assert same_uid.status_code == 409

    body = admin.datasource.get_datasource_by_uid(uid) | {"url": "http://influx2:8086"}
    updated = admin.datasource.update_datasource_by_uid(uid, body)
    assert (updated["datasource"]["url"], updated["datasource"]["version"]) == (
        "http://influx2:8086",
        2,
    )
    assert stored.secure_json_data == {"token": "the-token"}  # kept when not sent again
    stale = fails(lambda: admin.datasource.update_datasource_by_uid(uid, body))
    assert (stale.status_code, stale.response["message"]) == (
        409,
        "Datasource has already been updated by someone else. Please reload and try again",
    )
    new_token = {"secureJsonData": {"token": "new"}}
    admin.datasource.update_datasource_by_uid(uid, body | {"version": 2} | new_token)
    assert stored.secure_json_data == {"token": "new"}

    missing = fails(lambda: admin.datasource.get_datasource_by_name("nope"))
    assert (missing.status_code, missing.response) == (404, {"message": "Data source not found"})
    admin.datasource.delete_datasource_by_uid(uid)
    assert admin.datasource.list_datasources() == []
    assert fails(lambda: admin.datasource.delete_datasource_by_uid(uid)).status_code == 404
    admin.datasource.create_datasource({"name": "again", "type": PLUGIN_TYPE})
    assert admin.datasource.delete_datasource_by_name("again")["message"] == "Data source deleted"
    assert grafana.violations == []


# ------------------------------------------------------------- dashboards
def test_dashboard_save_rules(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    admin.folder.create_folder("A", uid="fa")
    admin.folder.create_folder("B", uid="fb")
    save = admin.dashboard.update_dashboard

    too_long = fails(lambda: save({"dashboard": dashboard("d", uid="x" * 41), "folderUid": "fa"}))
    assert (too_long.status_code, too_long.response["message"]) == (
        400,
        "uid too long, max 40 characters",
    )
    saved = save(
        {"dashboard": dashboard("Volts", uid="x" * 40), "folderUid": "fa", "message": "v1"}
    )
    assert set(saved) >= {"id", "uid", "url", "status", "version", "title"}
    assert (saved["version"], saved["status"]) == (1, "success")

    uid = "x" * 40
    stale = fails(
        lambda: save({"dashboard": dashboard("Volts", uid=uid, version=0), "folderUid": "fa"})
    )
    assert (stale.status_code, stale.response["status"]) == (412, "version-mismatch")
    assert (
        save({"dashboard": dashboard("Volts", uid=uid, version=1), "folderUid": "fa"})["version"]
        == 2
    )

    clash = fails(lambda: save({"dashboard": dashboard("Volts", uid="other"), "folderUid": "fa"}))
    assert (clash.status_code, clash.response["status"]) == (412, "name-exists")
    moved = fails(
        lambda: save({"dashboard": dashboard("Volts", uid=uid, version=2), "folderUid": "fb"})
    )
    assert moved.status_code == 400

    # overwrite: true always wins.
    assert (
        save({"dashboard": dashboard("Volts", uid=uid), "folderUid": "fb", "overwrite": True})[
            "version"
        ]
        == 3
    )
    assert (
        save({"dashboard": dashboard("Volts", uid="other"), "folderUid": "fb", "overwrite": True})[
            "uid"
        ]
        == "other"
    )
    assert grafana.state.dashboard(1, uid) is None  # replaced by the overwriting one

    got = admin.dashboard.get_dashboard("other")
    assert (got["dashboard"]["title"], got["meta"]["folderUid"]) == ("Volts", "fb")
    admin.dashboard.delete_dashboard("other")
    assert fails(lambda: admin.dashboard.get_dashboard("other")).status_code == 404
    assert grafana.violations == []


def test_search_filters_by_type_folder_and_query(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    admin.folder.create_folder("A", uid="fa")
    admin.folder.create_folder("B", uid="fb")
    for title, folder in (("Volts", "fa"), ("Amps", "fa"), ("Watts", "fb")):
        admin.dashboard.update_dashboard({"dashboard": dashboard(title), "folderUid": folder})

    hits = admin.search.search_dashboards(type_="dash-db", folder_uids="fa")
    assert [h["title"] for h in hits] == ["Amps", "Volts"]
    assert all(h["folderUid"] == "fa" for h in hits)
    assert [h["title"] for h in admin.search.search_dashboards(type_="dash-db", query="wat")] == [
        "Watts"
    ]
    assert [h["uid"] for h in admin.search.search_dashboards(type_="dash-folder")] == ["fa", "fb"]
    both = admin.search.search_dashboards(type_="dash-db", folder_uids=["fa", "fb"])
    assert len(both) == 3
    assert grafana.violations == []


# -------------------------------------------------------------- isolation
def _provision(grafana: GrafanaStandin, company: str) -> dict[str, Any]:
    """The seed's layout for one company in its own org, plus a viewer in the team."""
    admin = grafana.client()
    org_id = new_org(admin, company)
    api = grafana.client(org_id=org_id)
    team_id = api.teams.add_team({"name": company})["teamId"]
    api.folder.create_folder(company, uid=f"f-{company}")
    ds = api.datasource.create_datasource(
        {"name": f"influxdb_{company}", "type": PLUGIN_TYPE, "secureJsonData": {"token": "t"}}
    )
    api.dashboard.update_dashboard(
        {"dashboard": dashboard("Campaign", uid=f"d-{company}"), "folderUid": f"f-{company}"}
    )
    api.folder.update_folder_permissions(
        f"f-{company}", {"items": [{"teamId": team_id, "permission": 1}]}
    )
    user_id = admin.admin.create_user(
        {"login": f"user_{company}", "password": "pw-" + company, "orgId": org_id}
    )["id"]
    api.teams.add_team_member(team_id, user_id)
    return {"org": org_id, "ds": ds["datasource"]["uid"], "user": f"user_{company}"}


def query_body(ds_uid: str) -> dict[str, Any]:
    return {
        "queries": [{"refId": "A", "datasource": {"uid": ds_uid}, "query": 'from(bucket: "x")'}],
        "from": "now-1h",
        "to": "now",
    }


def test_a_viewer_of_org_a_sees_nothing_of_org_b(grafana: GrafanaStandin) -> None:
    a, b = _provision(grafana, "acme"), _provision(grafana, "bolt")
    alice = grafana.client(user=a["user"], password="pw-acme")
    alice_in_b = grafana.client(user=a["user"], password="pw-acme", org_id=b["org"])

    # Her own org: the team's folder and dashboard, and queries on its datasource.
    assert [h["uid"] for h in alice.search.search_dashboards(type_="dash-db")] == ["d-acme"]
    assert alice.dashboard.get_dashboard("d-acme")["dashboard"]["title"] == "Campaign"
    assert [f["uid"] for f in alice.folder.get_all_folders()] == ["f-acme"]
    result = alice.client.POST("/ds/query", json=query_body(a["ds"]))
    assert result == {"results": {"A": {"status": 200, "frames": []}}}
    assert [(q.login, q.datasource_uid, q.org_id) for q in grafana.state.queries] == [
        ("user_acme", a["ds"], a["org"])
    ]

    # Org B, from her own org: nothing of it exists there.
    assert fails(lambda: alice.dashboard.get_dashboard("d-bolt")).status_code == 404
    assert fails(lambda: alice.folder.get_folder("f-bolt")).status_code == 404
    assert (
        fails(lambda: alice.client.POST("/ds/query", json=query_body(b["ds"]))).status_code == 404
    )
    # Org B, asked for explicitly: she has no role there.
    assert alice_in_b.search.search_dashboards() == []
    assert fails(lambda: alice_in_b.dashboard.get_dashboard("d-bolt")).status_code == 403
    assert fails(alice_in_b.folder.get_all_folders).status_code == 403
    assert fails(alice_in_b.datasource.list_datasources).status_code == 403
    assert fails(lambda: alice_in_b.teams.get_team_by_name("bolt")).status_code == 403
    denied = fails(lambda: alice_in_b.client.POST("/ds/query", json=query_body(b["ds"])))
    assert denied.status_code == 403
    assert len(grafana.state.queries) == 1
    assert grafana.violations == []


def test_any_member_of_the_org_may_query_any_of_its_datasources(grafana: GrafanaStandin) -> None:
    a = _provision(grafana, "acme")
    # A viewer outside the team (OSS has no datasource permissions): the query is allowed.
    grafana.add_user("outsider", "out-pass", org_id=a["org"], role=Role.VIEWER)
    outsider = grafana.client(user="outsider", password="out-pass")
    assert (
        outsider.client.POST("/ds/query", json=query_body(a["ds"]))["results"]["A"]["status"] == 200
    )
    # ... but the team's folder stays closed to that viewer.
    assert outsider.search.search_dashboards(type_="dash-db") == []
    assert fails(lambda: outsider.dashboard.get_dashboard("d-acme")).status_code == 403
    token = grafana.create_service_account_token(a["org"], Role.VIEWER)
    assert grafana.client(token=token).client.POST("/ds/query", json=query_body(a["ds"]))
    # The basic role "None" is a membership without any permission.
    grafana.add_user("nobody", "nobody-pw", org_id=a["org"], role=Role.NONE)
    nobody = grafana.client(user="nobody", password="nobody-pw")
    refused = fails(lambda: nobody.client.POST("/ds/query", json=query_body(a["ds"])))
    assert refused.status_code == 403
    assert grafana.violations == []


def test_parallel_calls_do_not_interfere(grafana: GrafanaStandin) -> None:
    def provision(company: str) -> int:
        api = grafana.client()
        org = new_org(api, company)
        scoped = grafana.client(org_id=org)
        scoped.teams.add_team({"name": company})
        scoped.folder.create_folder(company, uid=company)
        return org

    with ThreadPoolExecutor(max_workers=8) as pool:
        orgs = list(pool.map(provision, [f"c{i}" for i in range(16)]))
    assert len(set(orgs)) == 16
    for i, org in enumerate(orgs):
        assert [t.name for t in grafana.state.teams_in(org)] == [f"c{i}"]
        assert [f.uid for f in grafana.state.folders_in(org)] == [f"c{i}"]
    assert grafana.violations == []


# ------------------------------------------------------ spec enforcement
def test_invalid_requests_are_rejected_and_recorded(grafana: GrafanaStandin) -> None:
    admin = grafana.client()
    wrong_type = fails(lambda: admin.teams.add_team({"name": 5}))
    assert wrong_type.status_code == 400
    assert "name" in wrong_type.response["message"]
    missing_field = fails(lambda: admin.client.POST("/ds/query", json={"queries": []}))
    assert missing_field.status_code == 400
    status, _ = raw(
        grafana, "GET", "/api/not-grafana", headers=basic("admin", grafana.admin_password)
    )
    assert status == 404

    assert [(v.kind, v.method, v.path, v.status) for v in grafana.violations] == [
        ("request", "POST", "/api/teams", 400),
        ("request", "POST", "/api/ds/query", 400),
        ("request", "GET", "/api/not-grafana", 404),
    ]
    assert "5 is not of type 'string'" in grafana.violations[0].message
    assert grafana.state.teams_in(1) == []  # a rejected request changes nothing


def test_calls_the_stand_in_does_not_implement_are_recorded(grafana: GrafanaStandin) -> None:
    status, _ = raw(
        grafana, "GET", "/api/playlists", headers=basic("admin", grafana.admin_password)
    )
    assert status == 501
    assert [(v.kind, v.path) for v in grafana.violations] == [("unimplemented", "/api/playlists")]


def test_responses_that_break_the_spec_are_recorded(grafana: GrafanaStandin) -> None:
    index = next(i for i, r in enumerate(routes.ROUTES) if r.path == "/teams/{team_id}")
    original = routes.ROUTES[index]
    routes.ROUTES[index] = routes.Route("GET", original.path, lambda call: {"id": "one"})
    try:
        grafana.client().teams.get_team(1)
    finally:
        routes.ROUTES[index] = original
    [violation] = grafana.violations
    assert (violation.kind, violation.path, violation.status) == ("response", "/api/teams/1", 200)
    assert "'one' is not of type 'integer'" in violation.message
