"""The SFTPGo stand-in's own tests: it answers what SFTPGo answers and refuses what
SFTPGo refuses, and every exchange is checked against SFTPGo's OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .server import SftpgoStandin

KEY = (  # an ed25519 public key (type, base64 blob whose first field repeats the type)
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl acme"
)


def user_body(**extra: Any) -> dict[str, Any]:
    return {
        "username": "acme",
        "status": 1,
        "home_dir": "/srv/sftpgo/data/acme",
        "permissions": {"/": ["list", "upload"]},
        **extra,
    }


@pytest.fixture
def api(sftpgo: SftpgoStandin) -> Iterator[httpx.Client]:
    """A client with a bearer JWT from /token, as SFTPGo's admins get one."""
    token = httpx.get(
        f"{sftpgo.url}/api/v2/token", auth=(sftpgo.admin_user, sftpgo.admin_password)
    ).json()["access_token"]
    with httpx.Client(
        base_url=f"{sftpgo.url}/api/v2", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


def test_token_needs_the_admin_password(sftpgo: SftpgoStandin) -> None:
    bad = httpx.get(f"{sftpgo.url}/api/v2/token", auth=(sftpgo.admin_user, "wrong"))
    assert bad.status_code == 401
    assert bad.json()["message"] == "Unauthorized"
    good = httpx.get(f"{sftpgo.url}/api/v2/token", auth=(sftpgo.admin_user, sftpgo.admin_password))
    assert good.status_code == 200
    assert good.json()["access_token"] in sftpgo.state.tokens
    assert sftpgo.violations == []


def test_calls_without_a_valid_token_or_key_are_401(sftpgo: SftpgoStandin) -> None:
    base = f"{sftpgo.url}/api/v2/users"
    assert httpx.get(base).status_code == 401
    assert httpx.get(base, headers={"Authorization": "Bearer forged"}).status_code == 401
    assert httpx.get(base, headers={"X-SFTPGO-API-KEY": "forged"}).status_code == 401
    assert httpx.get(base, headers={"X-SFTPGO-API-KEY": sftpgo.api_key}).status_code == 200
    sftpgo.revoke_tokens()
    assert sftpgo.violations == []


def test_user_crud_with_status_codes_and_hidden_password(
    sftpgo: SftpgoStandin, api: httpx.Client
) -> None:
    created = api.post("/users", json=user_body(password="s3cret-pw", public_keys=[KEY]))
    assert created.status_code == 201
    assert "password" not in created.json()
    assert created.json()["has_password"] is True
    assert sftpgo.state.check_password("acme", "s3cret-pw")
    assert "s3cret-pw" not in str(sftpgo.state.users["acme"])  # kept hashed
    assert api.post("/users", json=user_body()).status_code == 409
    got = api.get("/users/acme").json()
    assert got["public_keys"] == [KEY]
    assert got["status"] == 1
    # A PUT without a password keeps it; with one, replaces it.
    assert api.put("/users/acme", json={**got, "status": 0}).status_code == 200
    assert sftpgo.state.check_password("acme", "s3cret-pw")
    assert api.get("/users/acme").json()["status"] == 0
    assert api.put("/users/acme", json={**got, "password": "other-pw"}).status_code == 200
    assert sftpgo.state.check_password("acme", "other-pw")
    assert not sftpgo.state.check_password("acme", "s3cret-pw")
    assert api.delete("/users/acme").json() == {"message": "User deleted"}
    missing = api.get("/users/acme")
    assert missing.status_code == 404
    assert "does not exist" in missing.json()["error"]
    assert api.delete("/users/acme").status_code == 404
    assert api.put("/users/acme", json=got).status_code == 404
    assert sftpgo.violations == []


def test_an_omitted_status_means_a_disabled_user(sftpgo: SftpgoStandin, api: httpx.Client) -> None:
    body = user_body()
    del body["status"]
    assert api.post("/users", json=body).json()["status"] == 0
    assert sftpgo.violations == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (user_body(status="yes"), "status"),
        (user_body(status=2), "status"),
        (user_body(permissions={"/": ["fly"]}), "permissions"),
        (user_body(permissions={}), "permissions"),
        (user_body(public_keys="ssh-ed25519 AAAA"), "public_keys"),
    ],
    ids=["status-yes", "status-2", "unknown-permission", "no-permission", "keys-not-a-list"],
)
def test_the_spec_refuses_what_sftpgo_refuses(
    sftpgo: SftpgoStandin, api: httpx.Client, body: dict[str, Any], reason: str
) -> None:
    answer = api.post("/users", json=body)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert [v.kind for v in sftpgo.violations] == ["request"]
    assert sftpgo.state.users == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (user_body(username=""), "username is mandatory"),
        (user_body(username="a/b"), "is not valid"),
        (user_body(home_dir="data/acme"), "absolute path"),
        (user_body(permissions={"/in": ["list"]}), "root dir"),
        (user_body(permissions={"/": ["list"], "in": ["list"]}), "non absolute"),
        (user_body(public_keys=["ssh-ed25519 not-base64!"]), "could not parse key"),
    ],
    ids=["no-name", "bad-name", "relative-home", "no-root", "relative-dir", "bad-key"],
)
def test_sftpgo_validation_refuses_with_a_reason(
    sftpgo: SftpgoStandin, api: httpx.Client, body: dict[str, Any], reason: str
) -> None:
    answer = api.post("/users", json=body)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]
    assert sftpgo.violations == []  # valid by the spec, refused by SFTPGo's own checks
    assert sftpgo.state.users == {}


