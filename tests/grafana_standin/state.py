"""In-memory model of the Grafana server the stand-in pretends to be.

Everything a test may want to inspect lives here: organizations, users and
their org roles, teams, folders with their permission lists, datasources
(secure JSON data included, which the HTTP API never returns), dashboards,
service-account tokens and the queries sent to ``POST /api/ds/query``.

The HTTP layer (``routes.py``) mutates this model while holding ``State.lock``;
tests read it directly through the fixture's ``state`` attribute.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

MAIN_ORG_ID = 1
MAIN_ORG_NAME = "Main Org."


class Role(StrEnum):
    """Organization role of a user (Grafana's basic roles; ``None``: member without rights)."""

    NONE = "None"
    VIEWER = "Viewer"
    EDITOR = "Editor"
    ADMIN = "Admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_ROLE_RANK = {Role.NONE: 0, Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}
# Permission a basic role has on dashboards of the General (root) folder.
GENERAL_FOLDER_PERMISSION = {Role.NONE: 0, Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 4}


class Permission(IntEnum):
    """Folder/dashboard permission levels, as integers on the wire."""

    VIEW = 1
    EDIT = 2
    ADMIN = 4


TEAM_MEMBER = 0
TEAM_ADMIN = 4


def now() -> str:
    """RFC 3339 timestamp, the format Grafana uses for created/updated fields."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_uid() -> str:
    """A random uid shaped like Grafana's generated ones (14 lowercase alphanumerics)."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(alphabet) for _ in range(13)
    )


_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def slugify(title: str) -> str:
    return _SLUG_DROP.sub("-", title.lower()).strip("-")


def avatar_url(email: str) -> str:
    digest = hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()
    return f"/avatar/{digest}"


@dataclass
class Org:
    id: int
    name: str
    created: str = field(default_factory=now)


@dataclass
class User:
    id: int
    uid: str
    login: str
    email: str
    name: str
    password: str
    current_org_id: int
    is_grafana_admin: bool = False
    is_service_account: bool = False
    theme: str = ""
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)


@dataclass
class Team:
    id: int
    uid: str
    org_id: int
    name: str
    email: str
    # user id -> team permission (0 member, 4 admin)
    members: dict[int, int] = field(default_factory=dict)
    created: str = field(default_factory=now)


@dataclass
class AclItem:
    """One entry of a folder's permission list: exactly one of user, team or role."""

    permission: int
    user_id: int | None = None
    team_id: int | None = None
    role: Role | None = None
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)


@dataclass
class Folder:
    id: int
    uid: str
    org_id: int
    title: str
    description: str = ""
    parent_uid: str | None = None
    version: int = 1
    acl: list[AclItem] = field(default_factory=list)
    created_by: str = ""
    updated_by: str = ""
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)

    @property
    def slug(self) -> str:
        return slugify(self.title)

    @property
    def url(self) -> str:
        return f"/dashboards/f/{self.uid}/{self.slug}"


@dataclass
class Dashboard:
    id: int
    uid: str
    org_id: int
    folder_uid: str | None  # None: the General (root) folder
    title: str
    version: int
    model: dict[str, Any]
    messages: list[str] = field(default_factory=list)
    created_by: str = ""
    updated_by: str = ""
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)

    @property
    def slug(self) -> str:
        return slugify(self.title)

    @property
    def url(self) -> str:
        return f"/d/{self.uid}/{self.slug}"

    @property
    def tags(self) -> list[str]:
        tags = self.model.get("tags")
        return [str(tag) for tag in tags] if isinstance(tags, list) else []


@dataclass
class Datasource:
    id: int
    uid: str
    org_id: int
    name: str
    type: str
    access: str = "proxy"
    url: str = ""
    user: str = ""
    database: str = ""
    basic_auth: bool = False
    basic_auth_user: str = ""
    with_credentials: bool = False
    is_default: bool = False
    json_data: dict[str, Any] = field(default_factory=dict)
    # Write-only over HTTP: kept here so tests can check what was stored.
    secure_json_data: dict[str, str] = field(default_factory=dict)
    version: int = 1
    read_only: bool = False


@dataclass
class Token:
    """A service-account token: bound to one org and carrying the account's role there."""

    id: int
    key: str
    name: str
    org_id: int
    service_account_id: int
    revoked: bool = False


@dataclass(frozen=True)
class QueryRecord:
    """One query received on ``POST /api/ds/query`` (the stand-in never runs it)."""

    org_id: int
    login: str
    datasource_uid: str
    query: dict[str, Any]
    time_from: str
    time_to: str


