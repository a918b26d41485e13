"""SFTPGo through its REST API: each company's user, and the Event Manager rules that call the hook.

`SftpgoApi` is a thin `httpx` client for the calls PowerView makes (token or API
key, users, event actions, event rules); every transport failure and every
refusal becomes a `SftpgoError` at this boundary. The rest follows the Grafana
side's pattern (`grafana_ensure`): the `plan_*` functions are pure and return a
`Change` with a before/after view (or None), `ensure_*` look up, plan, and apply
unless in check mode, so `changed` is true exactly when something was written
and check mode writes nothing.

The user (`wanted_user`): home `<data_root>/<company>`, status active, and the
least rights that work (`PERMISSIONS`). A generated password is returned once to
be shown once; SFTPGo keeps only its hash and PowerView never stores it.

The Event Manager (`wanted_action`, `wanted_rules`): one command action running
the hook with an environment built from SFTPGo's placeholders under the legacy
`SFTPGO_ACTION*` names `powerview hook` reads (`events.decide_sftpgo`), so one
hook code path serves the legacy hook and the Event Manager; rules for `upload`
and `rename` with status OK, and for `mkdir`.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from powerview.exceptions import ConfigError, SftpgoError
from powerview.layout import check_name
from powerview.provision.grafana_ensure import Change, View
from powerview.settings import Settings
from powerview.upload_file import OUTCOME_DIRS

__all__ = [
    "ACTION_NAME",
    "HOOK_ENV_TEMPLATES",
    "PERMISSIONS",
    "RULE_NAMES",
    "SftpgoApi",
    "SftpgoOutcome",
    "delete_user",
    "ensure_events",
    "ensure_user",
    "hook_environment",
    "plan_resource",
    "plan_user",
    "user_summary",
    "wanted_action",
    "wanted_rules",
    "wanted_user",
]

API_PREFIX = "/api/v2"
Kind = Literal["users", "eventactions", "eventrules"]

# Least rights that work, per virtual path (SFTPGo matches keys with Go's path.Match,
# the most specific folder first). Everywhere: list, upload, overwrite (a corrected
# file sent again under its name), create_dirs (new campaigns and devices) and
# rename_files (clients that upload `x.filepart` and rename it); no delete, no
# download, no folder renames (a renamed campaign would orphan its data).
# parsed/ and error/ of each device: read back what was processed, nothing else.
UPLOAD_RIGHTS = ["list", "upload", "overwrite", "create_dirs", "rename_files"]
READ_BACK_RIGHTS = ["list", "download"]
PERMISSIONS: dict[str, list[str]] = {
    "/": UPLOAD_RIGHTS,
    **{f"/*/*/{outcome}": READ_BACK_RIGHTS for outcome in OUTCOME_DIRS},
}
USER_FIELDS = ("status", "home_dir", "description", "permissions")
ACTIVE = 1

ACTION_NAME = "powerview-hook"
RULE_UPLOADS = "powerview-uploads"
RULE_MKDIR = "powerview-mkdir"
RULE_NAMES = (RULE_UPLOADS, RULE_MKDIR)
COMMAND_ACTION = 2
FS_TRIGGER = 1
STATUS_OK = 1
# The hook only queues a job: well under a second; past 15 s something is stuck and
# the worker's reconciliation scan still finds the file (as for the legacy hook).
HOOK_TIMEOUT_S = 15
# SFTPGo's placeholders (Go templates, docs.sftpgo.com "Placeholders & Templates")
# under the names of the legacy hook's environment, which `powerview hook` reads.
HOOK_ENV_TEMPLATES: dict[str, str] = {
    "SFTPGO_ACTION": "{{.Event}}",
    "SFTPGO_ACTION_USERNAME": "{{.Name}}",
    "SFTPGO_ACTION_PATH": "{{.FsPath}}",
    "SFTPGO_ACTION_TARGET": "{{.FsTargetPath}}",
    "SFTPGO_ACTION_VIRTUAL_PATH": "{{.VirtualPath}}",
    "SFTPGO_ACTION_VIRTUAL_TARGET": "{{.VirtualTargetPath}}",
    "SFTPGO_ACTION_STATUS": "{{.Status}}",
    "SFTPGO_ACTION_FILE_SIZE": "{{.FileSize}}",
    "SFTPGO_ACTION_PROTOCOL": "{{.Protocol}}",
}
HOOK_PATH = "/usr/local/bin:/usr/bin:/bin"


# -- the REST client ----------------------------------------------------------------------


def _error_text(response: httpx.Response) -> str:
    """SFTPGo's `{"error": ..., "message": ...}`, or the start of whatever came back."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)
    return str(body)[:200]