def command_action(name: str = "hook", **config: Any) -> dict[str, Any]:
    cmd = {"cmd": "/opt/hook", "timeout": 10, "env_vars": [{"key": "A", "value": "{{.Event}}"}]}
    return {"name": name, "type": 2, "options": {"cmd_config": {**cmd, **config}}}


def fs_rule(name: str = "uploads", action: str = "hook") -> dict[str, Any]:
    return {
        "name": name,
        "status": 1,
        "trigger": 1,
        "conditions": {"fs_events": ["upload"], "options": {"event_statuses": [1]}},
        "actions": [{"name": action, "order": 1}],
    }


def test_event_actions_and_rules_crud(sftpgo: SftpgoStandin, api: httpx.Client) -> None:
    assert api.post("/eventactions", json=command_action()).status_code == 201
    assert api.post("/eventactions", json=command_action()).status_code == 409
    assert api.post("/eventrules", json=fs_rule()).status_code == 201
    assert api.post("/eventrules", json=fs_rule()).status_code == 409
    rule = api.get("/eventrules/uploads").json()
    assert rule["actions"][0]["name"] == "hook"
    assert rule["actions"][0]["options"]["cmd_config"]["cmd"] == "/opt/hook"
    assert api.get("/eventactions/hook").json()["rules"] == ["uploads"]
    changed = command_action(timeout=20)
    assert api.put("/eventactions/hook", json=changed).status_code == 200
    assert api.get("/eventactions/hook").json()["options"]["cmd_config"]["timeout"] == 20
    refused = api.delete("/eventactions/hook")
    assert refused.status_code == 400
    assert "referenced" in refused.json()["error"]
    assert api.put("/eventrules/uploads", json={**fs_rule(), "status": 0}).status_code == 200
    assert api.delete("/eventrules/uploads").status_code == 200
    assert api.delete("/eventactions/hook").status_code == 200
    assert api.get("/eventactions/hook").status_code == 404
    assert api.get("/eventrules/uploads").status_code == 404
    assert sftpgo.violations == []


@pytest.mark.parametrize(
    ("path", "body", "status", "reason", "violation"),
    [
        ("/eventactions", command_action(timeout=500), 400, "timeout", True),
        ("/eventactions", command_action(cmd="hook.sh"), 400, "absolute path", False),
        ("/eventactions", {**command_action(), "type": 10}, 400, "type", True),
        ("/eventrules", fs_rule(action="missing"), 400, "unable to find action", False),
        ("/eventrules", {**fs_rule(), "conditions": {"fs_events": ["upload", "fly"]}}, 400,
         "fs_events", True),
        ("/eventrules", {**fs_rule(), "conditions": {}}, 400, "filesystem event", False),
    ],
    ids=["timeout", "relative-cmd", "type-10", "unknown-action", "unknown-event", "no-event"],
)  # fmt: skip
def test_event_manager_refusals(
    sftpgo: SftpgoStandin,
    api: httpx.Client,
    path: str,
    body: dict[str, Any],
    status: int,
    reason: str,
    violation: bool,
) -> None:
    answer = api.post(path, json=body)
    assert answer.status_code == status
    assert reason in answer.json()["error"]
    assert bool(sftpgo.violations) is violation
    assert sftpgo.state.rules == {}
    assert path == "/eventrules" or sftpgo.state.actions == {}


def test_an_operation_the_spec_lacks_is_a_404_violation(
    sftpgo: SftpgoStandin, api: httpx.Client
) -> None:
    assert api.get("/no-such-thing").status_code == 404
    assert [v.kind for v in sftpgo.violations] == ["request"]


def test_an_operation_not_implemented_is_recorded(sftpgo: SftpgoStandin, api: httpx.Client) -> None:
    assert api.get("/folders").status_code == 501
    assert [v.kind for v in sftpgo.violations] == ["unimplemented"]
