"""Grafana's HTTP API behaviour, one handler per (method, spec path).

Paths are the spec's (relative to ``/api``) so that a handler's response can
be validated against the right operation. Handlers return the JSON body of a
200 answer or raise :class:`~.errors.ApiError`; they run while ``State.lock``
is held. Status codes and messages follow Grafana's source (``pkg/api``,
``pkg/services/team/teamapi``, the dashboard and folder error definitions).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from .auth import NO_ORG, Principal
from .errors import ApiError, access_denied, error, not_found
from .state import (
    GENERAL_FOLDER_PERMISSION,
    TEAM_ADMIN,
    TEAM_MEMBER,
    AclItem,
    Dashboard,
    Datasource,
    Folder,
    Org,
    Permission,
    QueryRecord,
    Role,
    State,
    Team,
    User,
    avatar_url,
    now,
    short_uid,
    slugify,
)

VERSION = "11.6.0"
COMMIT = "powerview-standin"
MAX_UID_LENGTH = 40
_UID_CHARS = re.compile(r"^[a-zA-Z0-9\-_]*$")


class GoFields(dict[str, Any]):
    """A JSON object read the way Go's ``encoding/json`` fills a struct.

    Grafana binds request bodies to structs, and Go matches field names exactly
    if it can, else case-insensitively: ``{"OrgId": 2}`` sets ``orgId``. Maps
    inside (``dashboard``, ``jsonData``, ``secureJsonData``, queries) keep
    their keys exactly, so only struct-shaped objects are wrapped.
    """

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        lowered = key.lower()
        return next((v for k, v in self.items() if k.lower() == lowered), default)


@dataclass
class Call:
    """One API call as a handler sees it."""

    state: State
    request: Request
    params: dict[str, str]
    principal: Principal | None

    @property
    def who(self) -> Principal:
        if self.principal is None:  # only public routes run without one
            raise error(401, "Unauthorized")
        return self.principal

    @property
    def org_id(self) -> int:
        return self.who.org_id

    def body(self) -> GoFields:
        data = self.request.get_json(silent=True)
        if data is None and self.request.get_data():
            raise error(400, "bad request data")
        return GoFields(data if isinstance(data, dict) else {})

    def arg(self, name: str) -> str | None:
        return self.request.args.get(name)

    def int_arg(self, name: str, default: int) -> int:
        try:
            return int(self.request.args.get(name, default))
        except ValueError:
            return default

    def list_arg(self, name: str) -> list[str]:
        """Repeated keys (what Grafana reads) and comma lists (the spec's ``explode: false``)."""
        return [part for raw in self.request.args.getlist(name) for part in raw.split(",")]

    def id_param(self, name: str, message: str) -> int:
        try:
            return int(self.params[name])
        except ValueError as exc:
            raise error(400, message) from exc


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the spec's path template, relative to /api
    handler: Handler
    public: bool = False


ROUTES: list[Route] = []


def route(method: str, path: str, *, public: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, path, handler, public))
        return handler

    return register


def success(message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, **extra}


# ====================================================================== DTOs
def org_details(org: Org) -> dict[str, Any]:
    address = dict.fromkeys(("address1", "address2", "city", "zipCode", "state", "country"), "")
    return {"id": org.id, "name": org.name, "address": address}


def user_profile(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "uid": user.uid,
        "email": user.email,
        "name": user.name,
        "login": user.login,
        "theme": user.theme,
        "orgId": user.current_org_id,
        "isGrafanaAdmin": user.is_grafana_admin,
        "isDisabled": False,
        "isExternal": False,
        "isExternallySynced": False,
        "isGrafanaAdminExternallySynced": False,
        "authLabels": [],
        "updatedAt": user.updated,
        "createdAt": user.created,
        "avatarUrl": avatar_url(user.email),
    }


def org_user(org_id: int, user: User, role: Role) -> dict[str, Any]:
    return {
        "orgId": org_id,
        "userId": user.id,
        "uid": user.uid,
        "email": user.email,
        "name": user.name,
        "avatarUrl": avatar_url(user.email),
        "login": user.login,
        "role": role.value,
        "lastSeenAt": user.updated,
        "lastSeenAtAge": "< 1 minute",
        "isDisabled": False,
        "authLabels": [],
        "isExternallySynced": False,
    }


def team_dto(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "uid": team.uid,
        "orgId": team.org_id,
        "name": team.name,
        "email": team.email,
        "avatarUrl": avatar_url(team.email or team.name),
        "memberCount": len(team.members),
        "permission": 0,
    }


def team_member(team: Team, user: User, permission: int) -> dict[str, Any]:
    return {
        "orgId": team.org_id,
        "teamId": team.id,
        "teamUID": team.uid,
        "userId": user.id,
        "userUID": user.uid,
        "auth_module": "",
        "email": user.email,
        "name": user.name,
        "login": user.login,
        "avatarUrl": avatar_url(user.email),
        "labels": [],
        "permission": permission,
    }


def folder_dto(state: State, folder: Folder, who: Principal) -> dict[str, Any]:
    permission = state.folder_permission(folder, who.user.id, who.role)
    body: dict[str, Any] = {
        "id": folder.id,
        "uid": folder.uid,
        "orgId": folder.org_id,
        "title": folder.title,
        "url": folder.url,
        "hasAcl": False,
        "canSave": permission >= Permission.EDIT,
        "canEdit": permission >= Permission.EDIT,
        "canAdmin": permission >= Permission.ADMIN,
        "canDelete": permission >= Permission.EDIT,
        "createdBy": folder.created_by,
        "created": folder.created,
        "updatedBy": folder.updated_by,
        "updated": folder.updated,
        "version": folder.version,
    }
    if folder.parent_uid:
        body["parentUid"] = folder.parent_uid
    return body


