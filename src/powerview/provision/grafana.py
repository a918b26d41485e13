"""A company's Grafana resources, created, kept or removed idempotently.

Each step looks first, then acts only when something differs, and records
a `Change`; in check mode it records what it would do and acts on nothing.
Everything goes through grafana-client; the project's Ansible module
(grafana-automation/library/powerview_grafana_tenant.py) calls this.

Tenancy: in `org` mode (default) each company gets a Grafana organization of
its own, every call is scoped with `X-Grafana-Org-Id`, and the company's user
belongs to that organization only: on Grafana OSS any member of an
organization can query any of its datasources, so organizations are the only
wall between companies. In `team` mode everything lives in one organization
and isolation holds at folder level only (a warning says so).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from powerview.exceptions import InfrastructureError, PowerViewError
from powerview.layout import check_name
from powerview.provision.dashboard import build_dashboard, uid_for

Tenancy = Literal["org", "team"]
VIEW = 1  # Grafana folder permission levels: 1 View, 2 Edit, 4 Admin
TEAM_MODE_WARNING = (
    "tenancy 'team' on Grafana OSS: every user of the organization can query every "
    "datasource in it; companies are isolated at folder level only"
)


class GrafanaError(PowerViewError):
    """Grafana refused a provisioning step; the message names the step."""


@dataclass(frozen=True)
class TenantSpec:
    """What a company needs in Grafana."""

    company: str
    campaigns: tuple[str, ...] = ()
    tenancy: Tenancy = "org"
    datasource_type: str = "influxdb-adecwatts-datasource"
    influx_url: str = "http://127.0.0.1:8086"
    influx_org: str = "powerview"
    read_token: str | None = None  # the bucket-scoped token; None: keep the stored one
    token_id: str | None = None  # InfluxDB authorization id, to notice a replaced token
    default_user: bool = False
    enterprise: bool = False

    def __post_init__(self) -> None:
        check_name("company", self.company)
        for campaign in self.campaigns:
            check_name("campaign", campaign)

    @property
    def team_name(self) -> str:
        return self.company

    @property
    def folder_uid(self) -> str:
        return uid_for("folder", self.company)

    @property
    def datasource_name(self) -> str:
        return f"influxdb_{self.company}"

    @property
    def datasource_uid(self) -> str:
        return uid_for("ds", self.company)

    @property
    def user_login(self) -> str:
        return f"user_{self.company}"


@dataclass
class Change:
    resource: str  # "team acme", "dashboard pv-acme-campaign1", ...
    action: Literal["create", "update", "delete"]
    detail: str = ""


@dataclass
class TenantResult:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    org_id: int | None = None
    default_user_password: str | None = None  # set only when the user was created now

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "changes": [c.__dict__ for c in self.changes],
            "warnings": self.warnings,
            "org_id": self.org_id,
        }


@contextlib.contextmanager
def grafana_step(step: str) -> Iterator[None]:
    """Translate grafana-client errors, naming the provisioning step that failed."""
    try:
        yield
    except GrafanaClientError as exc:
        raise GrafanaError(f"{step}: Grafana answered {exc.status_code}: {exc.message}") from None
    except GrafanaException as exc:
        raise InfrastructureError(f"{step}: {exc}") from None
    except OSError as exc:
        raise InfrastructureError(f"{step}: Grafana unreachable ({exc})") from None


def _absent(call: Callable[[], Any]) -> Any | None:
    """The answer of a lookup, or None when Grafana says 404."""
    try:
        return call()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


class GrafanaTenant:
    """Applies a TenantSpec; `connect(org_id)` returns a GrafanaApi for that org."""

    def __init__(
        self, connect: Callable[[int | None], GrafanaApi], spec: TenantSpec, check: bool = False
    ) -> None:
        self._connect = connect
        self.spec = spec
        self.check = check
        self.result = TenantResult()
        self._root = connect(None)

    def _record(
        self, resource: str, action: Literal["create", "update", "delete"], detail: str = ""
    ) -> None:
        self.result.changes.append(Change(resource, action, detail))

    # -- create or keep --------------------------------------------------------

    def ensure(self) -> TenantResult:
        spec = self.spec
        if spec.tenancy == "team" and not spec.enterprise:
            self.result.warnings.append(TEAM_MODE_WARNING)
        org_id = self._ensure_org() if spec.tenancy == "org" else None
        self.result.org_id = org_id
        if self.check and spec.tenancy == "org" and org_id is None:
            self._record_everything_new()
            return self.result
        api = self._connect(org_id)
        team_id = self._ensure_team(api)
        self._ensure_folder(api, team_id)
        self._ensure_datasource(api, team_id)
        for campaign in spec.campaigns:
            self._ensure_dashboard(api, campaign)
        if spec.default_user:
            self._ensure_user(api, org_id, team_id)
        return self.result

    def _record_everything_new(self) -> None:
        spec = self.spec
        self._record(f"team {spec.team_name}", "create")
        self._record(f"folder {spec.company}", "create")
        self._record(f"datasource {spec.datasource_name}", "create")
        for campaign in spec.campaigns:
            self._record(f"dashboard {campaign}", "create")
        if spec.default_user:
            self._record(f"user {spec.user_login}", "create")

    def _ensure_org(self) -> int | None:
        name = self.spec.company
        with grafana_step(f"organization {name}"):
            org = _absent(lambda: self._root.organization.find_organization(name))
            if org is not None:
                return int(org["id"])
            self._record(f"organization {name}", "create")
            if self.check:
                return None
            created = self._root.organization.create_organization({"name": name})
            return int(created["orgId"])

    def _ensure_team(self, api: GrafanaApi) -> int | None:
        name = self.spec.team_name
        with grafana_step(f"team {name}"):
            found = api.teams.search_teams(query=name)
            for team in found:
                if team.get("name") == name:
                    return int(team["id"])
            self._record(f"team {name}", "create")
            if self.check:
                return None
            return int(api.teams.add_team({"name": name})["teamId"])

    def _ensure_folder(self, api: GrafanaApi, team_id: int | None) -> None:
        spec = self.spec
        uid = spec.folder_uid
        with grafana_step(f"folder {spec.company}"):
            folder = _absent(lambda: api.folder.get_folder(uid))
            if folder is None:
                self._record(f"folder {spec.company}", "create", f"uid {uid}")
                if self.check:
                    self._record(f"permissions of folder {spec.company}", "update", "team Viewer")
                    return
                api.folder.create_folder(spec.company, uid=uid)
            elif folder.get("title") != spec.company and not self.check:
                api.folder.update_folder(uid, title=spec.company, version=folder.get("version"))
        with grafana_step(f"permissions of folder {spec.company}"):
            current = (
                [] if self.check and team_id is None else api.folder.get_folder_permissions(uid)
            )
            have = {_permission_key(item) for item in current if not item.get("inherited")}
            want = {("team", team_id, VIEW)} if team_id is not None else {("team", None, VIEW)}
            if have != want:
                self._record(f"permissions of folder {spec.company}", "update", "team Viewer only")
                if not self.check and team_id is not None:
                    api.folder.update_folder_permissions(
                        uid, {"items": [{"teamId": team_id, "permission": VIEW}]}
                    )

    def _datasource_body(self, existing: dict[str, Any] | None) -> dict[str, Any]:
        spec = self.spec
        body = flux_datasource(
            spec.datasource_name,
            spec.datasource_uid,
            spec.datasource_type,
            spec.influx_url,
            spec.influx_org,
            bucket=spec.company,
            is_default=spec.tenancy == "org",
            token_id=spec.token_id or "",
        )
        if spec.read_token:
            body["secureJsonData"] = {"token": spec.read_token}
        if existing is not None:
            body["id"] = existing.get("id")
            body["version"] = existing.get("version")
        return body

    def _ensure_datasource(self, api: GrafanaApi, team_id: int | None) -> None:
        spec = self.spec
        resource = f"datasource {spec.datasource_name}"
        with grafana_step(resource):
            existing = _absent(lambda: api.datasource.get_datasource_by_uid(spec.datasource_uid))
            if existing is None:
                existing = _absent(
                    lambda: api.datasource.get_datasource_by_name(spec.datasource_name)
                )
            if existing is None:
                if not spec.read_token:
                    raise GrafanaError(
                        f"{resource}: no read token to give it (run `powerview token ensure`)"
                    )
                self._record(
                    resource, "create", f"type {spec.datasource_type}, bucket {spec.company}"
                )
                if not self.check:
                    api.datasource.create_datasource(self._datasource_body(None))
            else:
                differences = datasource_differences(existing, self._datasource_body(existing))
                token_missing = not (existing.get("secureJsonFields") or {}).get("token")
                if token_missing:
                    differences.append("token")
                if differences:
                    if token_missing and not spec.read_token:
                        raise GrafanaError(f"{resource}: its token is missing and none was given")
                    self._record(resource, "update", ", ".join(differences))
                    if not self.check:
                        api.datasource.update_datasource_by_uid(
                            existing["uid"], self._datasource_body(existing)
                        )
            if spec.enterprise and team_id is not None and not self.check:
                with contextlib.suppress(GrafanaClientError):  # OSS has no such API
                    api.datasource.enable_datasource_permissions(existing["id"] if existing else 0)

    def _ensure_dashboard(self, api: GrafanaApi, campaign: str) -> None:
        spec = self.spec
        wanted = build_dashboard(spec.company, campaign, spec.datasource_uid, spec.datasource_type)
        resource = f"dashboard {campaign}"
        with grafana_step(resource):
            current = _absent(lambda: api.dashboard.get_dashboard(wanted["uid"]))
            if current is not None:
                stored = dict(current.get("dashboard") or {})
                same_folder = (current.get("meta") or {}).get("folderUid") == spec.folder_uid
                for key in ("id", "version"):
                    stored.pop(key, None)
                if stored == wanted and same_folder:
                    return
            self._record(
                resource, "create" if current is None else "update", f"uid {wanted['uid']}"
            )
            if not self.check:
                api.dashboard.update_dashboard(
                    {
                        "dashboard": wanted,
                        "folderUid": spec.folder_uid,
                        "overwrite": True,
                        "message": "powerview provisioning",
                    }
                )

    def _ensure_user(self, api: GrafanaApi, org_id: int | None, team_id: int | None) -> None:
        spec = self.spec
        login = spec.user_login
        resource = f"user {login}"
        with grafana_step(resource):
            user = _absent(lambda: self._root.users.find_user(login))
            if user is None:
                self._record(resource, "create", f'"{spec.company} Default"')
                if self.check:
                    return
                password = secrets.token_urlsafe(18)
                body: dict[str, Any] = {
                    "name": f"{spec.company} Default",
                    "login": login,
                    "password": password,
                }
                if org_id is not None:
                    body["OrgId"] = org_id
                user_id = int(self._root.admin.create_user(body)["id"])
                self.result.default_user_password = password
            else:
                user_id = int(user["id"])
            if org_id is not None:
                self._only_in_org(user_id, org_id, login)
            if team_id is not None:
                members = api.teams.get_team_members(team_id)
                if all(int(m.get("userId", -1)) != user_id for m in members):
                    self._record(f"team {spec.team_name}", "update", f"member {login}")
                    if not self.check:
                        api.teams.add_team_member(team_id, user_id)

    def _only_in_org(self, user_id: int, org_id: int, login: str) -> None:
        """The company's user belongs to its organization only (not Grafana's main org)."""
        orgs = self._root.users.get_user_organisations(user_id)
        if all(int(o["orgId"]) != org_id for o in orgs):
            self._record(f"user {login}", "update", f"member of organization {org_id}")
            if not self.check:
                self._root.organizations.organization_user_add(
                    org_id, {"loginOrEmail": login, "role": "Viewer"}
                )
        for org in orgs:
            if int(org["orgId"]) != org_id:
                self._record(f"user {login}", "update", f"removed from organization {org['orgId']}")
                if not self.check:
                    self._root.organizations.organization_user_delete(int(org["orgId"]), user_id)

    # -- delete ------------------------------------------------------------------

    def delete(self, with_user: bool = False) -> TenantResult:
        """Remove dashboards, folder, datasource, team (and user, organization); never data."""
        spec = self.spec
        org_id: int | None = None
        if spec.tenancy == "org":
            with grafana_step(f"organization {spec.company}"):
                org = _absent(lambda: self._root.organization.find_organization(spec.company))
            if org is None:
                if with_user:
                    self._delete_user()
                return self.result
            org_id = int(org["id"])
        self.result.org_id = org_id
        api = self._connect(org_id)
        with grafana_step(f"folder {spec.company}"):
            folder = _absent(lambda: api.folder.get_folder(spec.folder_uid))
            if folder is not None:
                found = api.search.search_dashboards(type_="dash-db", folder_uids=[spec.folder_uid])
                for dashboard in found:
                    self._record(f"dashboard {dashboard.get('title')}", "delete")
                    if not self.check:
                        api.dashboard.delete_dashboard(dashboard["uid"])
                self._record(f"folder {spec.company}", "delete")
                if not self.check:
                    api.folder.delete_folder(spec.folder_uid)
        with grafana_step(f"datasource {spec.datasource_name}"):
            datasource = _absent(lambda: api.datasource.get_datasource_by_uid(spec.datasource_uid))
            if datasource is not None:
                self._record(f"datasource {spec.datasource_name}", "delete")
                if not self.check:
                    api.datasource.delete_datasource_by_uid(spec.datasource_uid)
        with grafana_step(f"team {spec.team_name}"):
            for team in api.teams.search_teams(query=spec.team_name):
                if team.get("name") == spec.team_name:
                    self._record(f"team {spec.team_name}", "delete")
                    if not self.check:
                        api.teams.delete_team(team["id"])
        if with_user:
            self._delete_user()
        if org_id is not None:
            self._record(f"organization {spec.company}", "delete")
            if not self.check:
                with grafana_step(f"organization {spec.company}"):
                    self._root.organizations.delete_organization(org_id)
        return self.result

    def _delete_user(self) -> None:
        login = self.spec.user_login
        with grafana_step(f"user {login}"):
            user = _absent(lambda: self._root.users.find_user(login))
            if user is not None:
                self._record(f"user {login}", "delete")
                if not self.check:
                    self._root.admin.delete_user(int(user["id"]))


def _permission_key(item: dict[str, Any]) -> tuple[str, Any, int]:
    if item.get("teamId"):
        return ("team", int(item["teamId"]), int(item.get("permission", 0)))
    if item.get("userId"):
        return ("user", int(item["userId"]), int(item.get("permission", 0)))
    return ("role", item.get("role"), int(item.get("permission", 0)))


def flux_datasource(
    name: str,
    uid: str,
    plugin_type: str,
    influx_url: str,
    influx_org: str,
    bucket: str,
    is_default: bool,
    token_id: str | None = None,
) -> dict[str, Any]:
    """A datasource reading `bucket` with Flux; the token goes in secureJsonData apart.

    `token_id` (the InfluxDB authorization's id, not a secret) lets a later run
    notice that the token was replaced and must be given again.
    """
    json_data: dict[str, Any] = {
        "version": "Flux",
        "organization": influx_org,
        "defaultBucket": bucket,
        "httpMode": "POST",
    }
    if token_id is not None:
        json_data["powerviewTokenId"] = token_id
    return {
        "name": name,
        "uid": uid,
        "type": plugin_type,
        "access": "proxy",
        "url": influx_url,
        "isDefault": is_default,
        "jsonData": json_data,
    }


def datasource_differences(existing: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings of `wanted` that `existing` does not have (the token aside)."""
    differences = [
        key
        for key in ("name", "type", "access", "url", "isDefault")
        if existing.get(key) != wanted.get(key)
    ]
    have = existing.get("jsonData") or {}
    differences += [
        f"jsonData.{key}" for key, value in wanted["jsonData"].items() if have.get(key) != value
    ]
    return differences


def connector(
    url: str,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    timeout_s: float = 10.0,
) -> Callable[[int | None], GrafanaApi]:
    """A factory of GrafanaApi clients, one per organization id (None: the user's current)."""
    if token:
        credential: Any = token
    elif username and password:
        credential = (username, password)
    else:
        raise GrafanaError(
            "Grafana credentials missing: GRAFANA_USERNAME/GRAFANA_PASSWORD or GRAFANA_API_TOKEN"
        )

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GrafanaError(f"GRAFANA_URL {url!r} is not an http(s) URL")

    def connect(org_id: int | None) -> GrafanaApi:
        # organization_id makes grafana-client send X-Grafana-Org-Id on every call,
        # rather than switching the admin's current organization server-wide.
        return GrafanaApi(
            auth=credential,
            host=parts.hostname,
            port=parts.port,
            url_path_prefix=parts.path.strip("/"),
            protocol=parts.scheme,
            timeout=timeout_s,
            organization_id=org_id,
        )

    return connect
