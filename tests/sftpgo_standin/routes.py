"""One handler per (method, spec path): SFTPGo's behaviour for what PowerView uses.

Validation rules follow SFTPGo's ``internal/dataprovider`` (``validateUser``,
``validateEventAction``, ``validateEventRule``) for the fields PowerView sends;
defaults follow Go's zero values (an omitted ``status`` is 0: disabled).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from .errors import ApiError, conflict, not_found, validation_error
from .state import State, hash_password, now_ms

USERNAME = re.compile(r"^[a-zA-Z0-9\-_.~]+$")  # SFTPGo's default naming rule
TOKEN_LIFETIME_S = 20 * 60  # SFTPGo's admin JWTs live 20 minutes
COMMAND_ACTION = 2
FS_TRIGGER = 1


@dataclass(frozen=True)
class Call:
    state: State
    request: Request
    params: dict[str, str]

    def body(self) -> dict[str, Any]:
        value = self.request.get_json(silent=True)
        if not isinstance(value, dict):
            raise ApiError(400, "invalid JSON body")
        return value


Handler = Callable[[Call], tuple[int, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the spec, relative to /api/v2
    handler: Handler
    public: bool = False  # authenticated by the handler itself (/token: basic auth)


# -- token ----------------------------------------------------------------------------


def get_token(call: Call) -> tuple[int, Any]:
    auth = call.request.authorization
    state = call.state
    if (
        auth is None
        or auth.type != "basic"
        or auth.username != state.admin_user
        or not secrets.compare_digest(auth.password or "", state.admin_password)
    ):
        raise ApiError(401, "invalid credentials", "Unauthorized")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=TOKEN_LIFETIME_S)
    token = "eyJhbGciOiJIUzI1NiJ9." + secrets.token_urlsafe(32) + "." + secrets.token_urlsafe(16)
    state.tokens[token] = expires.timestamp()
    return 200, {"access_token": token, "expires_at": expires.isoformat().replace("+00:00", "Z")}


# -- users ------------------------------------------------------------------------------


def _check_public_keys(keys: list[str]) -> None:
    for index, key in enumerate(keys):
        parts = key.split()
        try:
            ok = len(parts) >= 2 and base64.b64decode(parts[1], validate=True)[4:].startswith(
                parts[0].encode()
            )
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise validation_error(f"could not parse key nr. {index}: {key[:40]!r}")


def _validated_user(body: dict[str, Any]) -> dict[str, Any]:
    user = copy.deepcopy(body)
    name = user.get("username", "")
    if not name:
        raise validation_error("username is mandatory")
    if not USERNAME.fullmatch(name):
        raise validation_error(f"username {name!r} is not valid")
    home = user.get("home_dir", "")
    if not home.startswith("/"):
        raise validation_error(f"home_dir must be an absolute path, actual value: {home!r}")
    permissions = user.get("permissions") or {}
    if "/" not in permissions:
        raise validation_error('permissions for the root dir "/" must be set')
    for folder in permissions:
        if not folder.startswith("/"):
            raise validation_error(f"cannot set permissions for non absolute path: {folder!r}")
    _check_public_keys(user.get("public_keys") or [])
    user.setdefault("status", 0)
    user.setdefault("public_keys", [])
    return user


def _shown_user(user: dict[str, Any]) -> dict[str, Any]:
    """What SFTPGo returns: never the password, only whether one is set."""
    shown = {key: value for key, value in user.items() if key != "password"}
    shown["has_password"] = bool(user.get("password"))
    return shown


def _user(state: State, name: str) -> dict[str, Any]:
    user = state.users.get(name)
    if user is None:
        raise not_found(f"username {name!r}")
    return user


def list_users(call: Call) -> tuple[int, Any]:
    return 200, [_shown_user(u) for _, u in sorted(call.state.users.items())]


def add_user(call: Call) -> tuple[int, Any]:
    user = _validated_user(call.body())
    if user["username"] in call.state.users:
        raise conflict(f"username {user['username']!r}")
    if user.get("password"):
        user["password"] = hash_password(user["password"])
    stamp = now_ms()
    user.update(id=call.state.next_id("user"), created_at=stamp, updated_at=stamp)
    call.state.users[user["username"]] = user
    return 201, _shown_user(user)


def get_user(call: Call) -> tuple[int, Any]:
    return 200, _shown_user(_user(call.state, call.params["username"]))


def update_user(call: Call) -> tuple[int, Any]:
    """A PUT replaces the user; an omitted password keeps the current one (SFTPGo's rule)."""
    name = call.params["username"]
    current = _user(call.state, name)
    user = _validated_user({**call.body(), "username": name})
    user["password"] = (
        hash_password(user["password"]) if user.get("password") else current.get("password", "")
    )
    user.update(id=current["id"], created_at=current["created_at"], updated_at=now_ms())
    call.state.users[name] = user
    return 200, {"message": "User updated"}


def delete_user(call: Call) -> tuple[int, Any]:
    name = call.params["username"]
    _user(call.state, name)
    del call.state.users[name]
    return 200, {"message": "User deleted"}


# -- event actions ----------------------------------------------------------------------


def _validated_action(body: dict[str, Any]) -> dict[str, Any]:
    action = copy.deepcopy(body)
    if not action.get("name"):
        raise validation_error("name is mandatory")
    if "type" not in action:
        raise validation_error("invalid action type: 0")
    if action["type"] == COMMAND_ACTION:
        config = (action.get("options") or {}).get("cmd_config") or {}
        if not str(config.get("cmd", "")).startswith("/"):
            raise validation_error("invalid command, it must be an absolute path")
        if not 1 <= config.get("timeout", 0) <= 120:
            raise validation_error(f"invalid command action timeout: {config.get('timeout', 0)}")
        for item in config.get("env_vars") or []:
            if not item.get("key") or "value" not in item:
                raise validation_error("invalid command env vars")
    action.pop("rules", None)  # computed, never stored
    return action


def _shown_action(state: State, action: dict[str, Any]) -> dict[str, Any]:
    return {**action, "rules": state.rules_using(action["name"])}


def _action(state: State, name: str) -> dict[str, Any]:
    action = state.actions.get(name)
    if action is None:
        raise not_found(f"event action {name!r}")
    return action


def list_actions(call: Call) -> tuple[int, Any]:
    return 200, [_shown_action(call.state, a) for _, a in sorted(call.state.actions.items())]


def add_action(call: Call) -> tuple[int, Any]:
    action = _validated_action(call.body())
    if action["name"] in call.state.actions:
        raise conflict(f"event action {action['name']!r}")
    action["id"] = call.state.next_id("action")
    call.state.actions[action["name"]] = action
    return 201, _shown_action(call.state, action)


def get_action(call: Call) -> tuple[int, Any]:
    return 200, _shown_action(call.state, _action(call.state, call.params["name"]))


def update_action(call: Call) -> tuple[int, Any]:
    name = call.params["name"]
    current = _action(call.state, name)
    action = _validated_action({**call.body(), "name": name})
    action["id"] = current["id"]
    call.state.actions[name] = action
    return 200, {"message": "Event action updated"}


def delete_action(call: Call) -> tuple[int, Any]:
    name = call.params["name"]
    _action(call.state, name)
    if call.state.rules_using(name):
        raise validation_error(f"action {name!r} is referenced, it cannot be removed")
    del call.state.actions[name]
    return 200, {"message": "Event action deleted"}


# -- event rules ------------------------------------------------------------------------


def _validated_rule(state: State, body: dict[str, Any]) -> dict[str, Any]:
    rule = copy.deepcopy(body)
    if not rule.get("name"):
        raise validation_error("name is mandatory")
    if rule.get("trigger") == FS_TRIGGER and not (rule.get("conditions") or {}).get("fs_events"):
        raise validation_error("at least one filesystem event is required")
    actions = rule.get("actions") or []
    if not actions:
        raise validation_error("at least one action is required")
    for item in actions:
        if item.get("name") not in state.actions:
            raise validation_error(f"unable to find action {item.get('name')!r}")
    rule.setdefault("status", 0)
    return rule


def _shown_rule(state: State, rule: dict[str, Any]) -> dict[str, Any]:
    """Actions come back whole (``EventAction``), with their order and options."""
    actions = [
        {
            **{k: v for k, v in state.actions[item["name"]].items()},
            "order": item.get("order", 0),
            "relation_options": item.get("relation_options", {}),
        }
        for item in rule.get("actions", [])
    ]
    return {**rule, "actions": actions}


def _rule(state: State, name: str) -> dict[str, Any]:
    rule = state.rules.get(name)
    if rule is None:
        raise not_found(f"event rule {name!r}")
    return rule


def list_rules(call: Call) -> tuple[int, Any]:
    return 200, [_shown_rule(call.state, r) for _, r in sorted(call.state.rules.items())]


def add_rule(call: Call) -> tuple[int, Any]:
    rule = _validated_rule(call.state, call.body())
    if rule["name"] in call.state.rules:
        raise conflict(f"event rule {rule['name']!r}")
    stamp = now_ms()
    rule.update(id=call.state.next_id("rule"), created_at=stamp, updated_at=stamp)
    call.state.rules[rule["name"]] = rule
    return 201, _shown_rule(call.state, rule)


def get_rule(call: Call) -> tuple[int, Any]:
    return 200, _shown_rule(call.state, _rule(call.state, call.params["name"]))


def update_rule(call: Call) -> tuple[int, Any]:
    name = call.params["name"]
    current = _rule(call.state, name)
    rule = _validated_rule(call.state, {**call.body(), "name": name})
    rule.update(id=current["id"], created_at=current["created_at"], updated_at=now_ms())
    call.state.rules[name] = rule
    return 200, {"message": "Event rules updated"}


def delete_rule(call: Call) -> tuple[int, Any]:
    name = call.params["name"]
    _rule(call.state, name)
    del call.state.rules[name]
    return 200, {"message": "Event rules deleted"}


ROUTES: list[Route] = [
    Route("GET", "/token", get_token, public=True),
    Route("GET", "/users", list_users),
    Route("POST", "/users", add_user),
    Route("GET", "/users/{username}", get_user),
    Route("PUT", "/users/{username}", update_user),
    Route("DELETE", "/users/{username}", delete_user),
    Route("GET", "/eventactions", list_actions),
    Route("POST", "/eventactions", add_action),
    Route("GET", "/eventactions/{name}", get_action),
    Route("PUT", "/eventactions/{name}", update_action),
    Route("DELETE", "/eventactions/{name}", delete_action),
    Route("GET", "/eventrules", list_rules),
    Route("POST", "/eventrules", add_rule),
    Route("GET", "/eventrules/{name}", get_rule),
    Route("PUT", "/eventrules/{name}", update_rule),
    Route("DELETE", "/eventrules/{name}", delete_rule),
]