def acl_dto(state: State, folder: Folder, item: AclItem) -> dict[str, Any]:
    body: dict[str, Any] = {
        "folderId": folder.id,
        "folderUid": folder.parent_uid or "",
        "dashboardId": 0,
        "created": item.created,
        "updated": item.updated,
        "userId": item.user_id or 0,
        "userLogin": "",
        "userEmail": "",
        "userAvatarUrl": "",
        "teamId": item.team_id or 0,
        "team": "",
        "teamEmail": "",
        "teamAvatarUrl": "",
        "permission": item.permission,
        "permissionName": Permission(item.permission).name.title(),
        "uid": folder.uid,
        "title": folder.title,
        "slug": folder.slug,
        "url": folder.url,
        "isFolder": True,
        "inherited": False,
    }
    if item.role is not None:
        body["role"] = item.role.value
    user = state.users.get(item.user_id or 0)
    if user is not None:
        body.update(
            userLogin=user.login, userEmail=user.email, userAvatarUrl=avatar_url(user.email)
        )
    team = state.teams.get(item.team_id or 0)
    if team is not None:
        body.update(
            team=team.name, teamEmail=team.email, teamAvatarUrl=avatar_url(team.email or team.name)
        )
    return body


def datasource_dto(ds: Datasource) -> dict[str, Any]:
    return {
        "id": ds.id,
        "uid": ds.uid,
        "orgId": ds.org_id,
        "name": ds.name,
        "type": ds.type,
        "typeLogoUrl": "",
        "access": ds.access,
        "url": ds.url,
        "user": ds.user,
        "database": ds.database,
        "basicAuth": ds.basic_auth,
        "basicAuthUser": ds.basic_auth_user,
        "withCredentials": ds.with_credentials,
        "isDefault": ds.is_default,
        "jsonData": ds.json_data,
        "secureJsonFields": dict.fromkeys(ds.secure_json_data, True),
        "version": ds.version,
        "readOnly": ds.read_only,
    }


def datasource_list_item(ds: Datasource) -> dict[str, Any]:
    return {
        "id": ds.id,
        "uid": ds.uid,
        "orgId": ds.org_id,
        "name": ds.name,
        "type": ds.type,
        "typeName": ds.type,
        "typeLogoUrl": "",
        "access": ds.access,
        "url": ds.url,
        "user": ds.user,
        "database": ds.database,
        "basicAuth": ds.basic_auth,
        "isDefault": ds.is_default,
        "jsonData": ds.json_data,
        "readOnly": ds.read_only,
    }


def dashboard_hit(state: State, dash: Dashboard) -> dict[str, Any]:
    hit: dict[str, Any] = {
        "id": dash.id,
        "uid": dash.uid,
        "title": dash.title,
        "uri": f"db/{dash.slug}",
        "url": dash.url,
        "slug": "",
        "type": "dash-db",
        "tags": dash.tags,
        "isStarred": False,
        "sortMeta": 0,
    }
    folder = state.folder(dash.org_id, dash.folder_uid) if dash.folder_uid else None
    if folder is not None:
        hit.update(
            folderId=folder.id, folderUid=folder.uid, folderTitle=folder.title, folderUrl=folder.url
        )
    return hit


def folder_hit(folder: Folder) -> dict[str, Any]:
    return {
        "id": folder.id,
        "uid": folder.uid,
        "title": folder.title,
        "uri": f"db/{folder.slug}",
        "url": folder.url,
        "slug": "",
        "type": "dash-folder",
        "tags": [],
        "isStarred": False,
        "sortMeta": 0,
    }


# ================================================================ health
@route("GET", "/health", public=True)
def health(call: Call) -> Any:
    return {"commit": COMMIT, "database": "ok", "version": VERSION}


@route("GET", "/frontend/settings")
def frontend_settings(call: Call) -> Any:
    return {
        "appSubUrl": "",
        "buildInfo": {
            "version": VERSION,
            "commit": COMMIT,
            "edition": "Open Source",
            "env": "production",
            "hasUpdate": False,
            "latestVersion": VERSION,
        },
    }


# ================================================================= orgs
def _org_or_404(call: Call, message: str = "Organization not found") -> Org:
    org = call.state.orgs.get(call.id_param("org_id", "orgId is invalid"))
    if org is None:
        raise not_found(message)
    return org


def _require_org_admin(call: Call, org_id: int, action: str) -> None:
    """Grafana admins, or Admins of that very org (access control ``...InOrg``)."""
    who = call.who
    if who.is_grafana_admin:
        return
    if who.token is not None and who.token.org_id != org_id:
        raise access_denied(action)
    if call.state.role_of(who.user.id, org_id) is not Role.ADMIN:
        raise access_denied(action)


@route("GET", "/orgs")
def search_orgs(call: Call) -> Any:
    call.who.require_grafana_admin("orgs:read")
    name, query = call.arg("name"), (call.arg("query") or "").lower()
    orgs = [
        {"id": org.id, "name": org.name}
        for org in sorted(call.state.orgs.values(), key=lambda o: o.name.lower())
        if (not name or org.name == name) and query in org.name.lower()
    ]
    perpage = max(call.int_arg("perpage", 1000), 1)
    page = max(call.int_arg("page", 1), 1)
    return orgs[(page - 1) * perpage : page * perpage]


@route("POST", "/orgs")
def create_org(call: Call) -> Any:
    who = call.who
    who.require_grafana_admin("orgs:create")
    name = str(call.body().get("name") or "")
    if call.state.org_by_name(name) is not None:
        raise error(409, "Organization name taken")
    org = call.state.add_org(name)
    # Grafana makes the creator an Admin of the new org (orgService.CreateWithMember).
    call.state.memberships[(org.id, who.user.id)] = Role.ADMIN
    return {"orgId": org.id, "message": "Organization created"}


@route("GET", "/orgs/name/{org_name}")
def get_org_by_name(call: Call) -> Any:
    call.who.require_grafana_admin("orgs:read")
    org = call.state.org_by_name(call.params["org_name"])
    if org is None:
        raise not_found("Organization not found")
    return org_details(org)


@route("GET", "/orgs/{org_id}")
def get_org(call: Call) -> Any:
    call.who.require_grafana_admin("orgs:read")
    return org_details(_org_or_404(call))


@route("DELETE", "/orgs/{org_id}")
def delete_org(call: Call) -> Any:
    who = call.who
    who.require_grafana_admin("orgs:delete")
    org_id = call.id_param("org_id", "orgId is invalid")
    # Grafana compares with the org of the request (X-Grafana-Org-Id, else current org).
    if org_id == who.org_id:
        raise error(400, "Can not delete org for current user")
    if org_id not in call.state.orgs:
        raise not_found("Failed to delete organization. ID not found")
    call.state.delete_org(org_id)
    return success("Organization deleted")