class SftpgoApi:
    """The REST calls PowerView makes, authenticated by an API key or an admin's JWT.

    With a user name and password, a JWT comes from `GET /api/v2/token` (basic
    auth) and is fetched again once when SFTPGo answers 401 (it lives 20 minutes).
    `transport` is the test seam (an `httpx.MockTransport`, say).
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key and not (username and password):
            raise ConfigError(
                "SFTPGO_API_KEY, or SFTPGO_USERNAME and SFTPGO_PASSWORD, must be set "
                "to manage SFTPGo accounts"
            )
        self.url = url.rstrip("/")
        self._basic = (username or "", password or "")
        self._api_key = api_key
        self._token: str | None = None
        self._client = httpx.Client(
            base_url=self.url + API_PREFIX, timeout=timeout_s, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SftpgoApi:
        if not settings.sftpgo_url:
            raise ConfigError("SFTPGO_URL: must be set when POWERVIEW_SFTP_SERVER=sftpgo")
        return cls(
            settings.sftpgo_url,
            username=settings.sftpgo_username,
            password=(
                settings.sftpgo_password.get_secret_value() if settings.sftpgo_password else None
            ),
            api_key=settings.sftpgo_api_key.get_secret_value() if settings.sftpgo_api_key else None,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        """Transport failures as `SftpgoError`, the cause kept."""
        try:
            yield
        except httpx.HTTPError as exc:
            raise SftpgoError(f"SFTPGo at {self.url}: {what}: {exc}") from exc

    def _new_token(self) -> str:
        with self._mapped("GET /token"):
            response = self._client.get("/token", auth=self._basic)
        if response.status_code != 200:
            raise SftpgoError(
                f"SFTPGo at {self.url} refused the admin login ({response.status_code}): "
                f"{_error_text(response)}"
            )
        token = response.json().get("access_token")
        if not isinstance(token, str) or not token:
            raise SftpgoError(f"SFTPGo at {self.url}: /token answered no access_token")
        return token

    def _headers(self, fresh: bool = False) -> dict[str, str]:
        if self._api_key:
            return {"X-SFTPGO-API-KEY": self._api_key}
        if fresh or self._token is None:
            self._token = self._new_token()
        return {"Authorization": f"Bearer {self._token}"}

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, absent_ok: bool = False
    ) -> Any:
        what = f"{method} {path}"
        with self._mapped(what):
            response = self._client.request(method, path, json=body, headers=self._headers())
            if response.status_code == 401 and not self._api_key:  # the JWT expired
                response = self._client.request(
                    method, path, json=body, headers=self._headers(fresh=True)
                )
        if response.status_code == 404 and absent_ok:
            return None
        if response.status_code >= 400:
            raise SftpgoError(
                f"SFTPGo refused {what} ({response.status_code}): {_error_text(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise SftpgoError(f"SFTPGo answered {what} with no JSON") from exc

    @staticmethod
    def _path(kind: Kind, name: str | None = None) -> str:
        return f"/{kind}" if name is None else f"/{kind}/{quote(name, safe='')}"

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object, or None when SFTPGo has none by that name."""
        found = self._call("GET", self._path(kind, name), absent_ok=True)
        return found if isinstance(found, dict) else None

    def list_all(self, kind: Kind) -> list[dict[str, Any]]:
        """Every object of `kind`, 500 at a time (SFTPGo's page limit)."""
        found: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"{self._path(kind)}?offset={len(found)}&limit=500")
            found += page
            if len(page) < 500:
                return found

    def create(self, kind: Kind, body: dict[str, Any]) -> Any:
        return self._call("POST", self._path(kind), body)

    def update(self, kind: Kind, name: str, body: dict[str, Any]) -> Any:
        return self._call("PUT", self._path(kind, name), body)

    def delete(self, kind: Kind, name: str) -> Any:
        return self._call("DELETE", self._path(kind, name))


# -- comparing what is wanted with what SFTPGo holds ---------------------------------------


