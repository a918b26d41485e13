"""A company's Grafana resources, created, kept or removed idempotently.

Each step goes through the ensure core (`grafana_ensure`): it looks, plans the
change with its before/after view, and applies it unless in check mode; every
applied change is recorded, so `changed` is honest and check mode reports the
same plan. Everything goes through grafana-client; the project's Ansible module
(grafana_automation/library/powerview_grafana_tenant.py) calls this.

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
from functools import partial
from typing import Any, Literal
from urllib.parse import urlsplit

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from powerview.exceptions import GrafanaError, GrafanaUnavailableError
from powerview.layout import check_name
from powerview.provision.dashboard import build_dashboard, flat_uid, legacy_dashboard_uid
from powerview.provision.grafana_ensure import Change, Ensurer, View, flux_datasource

Tenancy = Literal["org", "team"]
TEAM_MODE_WARNING = (
    "tenancy 'team' on Grafana OSS: every user of the organization can query every "
    "datasource in it; companies are isolated at folder level only"
)


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
        return flat_uid("folder", self.company)

    @property
    def datasource_name(self) -> str:
        return f"influxdb_{self.company}"

    @property
    def datasource_uid(self) -> str:
        return flat_uid("ds", self.company)

    @property
    def user_login(self) -> str:
        return f"user_{self.company}"


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
            "changes": [c.summary() for c in self.changes],
            "warnings": self.warnings,
            "org_id": self.org_id,
        }

    def diff(self) -> list[dict[str, Any]]:
        """One before/after per change, in Ansible's diff shape."""
        return [c.diff() for c in self.changes]


@contextlib.contextmanager
def grafana_step(step: str) -> Iterator[None]:
    """Translate grafana-client errors, naming the provisioning step that failed."""
    try:
        yield
    except GrafanaClientError as exc:
        raise GrafanaError(f"{step}: Grafana answered {exc.status_code}: {exc.message}") from exc
    except GrafanaException as exc:
        raise GrafanaUnavailableError(f"{step}: {exc}") from exc
    except OSError as exc:
        raise GrafanaUnavailableError(f"{step}: Grafana unreachable ({exc})") from exc