def _org_users(state: State, org_id: int) -> list[dict[str, Any]]:
    return [
        org_user(org_id, user, role)
        for user, role in state.org_members(org_id)
        if not user.is_service_account
    ]


def _add_org_user(call: Call, org_id: int) -> Any:
    body = call.body()
    try:
        role = Role(str(body.get("role") or ""))
    except ValueError as exc:
        raise error(400, "Invalid role specified") from exc
    if org_id not in call.state.orgs:
        raise error(500, "Could not add user to organization")
    user = call.state.user_by_login(str(body.get("loginOrEmail") or ""))
    if user is None:
        raise not_found("User not found")
    if call.state.role_of(user.id, org_id) is not None:
        raise error(409, "User is already member of this organization")
    call.state.memberships[(org_id, user.id)] = role
    if user.current_org_id <= 0:
        user.current_org_id = org_id
    return success("User added to organization", userId=user.id)


def _update_org_user(call: Call, org_id: int) -> Any:
    user_id = call.id_param("user_id", "userId is invalid")
    try:
        role = Role(str(call.body().get("role") or ""))
    except ValueError as exc:
        raise error(400, "Invalid role specified") from exc
    current = call.state.role_of(user_id, org_id)
    if current is None:
        raise error(500, "Failed update org user")
    demoted = current is Role.ADMIN and role is not Role.ADMIN
    if demoted and not call.state.admins_left(org_id, without=user_id):
        raise error(400, "Cannot change role so that there is no organization admin left")
    call.state.memberships[(org_id, user_id)] = role
    return success("Organization user updated")


def _remove_org_user(call: Call, org_id: int, *, delete_orphan: bool) -> Any:
    user_id = call.id_param("user_id", "userId is invalid")
    if user_id not in call.state.users:
        raise error(500, "Failed to remove user from organization")
    role = call.state.role_of(user_id, org_id)
    if role is Role.ADMIN and not call.state.admins_left(org_id, without=user_id):
        raise error(400, "Cannot remove last organization admin")
    call.state.remove_member(org_id, user_id)
    if delete_orphan and not call.state.orgs_of(user_id):
        call.state.delete_user(user_id)
        return success("User deleted")
    return success("User removed from organization")


@route("GET", "/orgs/{org_id}/users")
def get_org_users(call: Call) -> Any:
    org_id = call.id_param("org_id", "orgId is invalid")
    _require_org_admin(call, org_id, "org.users:read")
    return _org_users(call.state, org_id)


@route("POST", "/orgs/{org_id}/users")
def add_org_user(call: Call) -> Any:
    org_id = call.id_param("org_id", "orgId is invalid")
    _require_org_admin(call, org_id, "org.users:add")
    return _add_org_user(call, org_id)


@route("PATCH", "/orgs/{org_id}/users/{user_id}")
def update_org_user(call: Call) -> Any:
    org_id = call.id_param("org_id", "orgId is invalid")
    _require_org_admin(call, org_id, "org.users:write")
    return _update_org_user(call, org_id)


@route("DELETE", "/orgs/{org_id}/users/{user_id}")
def remove_org_user(call: Call) -> Any:
    org_id = call.id_param("org_id", "orgId is invalid")
    _require_org_admin(call, org_id, "org.users:remove")
    return _remove_org_user(call, org_id, delete_orphan=False)


@route("GET", "/org")
def get_current_org(call: Call) -> Any:
    who = call.who
    who.require_member("orgs:read")
    return org_details(call.state.orgs[who.org_id])


@route("GET", "/org/users")
def get_current_org_users(call: Call) -> Any:
    call.who.require_role(Role.ADMIN, "org.users:read")
    return _org_users(call.state, call.org_id)


@route("POST", "/org/users")
def add_current_org_user(call: Call) -> Any:
    call.who.require_role(Role.ADMIN, "org.users:add")
    return _add_org_user(call, call.org_id)


@route("PATCH", "/org/users/{user_id}")
def update_current_org_user(call: Call) -> Any:
    call.who.require_role(Role.ADMIN, "org.users:write")
    return _update_org_user(call, call.org_id)


@route("DELETE", "/org/users/{user_id}")
def remove_current_org_user(call: Call) -> Any:
    call.who.require_role(Role.ADMIN, "org.users:remove")
    return _remove_org_user(call, call.org_id, delete_orphan=True)


# ================================================================ users
def _user_or_404(call: Call) -> User:
    user = call.state.users.get(call.id_param("user_id", "id is invalid"))
    if user is None or user.is_service_account:
        raise not_found("user not found")
    return user


@route("POST", "/admin/users")
def admin_create_user(call: Call) -> Any:
    call.who.require_grafana_admin("users:create")
    body = call.body()
    login = str(body.get("login") or "")
    email = str(body.get("email") or "")
    password = str(body.get("password") or "")
    login = login or email
    if not login:
        raise error(400, "Validation error, need specify either username or email")
    if len(password) < 4:
        raise error(400, "Password is missing or too short")
    org_id = int(body.get("orgId") or 0) or 1
    if org_id not in call.state.orgs:
        raise error(400, "organization not found")
    if call.state.login_taken(login, email):
        raise error(
            412,
            f"User with email '{body.get('email') or ''}' or username "
            f"'{body.get('login') or ''}' already exists",
        )
    # auto_assign_org: the new user joins the org as Viewer (auto_assign_org_role).
    user = call.state.add_user(
        login,
        password,
        org_id=org_id,
        role=Role.VIEWER,
        email=email or login,
        name=str(body.get("name") or ""),
    )
    return {"id": user.id, "uid": user.uid, "message": "User created"}


@route("DELETE", "/admin/users/{user_id}")
def admin_delete_user(call: Call) -> Any:
    call.who.require_grafana_admin("users:delete")
    user = _user_or_404(call)
    call.state.delete_user(user.id)
    return success("User deleted")


