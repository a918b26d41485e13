"""The SFTPGo plans, pure: what is wanted against what SFTPGo holds (None: absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerview.exceptions import SftpgoError
from powerview.provision.sftpgo import plan_resource, plan_user, project, wanted_user

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl acme"


def held(wanted: dict, **changes: object) -> dict:
    """The user as SFTPGo returns it: server fields added, no password, has_password."""
    return {"id": 7, "created_at": 1, "used_quota_size": 0, **wanted, "has_password": False,
            **changes}  # fmt: skip


def test_a_new_user_needs_a_key_or_a_password(tmp_path: Path) -> None:
    wanted = wanted_user("acme", tmp_path)
    with pytest.raises(SftpgoError, match="--sftp-key"):
        plan_user("acme", wanted, None, new_password=False)
    change = plan_user("acme", wanted, None, new_password=True)
    assert change is not None
    assert change.action == "create"
    assert change.after is not None
    assert change.after["password"] == "new, shown once"


def test_the_same_user_is_no_change_and_server_fields_do_not_count(tmp_path: Path) -> None:
    wanted = wanted_user("acme", tmp_path, [KEY])
    assert plan_user("acme", wanted, held(wanted), new_password=False) is None


def test_keys_not_given_are_left_as_they_are(tmp_path: Path) -> None:
    existing = held(wanted_user("acme", tmp_path, [KEY]))
    assert plan_user("acme", wanted_user("acme", tmp_path), existing, new_password=False) is None
    change = plan_user("acme", wanted_user("acme", tmp_path, []), existing, new_password=False)
    assert change is not None
    assert change.detail == "put back public_keys"


def test_a_drifted_user_is_an_update_with_before_and_after(tmp_path: Path) -> None:
    wanted = wanted_user("acme", tmp_path, [KEY])
    existing = held(wanted, status=0, permissions={"/": ["*"]})
    change = plan_user("acme", wanted, existing, new_password=False)
    assert change is not None
    assert change.action == "update"
    assert change.detail == "put back status, permissions"
    assert change.before is not None
    assert change.after is not None
    assert (change.before["status"], change.after["status"]) == (0, 1)
    assert change.before["permissions"] == {"/": ["*"]}


def test_fields_sftpgo_omits_when_empty_read_as_their_zero() -> None:
    """Go's omitempty: `execute_sync: false` or `args: []` may come back absent."""
    wanted = {"options": {"execute_sync": False, "args": [], "timeout": 15}}
    existing = {"options": {"timeout": 15}, "id": 3}
    assert project(existing, wanted) == wanted
    assert plan_resource("x", wanted, existing) is None
    drifted = plan_resource("x", wanted, {"options": {"timeout": 15, "execute_sync": True}})
    assert drifted is not None
    assert drifted.detail == "put back options"


def test_an_absent_resource_is_created() -> None:
    change = plan_resource("SFTPGo event rule r", {"name": "r"}, None)
    assert change is not None
    assert (change.action, change.before, change.after) == ("create", None, {"name": "r"})


def test_a_folder_granted_rights_by_hand_is_drift(tmp_path: Path) -> None:
    wanted = wanted_user("acme", tmp_path, [KEY])
    opened = {**wanted["permissions"], "/c1": ["*"]}
    change = plan_user("acme", wanted, held(wanted, permissions=opened), new_password=False)
    assert change is not None
    assert change.detail == "put back permissions"