class State:
    """All server-side data, guarded by ``lock`` while the HTTP layer works on it."""

    def __init__(self, admin_login: str, admin_password: str) -> None:
        self.lock = threading.RLock()
        self._ids: dict[str, Iterator[int]] = {}
        self.orgs: dict[int, Org] = {}
        self.users: dict[int, User] = {}
        self.memberships: dict[tuple[int, int], Role] = {}  # (org id, user id) -> role
        self.teams: dict[int, Team] = {}
        self.folders: dict[int, Folder] = {}
        self.dashboards: dict[int, Dashboard] = {}
        self.datasources: dict[int, Datasource] = {}
        self.tokens: dict[str, Token] = {}
        self.queries: list[QueryRecord] = []

        main = self.add_org(MAIN_ORG_NAME)
        admin = self.add_user(admin_login, admin_password, org_id=main.id, role=Role.ADMIN)
        admin.is_grafana_admin = True
        admin.email = "admin@localhost"

    # ----------------------------------------------------------------- ids
    def next_id(self, kind: str) -> int:
        counter = self._ids.setdefault(kind, itertools.count(1))
        return next(counter)

    # ---------------------------------------------------------------- orgs
    def add_org(self, name: str) -> Org:
        org = Org(id=self.next_id("org"), name=name)
        self.orgs[org.id] = org
        return org

    def org_by_name(self, name: str) -> Org | None:
        return next((org for org in self.orgs.values() if org.name == name), None)

    def delete_org(self, org_id: int) -> None:
        self.orgs.pop(org_id, None)
        for key in [key for key in self.memberships if key[0] == org_id]:
            del self.memberships[key]
        for store in (self.teams, self.folders, self.dashboards, self.datasources):
            for item_id in [i for i, item in store.items() if item.org_id == org_id]:
                del store[item_id]
        for token_key in [k for k, t in self.tokens.items() if t.org_id == org_id]:
            del self.tokens[token_key]
        for user in self.users.values():
            if user.current_org_id == org_id:
                user.current_org_id = self._fallback_org(user.id)

    # --------------------------------------------------------------- users
    def add_user(
        self,
        login: str,
        password: str,
        *,
        org_id: int = MAIN_ORG_ID,
        role: Role = Role.VIEWER,
        email: str = "",
        name: str = "",
        service_account: bool = False,
    ) -> User:
        """Create a user and make it a member of ``org_id`` (Grafana's auto-assign)."""
        user = User(
            id=self.next_id("user"),
            uid=short_uid(),
            login=login,
            email=email or login,
            name=name,
            password=password,
            current_org_id=org_id,
            is_service_account=service_account,
        )
        self.users[user.id] = user
        self.memberships[(org_id, user.id)] = role
        return user

    def user_by_login(self, login_or_email: str) -> User | None:
        wanted = login_or_email.lower()
        for user in self.users.values():
            if user.is_service_account:
                continue
            if user.login.lower() == wanted or user.email.lower() == wanted:
                return user
        return None

    def login_taken(self, login: str, email: str, *, except_id: int | None = None) -> bool:
        names = {login.lower(), email.lower()} - {""}
        return any(
            user.id != except_id and ({user.login.lower(), user.email.lower()} & names)
            for user in self.users.values()
        )

    def delete_user(self, user_id: int) -> None:
        self.users.pop(user_id, None)
        for key in [key for key in self.memberships if key[1] == user_id]:
            del self.memberships[key]
        for team in self.teams.values():
            team.members.pop(user_id, None)
        for folder in self.folders.values():
            folder.acl = [item for item in folder.acl if item.user_id != user_id]

    def role_of(self, user_id: int, org_id: int) -> Role | None:
        return self.memberships.get((org_id, user_id))

    def orgs_of(self, user_id: int) -> list[tuple[Org, Role]]:
        return [
            (self.orgs[org_id], role)
            for (org_id, member_id), role in sorted(self.memberships.items())
            if member_id == user_id and org_id in self.orgs
        ]

    def org_members(self, org_id: int) -> list[tuple[User, Role]]:
        return [
            (self.users[user_id], role)
            for (member_org, user_id), role in sorted(self.memberships.items())
            if member_org == org_id and user_id in self.users
        ]

    def admins_left(self, org_id: int, *, without: int) -> bool:
        return any(
            role is Role.ADMIN and user.id != without
            for user, role in self.org_members(org_id)
            if not user.is_service_account
        )

    def remove_member(self, org_id: int, user_id: int) -> None:
        self.memberships.pop((org_id, user_id), None)
        for team in self.teams_in(org_id):
            team.members.pop(user_id, None)
        for folder in self.folders_in(org_id):
            folder.acl = [item for item in folder.acl if item.user_id != user_id]
        user = self.users.get(user_id)
        if user is not None and user.current_org_id == org_id:
            user.current_org_id = self._fallback_org(user_id)

    def _fallback_org(self, user_id: int) -> int:
        remaining = self.orgs_of(user_id)
        return remaining[0][0].id if remaining else 0

    # ---------------------------------------------------------------- teams
    def teams_in(self, org_id: int) -> list[Team]:
        return [team for team in self.teams.values() if team.org_id == org_id]

    def team(self, org_id: int, team_id: int) -> Team | None:
        team = self.teams.get(team_id)
        return team if team is not None and team.org_id == org_id else None

    def team_by_name(self, org_id: int, name: str) -> Team | None:
        return next((t for t in self.teams_in(org_id) if t.name == name), None)

    def teams_of_user(self, org_id: int, user_id: int) -> list[Team]:
        return [team for team in self.teams_in(org_id) if user_id in team.members]

    def delete_team(self, team: Team) -> None:
        del self.teams[team.id]
        for folder in self.folders.values():
            folder.acl = [item for item in folder.acl if item.team_id != team.id]

    # -------------------------------------------------------------- folders
    def folders_in(self, org_id: int) -> list[Folder]:
        return [folder for folder in self.folders.values() if folder.org_id == org_id]

    def folder(self, org_id: int, uid: str) -> Folder | None:
        return next((f for f in self.folders_in(org_id) if f.uid == uid), None)

    def folder_by_id(self, org_id: int, folder_id: int) -> Folder | None:
        folder = self.folders.get(folder_id)
        return folder if folder is not None and folder.org_id == org_id else None

    def uid_in_use(self, org_id: int, uid: str) -> bool:
        """Folders and dashboards share one uid namespace per org, as in Grafana."""
        return self.folder(org_id, uid) is not None or self.dashboard(org_id, uid) is not None

    def delete_folder(self, folder: Folder) -> None:
        """Delete a folder, its subfolders and every dashboard inside them."""
        for child in [f for f in self.folders_in(folder.org_id) if f.parent_uid == folder.uid]:
            self.delete_folder(child)
        for dash in self.dashboards_in(folder.org_id):
            if dash.folder_uid == folder.uid:
                del self.dashboards[dash.id]
        del self.folders[folder.id]

    def folder_acl(self, org_id: int, uid: str) -> list[AclItem]:
        folder = self.folder(org_id, uid)
        return list(folder.acl) if folder is not None else []

    # ----------------------------------------------------------- dashboards
    def dashboards_in(self, org_id: int) -> list[Dashboard]:
        return [dash for dash in self.dashboards.values() if dash.org_id == org_id]

    def dashboard(self, org_id: int, uid: str) -> Dashboard | None:
        return next((d for d in self.dashboards_in(org_id) if d.uid == uid), None)

    # ---------------------------------------------------------- datasources
    def datasources_in(self, org_id: int) -> list[Datasource]:
        return sorted(
            (ds for ds in self.datasources.values() if ds.org_id == org_id),
            key=lambda ds: ds.name.lower(),
        )

    def datasource_by_uid(self, org_id: int, uid: str) -> Datasource | None:
        return next((ds for ds in self.datasources_in(org_id) if ds.uid == uid), None)

    def datasource_by_name(self, org_id: int, name: str) -> Datasource | None:
        return next((ds for ds in self.datasources_in(org_id) if ds.name == name), None)

    def datasource_by_id(self, org_id: int, ds_id: int) -> Datasource | None:
        ds = self.datasources.get(ds_id)
        return ds if ds is not None and ds.org_id == org_id else None

    # --------------------------------------------------- service accounts
    def add_service_account_token(self, org_id: int, role: Role, name: str) -> str:
        account = self.add_user(
            f"sa-{org_id}-{name}",
            secrets.token_hex(16),
            org_id=org_id,
            role=role,
            name=name,
            service_account=True,
        )
        key = "glsa_" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        self.tokens[key] = Token(
            id=self.next_id("token"),
            key=key,
            name=name,
            org_id=org_id,
            service_account_id=account.id,
        )
        return key

    # ------------------------------------------------------------ access
    def folder_permission(self, folder: Folder, user_id: int, role: Role | None) -> int:
        """Effective permission of a user on a folder (0 = no access).

        Org admins can do everything. Otherwise the highest matching item wins,
        where a ``Viewer`` role item also applies to Editors (basic roles
        inherit upwards) and nested folders inherit their parents' items.
        """
        if role is None:
            return 0
        if role is Role.ADMIN:
            return int(Permission.ADMIN)
        team_ids = {team.id for team in self.teams_of_user(folder.org_id, user_id)}
        best = 0
        for item in folder.acl:
            applies = (
                (item.user_id is not None and item.user_id == user_id)
                or (item.team_id is not None and item.team_id in team_ids)
                or (item.role is not None and role.at_least(item.role))
            )
            if applies:
                best = max(best, item.permission)
        if folder.parent_uid:
            parent = self.folder(folder.org_id, folder.parent_uid)
            if parent is not None:
                best = max(best, self.folder_permission(parent, user_id, role))
        return best

    def dashboard_permission(self, dash: Dashboard, user_id: int, role: Role | None) -> int:
        """Dashboards inherit their folder's permissions; the General folder is role-based."""
        if role is None:
            return 0
        if dash.folder_uid is None:
            return GENERAL_FOLDER_PERMISSION[role]
        folder = self.folder(dash.org_id, dash.folder_uid)
        return self.folder_permission(folder, user_id, role) if folder is not None else 0