@route("PUT", "/admin/users/{user_id}/password")
def admin_set_password(call: Call) -> Any:
    call.who.require_grafana_admin("users.password:write")
    password = str(call.body().get("password") or "")
    if len(password) < 4:
        raise error(400, "New password too short")
    user = call.state.users.get(call.id_param("user_id", "id is invalid"))
    if user is None or user.is_service_account:
        raise error(500, "Could not read user from database")
    user.password = password
    return success("User password updated")


@route("PUT", "/admin/users/{user_id}/permissions")
def admin_set_permissions(call: Call) -> Any:
    call.who.require_grafana_admin("users.permissions:write")
    user = call.state.users.get(call.id_param("user_id", "id is invalid"))
    if user is None or user.is_service_account:
        raise error(500, "Failed to update user permissions")
    grant = bool(call.body().get("isGrafanaAdmin"))
    others = [u for u in call.state.users.values() if u.is_grafana_admin and u.id != user.id]
    if not grant and not others:
        raise error(400, "cannot remove last grafana admin")
    user.is_grafana_admin = grant
    return success("User permissions updated")


@route("GET", "/users")
def search_users(call: Call) -> Any:
    call.who.require_grafana_admin("users:read")
    users = [
        u
        for u in sorted(call.state.users.values(), key=lambda u: u.login)
        if not u.is_service_account
    ]
    perpage = max(call.int_arg("perpage", 1000), 1)
    page = max(call.int_arg("page", 1), 1)
    return [
        {
            "id": u.id,
            "uid": u.uid,
            "name": u.name,
            "login": u.login,
            "email": u.email,
            "avatarUrl": avatar_url(u.email),
            "isAdmin": u.is_grafana_admin,
            "isDisabled": False,
            "lastSeenAt": u.updated,
            "lastSeenAtAge": "< 1 minute",
            "authLabels": [],
        }
        for u in users[(page - 1) * perpage : page * perpage]
    ]


@route("GET", "/users/lookup")
def lookup_user(call: Call) -> Any:
    call.who.require_grafana_admin("users:read")
    user = call.state.user_by_login(call.arg("loginOrEmail") or "")
    if user is None:
        raise not_found("user not found")
    return user_profile(user)


@route("GET", "/users/{user_id}")
def get_user(call: Call) -> Any:
    call.who.require_grafana_admin("users:read")
    return user_profile(_user_or_404(call))


@route("PUT", "/users/{user_id}")
def update_user(call: Call) -> Any:
    call.who.require_grafana_admin("users:write")
    user = _user_or_404(call)
    body = call.body()
    login = str(body.get("login") or user.login)
    email = str(body.get("email") or user.email)
    if call.state.login_taken(login, email, except_id=user.id):
        raise error(409, "Update would result in user login conflict")
    user.login, user.email = login, email
    user.name = str(body.get("name") if body.get("name") is not None else user.name)
    user.theme = str(body.get("theme") or user.theme)
    user.updated = now()
    return success("User updated")


@route("GET", "/users/{user_id}/orgs")
def get_user_orgs(call: Call) -> Any:
    call.who.require_grafana_admin("users:read")
    user = _user_or_404(call)
    return [
        {"orgId": org.id, "name": org.name, "role": role.value}
        for org, role in call.state.orgs_of(user.id)
    ]


@route("GET", "/users/{user_id}/teams")
def get_user_teams(call: Call) -> Any:
    call.who.require_grafana_admin("users:read")
    user = _user_or_404(call)
    return [team_dto(t) for t in call.state.teams.values() if user.id in t.members]


@route("GET", "/user")
def get_signed_in_user(call: Call) -> Any:
    return user_profile(call.who.user)


@route("GET", "/user/orgs")
def get_signed_in_user_orgs(call: Call) -> Any:
    return [
        {"orgId": org.id, "name": org.name, "role": role.value}
        for org, role in call.state.orgs_of(call.who.user.id)
    ]


@route("POST", "/user/using/{org_id}")
def switch_user_org(call: Call) -> Any:
    who = call.who
    org_id = call.id_param("org_id", "id is invalid")
    if call.state.role_of(who.user.id, org_id) is None:
        raise error(401, "Not a valid organization")
    who.user.current_org_id = org_id
    return success("Active organization changed")


@route("GET", "/user/teams")
def get_signed_in_user_teams(call: Call) -> Any:
    who = call.who
    return [team_dto(t) for t in call.state.teams_of_user(who.org_id, who.user.id)]


# ================================================================ teams
def _team_id(call: Call) -> int:
    return call.id_param("team_id", "teamId is invalid")


def _is_team_admin(call: Call, team: Team | None) -> bool:
    who = call.who
    if who.role is Role.ADMIN:
        return True
    return team is not None and team.members.get(who.user.id) == TEAM_ADMIN


def _readable_team(call: Call) -> Team:
    """A team the caller may read (org admins: any; others: their own teams)."""
    who = call.who
    team_id = _team_id(call)
    team = call.state.team(who.org_id, team_id)
    if who.role is not Role.ADMIN and (team is None or who.user.id not in team.members):
        raise access_denied("teams:read")
    if team is None:
        raise not_found("Team not found")
    return team


def _team_for_admin(call: Call, action: str) -> tuple[int, Team | None]:
    team_id = _team_id(call)
    team = call.state.team(call.org_id, team_id)
    if not _is_team_admin(call, team):
        raise access_denied(action)
    return team_id, team


@route("GET", "/teams/search")
def search_teams(call: Call) -> Any:
    who = call.who
    teams = sorted(call.state.teams_in(who.org_id), key=lambda t: t.name.lower())
    if who.role is not Role.ADMIN:
        teams = [t for t in teams if who.user.id in t.members]
        if not teams:
            raise access_denied("teams:read")
    name, query = call.arg("name"), (call.arg("query") or "").lower()
    teams = [t for t in teams if (not name or t.name == name) and query in t.name.lower()]
    perpage = call.int_arg("perpage", 1000)
    perpage = perpage if perpage > 0 else 1000
    page = max(call.int_arg("page", 1), 1)
    return {
        "totalCount": len(teams),
        "teams": [team_dto(t) for t in teams[(page - 1) * perpage : page * perpage]],
        "page": page,
        "perPage": perpage,
    }