class GrafanaTenant:
    """Applies a TenantSpec; `connect(org_id)` returns a GrafanaApi for that org."""

    def __init__(
        self, connect: Callable[[int | None], GrafanaApi], spec: TenantSpec, check: bool = False
    ) -> None:
        self._connect = connect
        self.spec = spec
        self.check = check
        self.result = TenantResult()
        # Organizations and users are server-wide: their steps go through the root client.
        self._root = Ensurer(connect(None), check, self.result.changes)

    def _in_org(self, org_id: int | None, org_to_come: bool) -> Ensurer:
        """The ensurer for the company's organization (None: the org is still to come)."""
        api = None if org_to_come else self._connect(org_id)
        return Ensurer(api, self.check, self.result.changes)

    # -- create or keep --------------------------------------------------------

    def ensure(self) -> TenantResult:
        spec = self.spec
        if spec.tenancy == "team" and not spec.enterprise:
            self.result.warnings.append(TEAM_MODE_WARNING)
        org_id = self._ensure_org() if spec.tenancy == "org" else None
        self.result.org_id = org_id
        org = self._in_org(org_id, org_to_come=spec.tenancy == "org" and org_id is None)
        team_id = self._ensure_team(org)
        with grafana_step(f"folder {spec.company}"):
            org.folder(spec.folder_uid, spec.company)
        with grafana_step(f"permissions of folder {spec.company}"):
            org.folder_permissions(spec.folder_uid, spec.company, team_id, spec.team_name)
        self._ensure_datasource(org, team_id)
        for campaign in spec.campaigns:
            wanted = build_dashboard(
                spec.company, campaign, spec.datasource_uid, spec.datasource_type
            )
            with grafana_step(f"dashboard {campaign}"):
                self._drop_legacy_dashboard(org, campaign, wanted["uid"])
                org.dashboard(
                    f"dashboard {campaign}", wanted, spec.folder_uid, "powerview provisioning"
                )
        if spec.default_user:
            self._ensure_user(org, org_id, team_id)
        return self.result

    def _drop_legacy_dashboard(self, org: Ensurer, campaign: str, uid: str) -> None:
        """Remove this campaign's dashboard saved under the old, ambiguous uid.

        Only while the new uid is unused, and only when the old dashboard is
        provably ours: in this company's folder, titled with this campaign and
        tagged with this company (the old uid may belong to another company's
        campaign, which is left alone). Done before the new dashboard is saved,
        since Grafana refuses two equal titles in one folder.
        """
        spec = self.spec
        old_uid = legacy_dashboard_uid(spec.company, campaign)
        if org.look(lambda api: api.dashboard.get_dashboard(uid)) is not None:
            return
        old = org.look(lambda api: api.dashboard.get_dashboard(old_uid))
        if old is None:
            return
        body = old.get("dashboard") or {}
        folder = (old.get("meta") or {}).get("folderUid")
        ours = (
            folder == spec.folder_uid
            and body.get("title") == campaign
            and f"company:{spec.company}" in (body.get("tags") or [])
        )
        if ours:
            org.remove(
                f"dashboard {campaign}",
                {"uid": old_uid, "title": campaign, "folderUid": folder},
                partial(_delete_dashboard, uid=old_uid),
            )

    def _ensure_org(self) -> int | None:
        """The organization's id; None in check mode when it would be created."""
        name = self.spec.company
        with grafana_step(f"organization {name}"):
            found = self._root.look(lambda api: api.organization.find_organization(name))
            if found is not None:
                return int(found["id"])
            created: dict[str, Any] = {}

            def create(api: GrafanaApi) -> None:
                created.update(api.organization.create_organization({"name": name}))

            change = Change(f"organization {name}", "create", "", None, {"name": name})
            self._root.apply(change, create)
            return int(created["orgId"]) if created else None

    def _ensure_team(self, org: Ensurer) -> int | None:
        """The team's id; None in check mode when it would be created."""
        name = self.spec.team_name
        with grafana_step(f"team {name}"):
            for team in org.look(lambda api: api.teams.search_teams(query=name)) or []:
                if team.get("name") == name:
                    return int(team["id"])
            created: dict[str, Any] = {}

            def create(api: GrafanaApi) -> None:
                created.update(api.teams.add_team({"name": name}))

            org.apply(Change(f"team {name}", "create", "", None, {"name": name}), create)
            return int(created["teamId"]) if created else None

    def _datasource_body(self) -> dict[str, Any]:
        spec = self.spec
        return flux_datasource(
            spec.datasource_name,
            spec.datasource_uid,
            spec.datasource_type,
            spec.influx_url,
            spec.influx_org,
            bucket=spec.company,
            is_default=spec.tenancy == "org",
            token_id=spec.token_id or "",
        )

    def _ensure_datasource(self, org: Ensurer, team_id: int | None) -> None:
        spec = self.spec
        resource = f"datasource {spec.datasource_name}"
        wanted = self._datasource_body()
        with grafana_step(resource):
            plan = org.plan_datasource(resource, wanted, also_by_name=True)
            change = plan.change
            # In check mode the token may be created by the real run: no token is no error.
            if change is not None and not spec.read_token and not self.check:
                if plan.existing is None:
                    raise GrafanaError(
                        f"{resource}: no read token to give it (run `powerview token ensure`)"
                    )
                if "token" in change.detail.split(", "):
                    raise GrafanaError(f"{resource}: its token is missing and none was given")
            org.apply_datasource(plan, wanted, spec.read_token)
            existing = plan.existing
            if spec.enterprise and team_id is not None and org.api is not None and not self.check:
                with contextlib.suppress(GrafanaClientError):  # OSS has no such API
                    org.api.datasource.enable_datasource_permissions(
                        existing["id"] if existing else 0
                    )

    def _ensure_user(self, org: Ensurer, org_id: int | None, team_id: int | None) -> None:
        spec = self.spec
        login = spec.user_login
        resource = f"user {login}"
        with grafana_step(resource):
            user = self._root.look(lambda api: api.users.find_user(login))
            if user is None:
                name = f"{spec.company} Default"
                password = secrets.token_urlsafe(18)
                body: dict[str, Any] = {"name": name, "login": login, "password": password}
                if org_id is not None:
                    body["OrgId"] = org_id
                created: dict[str, Any] = {}

                def create(api: GrafanaApi) -> None:
                    created.update(api.admin.create_user(body))

                after: View = {"login": login, "name": name, "orgId": org_id}
                self._root.apply(Change(resource, "create", f'"{name}"', None, after), create)
                if not created:
                    return  # check mode: the user's memberships come with it
                user_id = int(created["id"])
                self.result.default_user_password = password
            else:
                user_id = int(user["id"])
            if org_id is not None:
                self._only_in_org(user_id, org_id, login)
            if team_id is not None:
                members = org.look(lambda api: api.teams.get_team_members(team_id)) or []
                if all(int(m.get("userId", -1)) != user_id for m in members):
                    logins = sorted(str(m.get("login")) for m in members)
                    before: View = {"members": logins}
                    after = {"members": sorted([*logins, login])}
                    org.apply(
                        Change(
                            f"team {spec.team_name}", "update", f"member {login}", before, after
                        ),
                        lambda api: api.teams.add_team_member(team_id, user_id),
                    )

    def _only_in_org(self, user_id: int, org_id: int, login: str) -> None:
        """The company's user belongs to its organization only (not Grafana's main org)."""
        root = self._root
        orgs = root.look(lambda api: api.users.get_user_organisations(user_id)) or []
        have = sorted(int(o["orgId"]) for o in orgs)
        resource = f"user {login}"
        if org_id not in have:
            root.apply(
                Change(
                    resource,
                    "update",
                    f"member of organization {org_id}",
                    {"orgs": have},
                    {"orgs": sorted({*have, org_id})},
                ),
                lambda api: api.organizations.organization_user_add(
                    org_id, {"loginOrEmail": login, "role": "Viewer"}
                ),
            )
        for other in have:
            if other != org_id:
                root.apply(
                    Change(
                        resource,
                        "update",
                        f"removed from organization {other}",
                        {"orgs": have},
                        {"orgs": [org_id]},
                    ),
                    partial(_leave_organization, org_id=other, user_id=user_id),
                )

    # -- delete ------------------------------------------------------------------

    def delete(self, with_user: bool = False) -> TenantResult:
        """Remove dashboards, folder, datasource, team (and user, organization); never data."""
        spec = self.spec
        root = self._root
        org_id: int | None = None
        if spec.tenancy == "org":
            with grafana_step(f"organization {spec.company}"):
                org = root.look(lambda api: api.organization.find_organization(spec.company))
            if org is None:
                if with_user:
                    self._delete_user()
                return self.result
            org_id = int(org["id"])
        self.result.org_id = org_id
        scoped = self._in_org(org_id, org_to_come=False)
        uid = spec.folder_uid
        with grafana_step(f"folder {spec.company}"):
            folder = scoped.look(lambda api: api.folder.get_folder(uid))
            if folder is not None:
                found = scoped.look(
                    lambda api: api.search.search_dashboards(type_="dash-db", folder_uids=[uid])
                )
                for dashboard in found or []:
                    dash_uid = dashboard["uid"]
                    scoped.remove(
                        f"dashboard {dashboard.get('title')}",
                        {"uid": dash_uid, "title": dashboard.get("title"), "folderUid": uid},
                        partial(_delete_dashboard, uid=dash_uid),
                    )
                scoped.remove(
                    f"folder {spec.company}",
                    {"uid": uid, "title": folder.get("title")},
                    lambda api: api.folder.delete_folder(uid),
                )
        resource = f"datasource {spec.datasource_name}"
        with grafana_step(resource):
            ds_uid = spec.datasource_uid
            datasource = scoped.look(lambda api: api.datasource.get_datasource_by_uid(ds_uid))
            if datasource is not None:
                scoped.remove(
                    resource,
                    {"uid": ds_uid, "name": datasource.get("name")},
                    lambda api: api.datasource.delete_datasource_by_uid(ds_uid),
                )
        with grafana_step(f"team {spec.team_name}"):
            for team in scoped.look(lambda api: api.teams.search_teams(query=spec.team_name)) or []:
                if team.get("name") == spec.team_name:
                    team_id = team["id"]
                    scoped.remove(
                        f"team {spec.team_name}",
                        {"name": spec.team_name},
                        partial(_delete_team, team_id=team_id),
                    )
        if with_user:
            self._delete_user()
        if org_id is not None:
            with grafana_step(f"organization {spec.company}"):
                root.remove(
                    f"organization {spec.company}",
                    {"name": spec.company, "id": org_id},
                    lambda api: api.organizations.delete_organization(org_id),
                )
        return self.result

    def _delete_user(self) -> None:
        login = self.spec.user_login
        with grafana_step(f"user {login}"):
            user = self._root.look(lambda api: api.users.find_user(login))
            if user is not None:
                user_id = int(user["id"])
                self._root.remove(
                    f"user {login}",
                    {"login": login, "name": user.get("name")},
                    lambda api: api.admin.delete_user(user_id),
                )


# Writes run inside Ensurer.apply, bound to their arguments (loop variables included).


def _leave_organization(api: GrafanaApi, org_id: int, user_id: int) -> None:
    api.organizations.organization_user_delete(org_id, user_id)


def _delete_dashboard(api: GrafanaApi, uid: str) -> None:
    api.dashboard.delete_dashboard(uid)


def _delete_team(api: GrafanaApi, team_id: int) -> None:
    api.teams.delete_team(team_id)


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