def _zero(value: Any) -> Any:
    """Go's zero value for a JSON value's type: what an omitted (omitempty) field means."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return 0
    return type(value)() if isinstance(value, str | list | dict) else None


# Maps compared whole: a folder granted rights by hand is drift, not a field we do not set.
WHOLE_FIELDS = frozenset({"permissions"})


def project(existing: Any, wanted: Any) -> Any:
    """`existing` cut down to the fields `wanted` sets, an absent field read as its zero."""
    if isinstance(wanted, dict) and isinstance(existing, dict):
        return {
            key: (
                existing.get(key, _zero(value))
                if key in WHOLE_FIELDS
                else project(existing.get(key, _zero(value)), value)
            )
            for key, value in wanted.items()
        }
    if isinstance(wanted, list) and isinstance(existing, list) and len(wanted) == len(existing):
        return [project(have, want) for have, want in zip(existing, wanted, strict=True)]
    return existing


def plan_resource(resource: str, wanted: View, existing: dict[str, Any] | None) -> Change | None:
    """Create the object, put back the fields that drifted, or nothing."""
    if existing is None:
        return Change(resource, "create", "", None, wanted)
    before = project(existing, wanted)
    if before == wanted:
        return None
    fields = ", ".join(key for key in wanted if before.get(key) != wanted[key])
    return Change(resource, "update", f"put back {fields}", before, wanted)


# -- the company's user --------------------------------------------------------------------


def wanted_user(company: str, data_root: Path, public_keys: list[str] | None = None) -> View:
    """What PowerView sets on the user; `public_keys` None: keys left as they are."""
    user: View = {
        "username": company,
        "status": ACTIVE,
        "home_dir": str(data_root.resolve() / company),
        "description": f"PowerView company {company}",
        "permissions": PERMISSIONS,
    }
    if public_keys is not None:
        user["public_keys"] = public_keys
    return user


def _user_view(user: dict[str, Any], wanted: View) -> View:
    view: View = project(user, {key: wanted[key] for key in wanted if key != "username"})
    view["password"] = "set" if user.get("has_password") else "none"
    return view


def plan_user(
    company: str, wanted: View, existing: dict[str, Any] | None, new_password: bool
) -> Change | None:
    """Create the user, put back what drifted (and set a new password if asked), or nothing."""
    resource = f"SFTPGo user {company}"
    after = {key: value for key, value in wanted.items() if key != "username"}
    if existing is None:
        if not new_password and not wanted.get("public_keys"):
            raise SftpgoError(
                f"SFTPGo user {company} does not exist: give --sftp-key FILE or --sftp-password "
                "to create it (it needs a way to log in)"
            )
        after["password"] = "new, shown once" if new_password else "none"
        return Change(resource, "create", f"home {wanted['home_dir']}", None, after)
    before = _user_view(existing, wanted)
    after["password"] = "new, shown once" if new_password else before["password"]
    if before == after:
        return None
    fields = ", ".join(key for key in after if before.get(key) != after[key])
    return Change(resource, "update", f"put back {fields}", before, after)


@dataclass
class SftpgoOutcome:
    """What the SFTPGo step did (in check mode: would do)."""

    changes: list[Change] = field(default_factory=list)
    password: str | None = None  # generated and applied: show it once, keep it nowhere

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def ensure_user(
    api: SftpgoApi,
    company: str,
    data_root: Path,
    public_keys: list[str] | None = None,
    new_password: bool = False,
    check: bool = False,
) -> SftpgoOutcome:
    """Create or keep `company`'s user as `wanted_user` describes it."""
    check_name("company", company)
    wanted = wanted_user(company, data_root, public_keys)
    existing = api.get("users", company)
    outcome = SftpgoOutcome()
    change = plan_user(company, wanted, existing, new_password)
    if change is None:
        return outcome
    outcome.changes.append(change)
    if check:
        return outcome
    password = secrets.token_urlsafe(18) if new_password else None
    body = dict(wanted)
    if password is not None:
        body["password"] = password
    if existing is None:
        api.create("users", body)
    else:
        # A PUT replaces the user: send back what SFTPGo holds with our fields on top;
        # an omitted password keeps the current one.
        kept = {key: value for key, value in existing.items() if key != "has_password"}
        api.update("users", company, {**kept, **body})
    outcome.password = password
    return outcome