@route("POST", "/teams")
def create_team(call: Call) -> Any:
    who = call.who
    who.require_role(Role.ADMIN, "teams:create")
    body = call.body()
    name = str(body.get("name") or "")
    if call.state.team_by_name(who.org_id, name) is not None:
        raise error(409, "Team name taken")
    team = Team(
        id=call.state.next_id("team"),
        uid=short_uid(),
        org_id=who.org_id,
        name=name,
        email=str(body.get("email") or ""),
    )
    # Grafana adds a creating *user* (not a service account) as team admin member.
    if not who.user.is_service_account:
        team.members[who.user.id] = TEAM_ADMIN
    call.state.teams[team.id] = team
    return {"teamId": team.id, "uid": team.uid, "message": "Team created"}


@route("GET", "/teams/{team_id}")
def get_team(call: Call) -> Any:
    return team_dto(_readable_team(call))


@route("PUT", "/teams/{team_id}")
def update_team(call: Call) -> Any:
    _, team = _team_for_admin(call, "teams:write")
    if team is None:
        raise not_found("Team not found")
    body = call.body()
    name = str(body.get("name") or team.name)
    other = call.state.team_by_name(team.org_id, name)
    if other is not None and other.id != team.id:
        raise error(409, "Team name taken")
    team.name = name
    team.email = str(body.get("email") if body.get("email") is not None else team.email)
    return success("Team updated")


@route("DELETE", "/teams/{team_id}")
def delete_team(call: Call) -> Any:
    _, team = _team_for_admin(call, "teams:delete")
    if team is None:
        raise not_found("Failed to delete Team. ID not found")
    call.state.delete_team(team)
    return success("Team deleted")


@route("GET", "/teams/{team_id}/members")
def get_team_members(call: Call) -> Any:
    _, team = _team_for_admin(call, "teams.permissions:read")
    if team is None:
        return []  # Grafana lists the members of an unknown team as none
    return [
        team_member(team, call.state.users[user_id], permission)
        for user_id, permission in sorted(team.members.items())
        if user_id in call.state.users
    ]


@route("POST", "/teams/{team_id}/members")
def add_team_member(call: Call) -> Any:
    _, team = _team_for_admin(call, "teams.permissions:write")
    user_id = int(call.body().get("userId") or 0)
    if team is not None and user_id in team.members:
        raise error(400, "User is already added to this team")
    # Grafana's permission service refuses unknown teams and users outside the org.
    if team is None or call.state.role_of(user_id, team.org_id) is None:
        raise error(500, "Failed to add Member to Team")
    team.members[user_id] = TEAM_MEMBER
    return success("Member added to Team")


@route("DELETE", "/teams/{team_id}/members/{user_id}")
def remove_team_member(call: Call) -> Any:
    _, team = _team_for_admin(call, "teams.permissions:write")
    user_id = call.id_param("user_id", "userId is invalid")
    if team is None:
        raise not_found("Team not found")
    if user_id not in team.members:
        raise not_found("Team member not found")
    del team.members[user_id]
    return success("Team Member removed")


# ============================================================== folders
def _folder_not_found() -> ApiError:
    return not_found("folder not found", status="not-found")


def _check_uid(uid: str) -> None:
    if len(uid) > MAX_UID_LENGTH:
        raise error(400, "uid too long, max 40 characters")
    if not _UID_CHARS.match(uid):
        raise error(400, "uid contains illegal characters")


def _folder(call: Call, uid: str, need: Permission, action: str) -> Folder:
    who = call.who
    who.require_member(action)  # no role in the org: no permission at all, found or not
    folder = call.state.folder(who.org_id, uid)
    if folder is None:
        raise _folder_not_found()
    if call.state.folder_permission(folder, who.user.id, who.role) < need:
        raise access_denied(action)
    return folder


def _title_taken(state: State, org_id: int, parent: str | None, title: str, skip: int) -> bool:
    return any(
        f.parent_uid == parent and f.title.lower() == title.lower() and f.id != skip
        for f in state.folders_in(org_id)
    )


@route("GET", "/folders")
def get_folders(call: Call) -> Any:
    who = call.who
    who.require_member("folders:read")
    need = Permission.EDIT if call.arg("permission") == "Edit" else Permission.VIEW
    parent = call.arg("parentUid") or None
    folders = sorted(
        (
            f
            for f in call.state.folders_in(who.org_id)
            if f.parent_uid == parent
            and call.state.folder_permission(f, who.user.id, who.role) >= need
        ),
        key=lambda f: f.title.lower(),
    )
    limit = max(call.int_arg("limit", 1000), 1)
    page = max(call.int_arg("page", 1), 1)
    hits = []
    for folder in folders[(page - 1) * limit : page * limit]:
        hit: dict[str, Any] = {"id": folder.id, "uid": folder.uid, "title": folder.title}
        if folder.parent_uid:
            hit["parentUid"] = folder.parent_uid
        hits.append(hit)
    return hits


@route("POST", "/folders")
def create_folder(call: Call) -> Any:
    who = call.who
    who.require_role(Role.EDITOR, "folders:create")
    body = call.body()
    title = str(body.get("title") or "").strip()
    if not title:
        raise error(400, "folder title cannot be empty")
    uid = str(body.get("uid") or "")
    _check_uid(uid)
    parent = str(body.get("parentUid") or "") or None
    if parent is not None:
        parent_folder = call.state.folder(who.org_id, parent)
        if parent_folder is None:
            raise error(400, "folder not found")
        if call.state.folder_permission(parent_folder, who.user.id, who.role) < Permission.EDIT:
            raise access_denied("folders:create")
    if uid and call.state.uid_in_use(who.org_id, uid):
        raise error(409, "a folder/dashboard with the same uid already exists")
    if _title_taken(call.state, who.org_id, parent, title, skip=0):
        raise error(
            409, "a folder or dashboard in the general folder with the same name already exists"
        )
    folder = Folder(
        id=call.state.next_id("dashboard"),
        uid=uid or short_uid(),
        org_id=who.org_id,
        title=title,
        description=str(body.get("description") or ""),
        parent_uid=parent,
        created_by=who.login,
        updated_by=who.login,
    )
    # Grafana's default folder permissions: the creator admin, plus Editor/Viewer at root level.
    folder.acl.append(AclItem(Permission.ADMIN, user_id=who.user.id))
    if parent is None:
        folder.acl.append(AclItem(Permission.EDIT, role=Role.EDITOR))
        folder.acl.append(AclItem(Permission.VIEW, role=Role.VIEWER))
    call.state.folders[folder.id] = folder
    return folder_dto(call.state, folder, who)


