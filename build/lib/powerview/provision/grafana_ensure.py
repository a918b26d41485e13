"""One way to make a Grafana resource what PowerView wants: look, plan, apply, record.

The `plan_*` functions are pure: they compare what is wanted with what Grafana
holds (None: absent) and return the `Change` to make, with a before/after view
of the resource, or None when nothing differs. An `Ensurer` looks a resource up,
plans, and applies the plan unless in check mode; a change is recorded when it
is applied (in check mode: when it would be), so `changed` is true exactly when
something was written, and check mode computes the same plan and writes nothing.

Both the tenants (`grafana.py`) and the admin dashboard (`admin_dashboard.py`)
use it. Errors are left to the caller, which names the step (`grafana_step`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

Action = Literal["create", "update", "delete"]
View = dict[str, Any]  # the fields of a resource a diff shows

VIEW = 1  # Grafana folder permission levels: 1 View, 2 Edit, 4 Admin
PERMISSION_NAMES = {1: "View", 2: "Edit", 4: "Admin"}
DATASOURCE_FIELDS = ("name", "type", "access", "url", "isDefault")
SERVER_FIELDS = ("id", "version")  # set by Grafana on a dashboard, never wanted


@dataclass
class Change:
    """One resource created, updated or deleted, with its view before and after."""

    resource: str  # "team acme", "dashboard c1", ...
    action: Action
    detail: str = ""
    before: View | None = None  # None: the resource did not exist
    after: View | None = None  # None: the resource is gone

    def summary(self) -> dict[str, str]:
        """The change without its views: what a log line or a queue row keeps."""
        return {"resource": self.resource, "action": self.action, "detail": self.detail}

    def diff(self) -> dict[str, Any]:
        """Ansible's diff shape; an absent side is empty, and headers name the resource."""
        return {
            "before_header": self.resource,
            "after_header": self.resource,
            "before": self.before or {},
            "after": self.after or {},
        }


def describe_diff(diff: dict[str, Any], width: int = 70) -> list[str]:
    """`field: before -> after` for each field a diff changes (nested fields dotted).

    For people reading a terminal; long values are cut to `width` characters.
    """

    def flat(view: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(view, dict):
            return {prefix: view}
        fields: dict[str, Any] = {}
        for key, value in view.items():
            fields.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return fields

    def show(value: Any) -> str:
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= width else text[: width - 1] + "…"

    before, after = flat(diff.get("before") or {}), flat(diff.get("after") or {})
    missing = object()
    return [
        f"{key}: {show(before.get(key))} -> {show(after.get(key))}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key, missing) != after.get(key, missing)
    ]


def absent_as_none(call: Callable[[], Any]) -> Any | None:
    """The answer of a lookup, or None when Grafana says 404."""
    try:
        return call()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


# -- plans (pure) ---------------------------------------------------------------


def plan_folder(uid: str, title: str, existing: dict[str, Any] | None) -> Change | None:
    """Create the folder, rename it back when its title was changed, or nothing."""
    after = {"uid": uid, "title": title}
    if existing is None:
        return Change(f"folder {title}", "create", f"uid {uid}", None, after)
    before = {"uid": uid, "title": existing.get("title")}
    if before == after:
        return None
    return Change(f"folder {title}", "update", f"renamed from {before['title']!r}", before, after)


def permission_view(item: dict[str, Any]) -> View:
    """One folder permission item as a diff shows it: who, and the level by name."""
    level = int(item.get("permission", 0))
    named = PERMISSION_NAMES.get(level, str(level))
    for who in ("teamId", "userId"):
        if item.get(who):
            return {who: int(item[who]), "permission": named}
    return {"role": item.get("role"), "permission": named}


def plan_folder_permissions(
    title: str, uid: str, current: list[dict[str, Any]], team_id: int | None, team_name: str
) -> Change | None:
    """The team may View the folder, and nobody else has a grant of their own.

    `team_id` None: the team does not exist yet (check mode), so the grant is to come.
    """
    have = sorted(
        (permission_view(item) for item in current if not item.get("inherited")), key=repr
    )
    team: int | str = team_id if team_id is not None else f"team {team_name}, to be created"
    want = [{"teamId": team, "permission": PERMISSION_NAMES[VIEW]}]
    if have == want:
        return None
    return Change(
        f"permissions of folder {title}",
        "update",
        f"team {team_name} View only",
        {"folder": uid, "items": have},
        {"folder": uid, "items": want},
    )


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
    differences = [key for key in DATASOURCE_FIELDS if existing.get(key) != wanted.get(key)]
    have = existing.get("jsonData") or {}
    differences += [
        f"jsonData.{key}" for key, value in wanted["jsonData"].items() if have.get(key) != value
    ]
    return differences


def _datasource_view(source: dict[str, Any], wanted: dict[str, Any], token: str) -> View:
    """The fields PowerView sets, as `source` has them; the token only as a state."""
    json_data = source.get("jsonData") or {}
    view: View = {key: source.get(key) for key in DATASOURCE_FIELDS}
    view["jsonData"] = {key: json_data.get(key) for key in wanted["jsonData"]}
    view["token"] = token
    return view


def plan_datasource(
    resource: str,
    wanted: dict[str, Any],
    existing: dict[str, Any] | None,
    token_replaced: bool = False,
) -> Change | None:
    """Create the datasource, update what differs (the token when unset or replaced).

    The token never appears: a diff says "set", "absent" or "new value".
    """
    if existing is None:
        bucket = wanted["jsonData"].get("defaultBucket")
        detail = f"type {wanted['type']}, bucket {bucket}"
        return Change(resource, "create", detail, None, _datasource_view(wanted, wanted, "set"))
    differences = datasource_differences(existing, wanted)
    token_set = bool((existing.get("secureJsonFields") or {}).get("token"))
    if token_replaced or not token_set:
        differences.append("token")
    if not differences:
        return None
    before = _datasource_view(existing, wanted, "set" if token_set else "absent")
    after = _datasource_view(wanted, wanted, "new value" if "token" in differences else "set")
    return Change(resource, "update", ", ".join(differences), before, after)


def plan_dashboard(
    resource: str, wanted: dict[str, Any], folder_uid: str, current: dict[str, Any] | None
) -> Change | None:
    """Post the dashboard when absent, different, or in another folder."""
    after = {"folderUid": folder_uid, "dashboard": wanted}
    if current is None:
        return Change(resource, "create", f"uid {wanted['uid']}", None, after)
    stored = {
        key: value
        for key, value in (current.get("dashboard") or {}).items()
        if key not in SERVER_FIELDS
    }
    before = {"folderUid": (current.get("meta") or {}).get("folderUid"), "dashboard": stored}
    if before == after:
        return None
    differing = sorted(
        key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key)
    )
    if before["folderUid"] != folder_uid:
        differing.append("folder")
    return Change(resource, "update", f"uid {wanted['uid']}: {', '.join(differing)}", before, after)