def delete_user(api: SftpgoApi, company: str, check: bool = False) -> SftpgoOutcome:
    """Remove `company`'s user (its login); the files in its home stay."""
    check_name("company", company)
    existing = api.get("users", company)
    outcome = SftpgoOutcome()
    if existing is None:
        return outcome
    before = {"home_dir": existing.get("home_dir"), "status": existing.get("status")}
    outcome.changes.append(
        Change(f"SFTPGo user {company}", "delete", "files in its home kept", before, None)
    )
    if not check:
        api.delete("users", company)
    return outcome


def user_summary(user: dict[str, Any] | None) -> dict[str, Any]:
    """The user's state as `tenant list` shows it."""
    if user is None:
        return {"sftpgo_user": "absent"}
    return {
        "sftpgo_user": "active" if user.get("status") == ACTIVE else "disabled",
        "sftpgo_home": user.get("home_dir", ""),
        "sftpgo_keys": len(user.get("public_keys") or []),
        "sftpgo_password": bool(user.get("has_password")),
    }


# -- the Event Manager -----------------------------------------------------------------------


def hook_environment(settings: Settings) -> dict[str, str]:
    """What the command action passes besides the event: SFTPGo gives it nothing else.

    The same settings as the legacy hook's `command.commands[].env` (deploy/sftpgo.env).
    """
    env = {
        "PATH": HOOK_PATH,
        "POWERVIEW_DATA_ROOT": str(settings.data_root.resolve()),
        "POWERVIEW_STATE_DIR": str(settings.state_dir.resolve()),
    }
    if settings.sftpgo_hook_env_file:
        env["POWERVIEW_ENV_FILE"] = settings.sftpgo_hook_env_file
    if settings.user_company_map:
        env["POWERVIEW_USER_COMPANY_MAP"] = settings.user_company_map
    return env


def wanted_action(settings: Settings) -> View:
    """The command action: the hook, with the event's environment under the legacy names."""
    env = {**hook_environment(settings), **HOOK_ENV_TEMPLATES}
    return {
        "name": ACTION_NAME,
        "description": "PowerView: queue the ingestion or provisioning job of an event",
        "type": COMMAND_ACTION,
        "options": {
            "cmd_config": {
                "cmd": settings.sftpgo_hook,
                "timeout": HOOK_TIMEOUT_S,
                "env_vars": [{"key": key, "value": value} for key, value in sorted(env.items())],
            }
        },
    }


def _rule(name: str, description: str, conditions: View) -> View:
    return {
        "name": name,
        "description": description,
        "status": 1,
        "trigger": FS_TRIGGER,
        "conditions": conditions,
        # In the background (not execute_sync): a failed synchronous upload action
        # makes SFTPGo fail the client's upload, and the hook need not hold it up.
        "actions": [
            {
                "name": ACTION_NAME,
                "order": 1,
                "relation_options": {
                    "is_failure_action": False,
                    "stop_on_failure": False,
                    "execute_sync": False,
                },
            }
        ],
    }


def wanted_rules() -> list[View]:
    """Finished uploads and renames onto a final name (status OK only), and new folders."""
    return [
        _rule(
            RULE_UPLOADS,
            "PowerView: a file arrived (upload, or a rename onto its final name)",
            {"fs_events": ["upload", "rename"], "options": {"event_statuses": [STATUS_OK]}},
        ),
        _rule(RULE_MKDIR, "PowerView: a new campaign folder", {"fs_events": ["mkdir"]}),
    ]


def ensure_events(api: SftpgoApi, settings: Settings, check: bool = False) -> list[Change]:
    """Create or put back the hook's action and its rules (the action first: rules name it)."""
    changes: list[Change] = []
    wanted: list[tuple[Kind, str, View]] = [
        ("eventactions", "event action", wanted_action(settings))
    ]
    wanted += [("eventrules", "event rule", rule) for rule in wanted_rules()]
    for kind, label, body in wanted:
        name = body["name"]
        existing = api.get(kind, name)
        change = plan_resource(f"SFTPGo {label} {name}", body, existing)
        if change is None:
            continue
        changes.append(change)
        if check:
            continue
        if existing is None:
            api.create(kind, body)
        else:
            api.update(kind, name, body)
    return changes