@route("GET", "/folders/{folder_uid}")
def get_folder(call: Call) -> Any:
    folder = _folder(call, call.params["folder_uid"], Permission.VIEW, "folders:read")
    return folder_dto(call.state, folder, call.who)


@route("PUT", "/folders/{folder_uid}")
def update_folder(call: Call) -> Any:
    folder = _folder(call, call.params["folder_uid"], Permission.EDIT, "folders:write")
    body = call.body()
    if not body.get("overwrite") and int(body.get("version") or 0) != folder.version:
        raise ApiError(
            412, "the folder has been changed by someone else", status="version-mismatch"
        )
    title = str(body.get("title") or folder.title).strip()
    if _title_taken(call.state, folder.org_id, folder.parent_uid, title, skip=folder.id):
        raise error(
            409, "a folder or dashboard in the general folder with the same name already exists"
        )
    folder.title = title
    if body.get("description") is not None:
        folder.description = str(body.get("description"))
    folder.version += 1
    folder.updated, folder.updated_by = now(), call.who.login
    return folder_dto(call.state, folder, call.who)


@route("DELETE", "/folders/{folder_uid}")
def delete_folder(call: Call) -> Any:
    folder = _folder(call, call.params["folder_uid"], Permission.EDIT, "folders:delete")
    call.state.delete_folder(folder)
    return {"id": folder.id, "title": folder.title, "message": f"Folder {folder.title} deleted"}


@route("GET", "/folders/{folder_uid}/permissions")
def get_folder_permissions(call: Call) -> Any:
    folder = _folder(call, call.params["folder_uid"], Permission.ADMIN, "folders.permissions:read")
    return [acl_dto(call.state, folder, item) for item in folder.acl]


@route("POST", "/folders/{folder_uid}/permissions")
def set_folder_permissions(call: Call) -> Any:
    items = call.body().get("items") or []
    parsed: list[AclItem] = []
    for item in (GoFields(i) for i in items if isinstance(i, dict)):
        user_id = int(item.get("userId") or 0)
        team_id = int(item.get("teamId") or 0)
        role = item.get("role")
        # Grafana's own (swapped) messages, pkg/services/dashboards/dashboardaccess.
        if user_id > 0 and team_id > 0:
            raise error(400, "team and user permissions cannot have an associated role")
        if (user_id > 0 or team_id > 0) and role is not None:
            raise error(400, "permissions cannot have both a user and team")
        permission = int(item.get("permission") or 0)
        if permission not in (1, 2, 4):
            continue  # no permission name for it: Grafana grants nothing
        if user_id > 0:
            parsed.append(AclItem(permission, user_id=user_id))
        elif team_id > 0:
            parsed.append(AclItem(permission, team_id=team_id))
        elif role in (Role.VIEWER, Role.EDITOR):
            parsed.append(AclItem(permission, role=Role(role)))
    folder = _folder(call, call.params["folder_uid"], Permission.ADMIN, "folders.permissions:write")
    for acl in parsed:
        unknown_user = (
            acl.user_id is not None and call.state.role_of(acl.user_id, folder.org_id) is None
        )
        unknown_team = (
            acl.team_id is not None and call.state.team(folder.org_id, acl.team_id) is None
        )
        if unknown_user or unknown_team:
            raise error(500, "Failed to create permission")
    folder.acl = parsed  # the whole list is replaced
    return success("Folder permissions updated")


# =========================================================== dashboards
def _dashboard_not_found() -> ApiError:
    return not_found("Dashboard not found", status="not-found")


def _dashboard(call: Call, need: Permission, action: str) -> Dashboard:
    who = call.who
    who.require_member(action)  # no role in the org: no permission at all, found or not
    dash = call.state.dashboard(who.org_id, call.params["uid"])
    if dash is None:
        raise _dashboard_not_found()
    if call.state.dashboard_permission(dash, who.user.id, who.role) < need:
        raise access_denied(action)
    return dash


def _target_folder(call: Call, body: dict[str, Any]) -> Folder | None:
    org_id = call.org_id
    folder_uid = str(body.get("folderUid") or "")
    folder_id = int(body.get("folderId") or 0)
    if not folder_uid and not folder_id:
        return None
    folder = (
        call.state.folder(org_id, folder_uid)
        if folder_uid
        else call.state.folder_by_id(org_id, folder_id)
    )
    if folder is None:
        raise error(400, "folder not found")
    return folder