# -- applier ----------------------------------------------------------------------


@dataclass
class DatasourcePlan:
    """A planned datasource change and the stored datasource it starts from."""

    change: Change | None
    existing: dict[str, Any] | None


@dataclass
class Ensurer:
    """Looks, plans and applies on one GrafanaApi; `changes` lists what was applied.

    `api` None stands for an organization that does not exist yet (check mode
    only): every lookup finds nothing, so the plan is "create everything".
    """

    api: GrafanaApi | None
    check: bool = False
    changes: list[Change] = field(default_factory=list)

    def look(self, call: Callable[[GrafanaApi], Any]) -> Any | None:
        """A lookup's answer; None when Grafana says 404 or the organization is to come."""
        api = self.api
        if api is None:
            return None
        return absent_as_none(lambda: call(api))

    def apply(self, change: Change, write: Callable[[GrafanaApi], object]) -> Change:
        """Write `change` (not in check mode), then record it."""
        if not self.check:
            if self.api is None:
                raise RuntimeError(f"{change.resource}: no Grafana organization to write to")
            write(self.api)
        self.changes.append(change)
        return change

    def folder(self, uid: str, title: str) -> Change | None:
        existing = self.look(lambda api: api.folder.get_folder(uid))
        change = plan_folder(uid, title, existing)
        if change is None:
            return None
        if existing is None:
            return self.apply(change, lambda api: api.folder.create_folder(title, uid=uid))
        version = existing.get("version")
        return self.apply(
            change, lambda api: api.folder.update_folder(uid, title=title, version=version)
        )

    def folder_permissions(
        self, uid: str, title: str, team_id: int | None, team_name: str
    ) -> Change | None:
        current = self.look(lambda api: api.folder.get_folder_permissions(uid)) or []
        change = plan_folder_permissions(title, uid, current, team_id, team_name)
        if change is None:
            return None
        items = {"items": [{"teamId": team_id, "permission": VIEW}]}
        return self.apply(change, lambda api: api.folder.update_folder_permissions(uid, items))

    def plan_datasource(
        self,
        resource: str,
        wanted: dict[str, Any],
        token_replaced: bool = False,
        also_by_name: bool = False,
    ) -> DatasourcePlan:
        """Look the datasource up (by uid, then by name if asked) and plan it."""
        uid, name = wanted["uid"], wanted["name"]
        existing = self.look(lambda api: api.datasource.get_datasource_by_uid(uid))
        if existing is None and also_by_name:
            existing = self.look(lambda api: api.datasource.get_datasource_by_name(name))
        return DatasourcePlan(plan_datasource(resource, wanted, existing, token_replaced), existing)

    def apply_datasource(
        self, plan: DatasourcePlan, wanted: dict[str, Any], token: str | None
    ) -> Change | None:
        """Create or update as planned; the token is (re)sent whenever it is given."""
        if plan.change is None:
            return None
        body = dict(wanted)
        if token:
            body["secureJsonData"] = {"token": token}
        existing = plan.existing
        if existing is None:
            return self.apply(plan.change, lambda api: api.datasource.create_datasource(body))
        body["id"], body["version"] = existing.get("id"), existing.get("version")
        return self.apply(
            plan.change,
            lambda api: api.datasource.update_datasource_by_uid(existing["uid"], body),
        )

    def datasource(
        self,
        resource: str,
        wanted: dict[str, Any],
        token: str | None,
        token_replaced: bool = False,
    ) -> Change | None:
        return self.apply_datasource(
            self.plan_datasource(resource, wanted, token_replaced), wanted, token
        )

    def dashboard(
        self, resource: str, wanted: dict[str, Any], folder_uid: str, message: str
    ) -> Change | None:
        uid = wanted["uid"]
        current = self.look(lambda api: api.dashboard.get_dashboard(uid))
        change = plan_dashboard(resource, wanted, folder_uid, current)
        if change is None:
            return None
        body = {"dashboard": wanted, "folderUid": folder_uid, "overwrite": True, "message": message}
        return self.apply(change, lambda api: api.dashboard.update_dashboard(body))

    def remove(self, resource: str, before: View, delete: Callable[[GrafanaApi], object]) -> Change:
        """Delete a resource found to exist; `before` is its view for the diff."""
        return self.apply(Change(resource, "delete", "", before, None), delete)