@route("POST", "/dashboards/db")
def save_dashboard(call: Call) -> Any:
    who = call.who
    state = call.state
    body = call.body()
    model = body.get("dashboard")
    if not isinstance(model, dict):
        raise error(400, "bad request data")
    title = str(model.get("title") or "").strip()
    if not title:
        raise ApiError(400, "Dashboard title cannot be empty", status="empty-name")
    message = str(body.get("message") or "")
    if len(message) > 500:
        raise error(400, "message too long, max 500 characters")
    uid = str(model.get("uid") or "")
    _check_uid(uid)
    folder = _target_folder(call, body)
    folder_uid = folder.uid if folder is not None else None
    overwrite = bool(body.get("overwrite"))

    if folder is not None:
        target_permission = state.folder_permission(folder, who.user.id, who.role)
    else:
        target_permission = GENERAL_FOLDER_PERMISSION[who.role] if who.role else 0
    if target_permission < Permission.EDIT:
        raise error(403, "Access denied to save dashboard")

    existing = state.dashboard(who.org_id, uid) if uid else None
    if existing is None and uid and state.folder(who.org_id, uid) is not None:
        raise error(400, "Dashboard cannot be changed to a folder")
    if existing is not None:
        if state.dashboard_permission(existing, who.user.id, who.role) < Permission.EDIT:
            raise error(403, "Access denied to save dashboard")
        if existing.folder_uid != folder_uid and not overwrite:
            raise error(400, "A dashboard with the same uid already exists")
        version = model.get("version")
        if not overwrite and (version if isinstance(version, int) else 0) != existing.version:
            raise ApiError(
                412, "The dashboard has been changed by someone else", status="version-mismatch"
            )

    clash = next(
        (
            d
            for d in state.dashboards_in(who.org_id)
            if d.folder_uid == folder_uid and d.slug == slugify(title) and d is not existing
        ),
        None,
    )
    if clash is not None:
        if not overwrite:
            raise ApiError(
                412,
                "A dashboard with the same name in the folder already exists",
                status="name-exists",
            )
        del state.dashboards[clash.id]  # overwrite: the posted dashboard replaces it

    if existing is None:
        existing = Dashboard(
            id=state.next_id("dashboard"),
            uid=uid or short_uid(),
            org_id=who.org_id,
            folder_uid=folder_uid,
            title=title,
            version=0,
            model={},
            created_by=who.login,
        )
        state.dashboards[existing.id] = existing
    existing.version += 1
    existing.title, existing.folder_uid = title, folder_uid
    existing.model = {
        **model,
        "id": existing.id,
        "uid": existing.uid,
        "title": title,
        "version": existing.version,
    }
    existing.updated, existing.updated_by = now(), who.login
    if message:
        existing.messages.append(message)
    return {
        "id": existing.id,
        "uid": existing.uid,
        "title": existing.title,
        "slug": existing.slug,
        "url": existing.url,
        "status": "success",
        "version": existing.version,
        "folderUid": folder_uid or "",
    }


@route("GET", "/dashboards/uid/{uid}")
def get_dashboard(call: Call) -> Any:
    who = call.who
    dash = _dashboard(call, Permission.VIEW, "dashboards:read")
    permission = call.state.dashboard_permission(dash, who.user.id, who.role)
    folder = call.state.folder(dash.org_id, dash.folder_uid) if dash.folder_uid else None
    meta: dict[str, Any] = {
        "type": "db",
        "canSave": permission >= Permission.EDIT,
        "canEdit": permission >= Permission.EDIT,
        "canAdmin": permission >= Permission.ADMIN,
        "canStar": True,
        "canDelete": permission >= Permission.EDIT,
        "slug": dash.slug,
        "url": dash.url,
        "expires": "0001-01-01T00:00:00Z",
        "created": dash.created,
        "updated": dash.updated,
        "updatedBy": dash.updated_by,
        "createdBy": dash.created_by,
        "version": dash.version,
        "hasAcl": False,
        "isFolder": False,
        "folderId": folder.id if folder else 0,
        "folderUid": folder.uid if folder else "",
        "folderTitle": folder.title if folder else "General",
        "folderUrl": folder.url if folder else "",
        "provisioned": False,
        "provisionedExternalId": "",
    }
    return {"dashboard": dash.model, "meta": meta}


@route("DELETE", "/dashboards/uid/{uid}")
def delete_dashboard(call: Call) -> Any:
    dash = _dashboard(call, Permission.EDIT, "dashboards:delete")
    del call.state.dashboards[dash.id]
    return {"title": dash.title, "message": f"Dashboard {dash.title} deleted", "id": dash.id}


@route("GET", "/search")
def search(call: Call) -> Any:
    who = call.who
    state = call.state
    if who.org_id == NO_ORG or call.arg("starred") == "true":
        return []
    query = (call.arg("query") or "").lower()
    kind = call.arg("type")
    folder_filter = {None if u in ("", "general") else u for u in call.list_arg("folderUIDs")}
    for raw_id in call.list_arg("folderIds"):
        folder = state.folder_by_id(who.org_id, int(raw_id)) if raw_id.isdigit() else None
        folder_filter.add(folder.uid if folder else None)
    uid_filter = set(call.list_arg("dashboardUIDs"))
    tags = set(call.request.args.getlist("tag"))
    hits: list[dict[str, Any]] = []
    if kind in (None, "dash-folder") and not uid_filter and not tags:
        hits += [
            folder_hit(f)
            for f in state.folders_in(who.org_id)
            if query in f.title.lower()
            and (not folder_filter or f.parent_uid in folder_filter)
            and state.folder_permission(f, who.user.id, who.role) >= Permission.VIEW
        ]
    if kind in (None, "dash-db"):
        hits += [
            dashboard_hit(state, d)
            for d in state.dashboards_in(who.org_id)
            if query in d.title.lower()
            and (not folder_filter or d.folder_uid in folder_filter)
            and (not uid_filter or d.uid in uid_filter)
            and tags <= set(d.tags)
            and state.dashboard_permission(d, who.user.id, who.role) >= Permission.VIEW
        ]
    hits.sort(key=lambda h: str(h["title"]).lower(), reverse=call.arg("sort") == "alpha-desc")
    limit = min(max(call.int_arg("limit", 1000), 1), 5000)
    page = max(call.int_arg("page", 1), 1)
    return hits[(page - 1) * limit : page * limit]


# ========================================================== datasources
def _ds_not_found() -> ApiError:
    return not_found("Data source not found")


def _datasource(call: Call, action: str) -> Datasource:
    """The datasource named by the path (``uid``, ``name`` or numeric ``id``), admins only."""
    who = call.who
    who.require_role(Role.ADMIN, action)
    state = call.state
    if "uid" in call.params:
        ds = state.datasource_by_uid(who.org_id, call.params["uid"])
    elif "name" in call.params:
        ds = state.datasource_by_name(who.org_id, call.params["name"])
    else:
        ds = state.datasource_by_id(who.org_id, call.id_param("id", "id is invalid"))
    if ds is None:
        raise _ds_not_found()
    return ds


def _conflicts(state: State, org_id: int, name: str, uid: str, skip: int) -> None:
    if any(ds.name == name and ds.id != skip for ds in state.datasources_in(org_id)):
        raise error(409, "data source with the same name already exists")
    if uid and any(ds.uid == uid and ds.id != skip for ds in state.datasources_in(org_id)):
        raise error(409, "data source with the same uid already exists")


def _make_default(state: State, ds: Datasource) -> None:
    if ds.is_default:
        for other in state.datasources_in(ds.org_id):
            if other.id != ds.id:
                other.is_default = False


@route("GET", "/datasources")
def list_datasources(call: Call) -> Any:
    call.who.require_role(Role.ADMIN, "datasources:read")
    return [datasource_list_item(ds) for ds in call.state.datasources_in(call.org_id)]


@route("POST", "/datasources")
def add_datasource(call: Call) -> Any:
    who = call.who
    who.require_role(Role.ADMIN, "datasources:create")
    body = call.body()
    name, uid = str(body.get("name") or ""), str(body.get("uid") or "")
    _conflicts(call.state, who.org_id, name, uid, skip=0)
    json_data = body.get("jsonData")
    ds = Datasource(
        id=call.state.next_id("datasource"),
        uid=uid or short_uid(),
        org_id=who.org_id,
        name=name,
        type=str(body.get("type") or ""),
        access=str(body.get("access") or "proxy"),
        url=str(body.get("url") or ""),
        user=str(body.get("user") or ""),
        database=str(body.get("database") or ""),
        basic_auth=bool(body.get("basicAuth")),
        basic_auth_user=str(body.get("basicAuthUser") or ""),
        with_credentials=bool(body.get("withCredentials")),
        is_default=bool(body.get("isDefault")),
        json_data=dict(json_data) if isinstance(json_data, dict) else {},
        secure_json_data={k: str(v) for k, v in (body.get("secureJsonData") or {}).items()},
    )
    call.state.datasources[ds.id] = ds
    _make_default(call.state, ds)
    return success("Datasource added", id=ds.id, name=ds.name, datasource=datasource_dto(ds))


def _update_datasource(call: Call) -> Any:
    ds = _datasource(call, "datasources:write")
    if ds.read_only:
        raise error(403, "Cannot update read-only data source")
    body = call.body()
    version = int(body.get("version") or 0)
    if version and ds.version > version:
        raise error(
            409, "Datasource has already been updated by someone else. Please reload and try again"
        )
    name = str(body.get("name") or ds.name)
    uid = str(body.get("uid") or ds.uid)
    _conflicts(call.state, ds.org_id, name, uid, skip=ds.id)
    # Grafana's SQL update skips empty strings for name/type/url/access (xorm) but always
    # writes the user, database and boolean columns; secure fields are merged, not replaced.
    ds.name, ds.uid = name, uid
    ds.type = str(body.get("type") or ds.type)
    ds.access = str(body.get("access") or ds.access)
    ds.url = str(body.get("url") or ds.url)
    ds.user = str(body.get("user") or "")
    ds.database = str(body.get("database") or "")
    ds.basic_auth_user = str(body.get("basicAuthUser") or "")
    ds.basic_auth = bool(body.get("basicAuth"))
    ds.with_credentials = bool(body.get("withCredentials"))
    ds.is_default = bool(body.get("isDefault"))
    if isinstance(body.get("jsonData"), dict):
        ds.json_data = dict(body.get("jsonData"))
    ds.secure_json_data.update({k: str(v) for k, v in (body.get("secureJsonData") or {}).items()})
    ds.version += 1
    _make_default(call.state, ds)
    return success("Datasource updated", id=ds.id, name=ds.name, datasource=datasource_dto(ds))


@route("GET", "/datasources/uid/{uid}")
def get_datasource_by_uid(call: Call) -> Any:
    return datasource_dto(_datasource(call, "datasources:read"))


@route("GET", "/datasources/name/{name}")
def get_datasource_by_name(call: Call) -> Any:
    return datasource_dto(_datasource(call, "datasources:read"))


@route("GET", "/datasources/id/{name}")
def get_datasource_id_by_name(call: Call) -> Any:
    return {"id": _datasource(call, "datasources:read").id}


@route("GET", "/datasources/{id}")
def get_datasource_by_id(call: Call) -> Any:
    return datasource_dto(_datasource(call, "datasources:read"))


@route("PUT", "/datasources/uid/{uid}")
def update_datasource_by_uid(call: Call) -> Any:
    return _update_datasource(call)


@route("PUT", "/datasources/{id}")
def update_datasource_by_id(call: Call) -> Any:
    return _update_datasource(call)


def _delete_datasource(call: Call) -> Datasource:
    ds = _datasource(call, "datasources:delete")
    if ds.read_only:
        raise error(403, "Cannot delete read-only data source")
    del call.state.datasources[ds.id]
    return ds


@route("DELETE", "/datasources/uid/{uid}")
def delete_datasource_by_uid(call: Call) -> Any:
    _delete_datasource(call)
    return success("Data source deleted")


@route("DELETE", "/datasources/name/{name}")
def delete_datasource_by_name(call: Call) -> Any:
    return success("Data source deleted", id=_delete_datasource(call).id)


@route("DELETE", "/datasources/{id}")
def delete_datasource_by_id(call: Call) -> Any:
    _delete_datasource(call)
    return success("Data source deleted")


_EXPRESSION_UIDS = frozenset({"__expr__", "-100", "grafana", "-- Grafana --"})


@route("POST", "/ds/query")
def query_datasources(call: Call) -> Any:
    """OSS rule: any member of the org may query any datasource of that org, nobody else."""
    who = call.who
    who.require_role(Role.VIEWER, "datasources:query")  # every basic role but None
    body = call.body()
    results: dict[str, Any] = {}
    for query in body.get("queries") or []:
        ref = str(query.get("refId") or "A")
        source = query.get("datasource")
        uid = source.get("uid") if isinstance(source, dict) else None
        ds_id = query.get("datasourceId")
        if uid in _EXPRESSION_UIDS:
            results[ref] = {"status": 200, "frames": []}
            continue
        if not uid and not ds_id:
            raise error(400, f"query missing datasource info: {ref}")
        ds = (
            call.state.datasource_by_uid(who.org_id, str(uid))
            if uid
            else call.state.datasource_by_id(who.org_id, int(ds_id))
        )
        if ds is None:
            raise _ds_not_found()
        call.state.queries.append(
            QueryRecord(
                org_id=who.org_id,
                login=who.login,
                datasource_uid=ds.uid,
                query=dict(query),
                time_from=str(body.get("from")),
                time_to=str(body.get("to")),
            )
        )
        results[ref] = {"status": 200, "frames": []}
    return {"results": results}
