"""`powerview deploy` and `powerview stack install --system` on this machine, as root.

Run under a temporary prefix (`--root`) with users and groups of unique names,
removed afterwards: check mode changes nothing, a second run changes nothing,
an operator's edit of the env file is kept, its owner and mode are put back,
a link where a folder belongs is refused, the production InfluxDB is onboarded
once and its token kept.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from powerview import deploy, host, stack
from powerview.cli import app
from powerview.exceptions import ConfigError, HostSetupError
from tests.deploy.units import unit_entries


@pytest.fixture
def target() -> Iterator[deploy.Target]:
    if os.geteuid() != 0:
        pytest.fail("powerview deploy creates users and groups: run the tests as root")
    tag = secrets.token_hex(3)
    # Not below /tmp/pytest-of-root (0700): the services' users must reach their files.
    made = deploy.Target(
        "openssh",
        root=Path(f"/srv/pvdeploy-{tag}"),
        service_user=f"pvs{tag}",
        upload_group=f"pvu{tag}",
        influxdb_user=f"pvi{tag}",
    )
    yield made
    for user in (made.service_user, made.influxdb_user):
        subprocess.run(["userdel", user], capture_output=True, check=False)
    subprocess.run(["groupdel", made.upload_group], capture_output=True, check=False)
    shutil.rmtree(made.root, ignore_errors=True)
    assert not host.user_exists(made.service_user)
    assert not host.group_exists(made.upload_group)


def outcomes(steps: list[host.Step]) -> dict[str, str]:
    return {step.what: step.outcome for step in steps}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_check_mode_says_what_it_would_do_and_changes_nothing(target: deploy.Target) -> None:
    steps = deploy.deploy(target, check=True)
    assert set(outcomes(steps).values()) == {"would change", "ok"}
    assert outcomes(steps)[f"user {target.service_user}"] == "would change"
    assert outcomes(steps)[str(target.at(deploy.ENV_FILE))] == "would change"
    assert not target.root.exists()
    assert not host.user_exists(target.service_user)
    assert not host.group_exists(target.upload_group)


def test_a_deployment_has_the_documented_owners_modes_and_paths(target: deploy.Target) -> None:
    deploy.deploy(target, check=False)
    user = pwd.getpwnam(target.service_user)
    assert user.pw_shell == host.NOLOGIN
    env_file = target.at(deploy.ENV_FILE)
    info = env_file.stat()
    # systemd reads it as root, `powerview health` as the service user: 0640 root:powerview.
    assert (info.st_uid, info.st_gid, mode(env_file)) == (0, user.pw_gid, 0o640)
    state = target.at(deploy.STATE_DIR)
    assert (state.stat().st_uid, mode(state)) == (user.pw_uid, 0o2770)
    for root_owned in (deploy.CHROOT_BASE, deploy.KEYS_DIR, "/srv/powerview"):
        path = target.at(root_owned)
        assert (path.stat().st_uid, mode(path)) == (0, 0o755), root_owned
    assert grp.getgrnam(target.upload_group)

    settings = host.env_values(env_file)
    assert settings["POWERVIEW_DATA_ROOT"] == str(target.at(deploy.DATA_ROOT))
    assert settings["POWERVIEW_STATE_DIR"] == str(state)
    assert settings["POWERVIEW_HEALTH_EXPECT"] == "worker,watcher"
    assert settings["POWERVIEW_UPLOAD_GROUP"] == target.upload_group
    assert settings["POWERVIEW_AUTHORIZED_KEYS_DIR"] == str(target.at(deploy.KEYS_DIR))

    fragment = target.at(deploy.SSHD_FRAGMENT).read_text()
    match_block = fragment[fragment.index(f"Match Group {target.upload_group}\n") :]
    assert f"AuthorizedKeysFile {target.at(deploy.KEYS_DIR)}/%u\n" in match_block
    assert f"ChrootDirectory {target.at(deploy.CHROOT_BASE)}/%u\n" in match_block

    for name in deploy.UNITS["openssh"]:
        if not name.endswith(".service"):
            continue
        entries = unit_entries(target.at(deploy.UNIT_DIR) / name)
        assert entries["User"] == [target.service_user], name
        assert entries["EnvironmentFile"] == [str(env_file)], name
        assert entries["ExecStart"][0].split()[0] == str(target.powerview), name
        assert Path(entries["ExecStart"][0].split()[0]).is_file()


def test_a_second_run_changes_nothing_and_keeps_the_operators_edits(
    target: deploy.Target,
) -> None:
    deploy.deploy(target, check=False)
    env_file = target.at(deploy.ENV_FILE)
    text = env_file.read_text().replace(
        "POWERVIEW_HEALTH_EXPECT=worker,watcher", "POWERVIEW_HEALTH_EXPECT=worker"
    )
    env_file.write_text(text + "GRAFANA_URL=http://grafana.example:3000\n")
    again = deploy.deploy(target, check=False)
    assert set(outcomes(again).values()) == {"ok"}, again
    assert env_file.read_text() == text + "GRAFANA_URL=http://grafana.example:3000\n"

    env_file.chmod(0o644)  # readable by the company accounts: put back
    fixed = outcomes(deploy.deploy(target, check=False))
    assert fixed[str(env_file)] == "changed"
    assert mode(env_file) == 0o640


def test_a_link_where_a_folder_belongs_is_refused_not_followed(
    target: deploy.Target, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (target.root / "etc").mkdir(parents=True)
    (target.root / "etc" / "powerview").symlink_to(elsewhere)
    with pytest.raises(HostSetupError, match="is not a folder"):
        deploy.deploy(target, check=False)
    assert list(elsewhere.iterdir()) == []


def test_the_sftpgo_variant_has_no_watcher_and_no_sshd_fragment(target: deploy.Target) -> None:
    sftpgo = deploy.Target(
        "sftpgo", root=target.root, service_user=target.service_user,
        upload_group=target.upload_group,
    )  # fmt: skip
    deploy.deploy(sftpgo, check=False)
    units = sorted(p.name for p in sftpgo.at(deploy.UNIT_DIR).iterdir())
    assert units == sorted(deploy.UNITS["sftpgo"])
    assert not sftpgo.at(deploy.SSHD_FRAGMENT).exists()
    assert sftpgo.at(deploy.HOOK_ENV_FILE).read_text() == "TSV_LOG_LEVEL=INFO\n"
    settings = host.env_values(sftpgo.at(deploy.ENV_FILE))
    assert settings["POWERVIEW_HEALTH_EXPECT"] == "worker"
    assert settings["POWERVIEW_SFTP_SERVER"] == "sftpgo"


def test_the_cli_reports_each_step_as_json(target: deploy.Target) -> None:
    names = ["--service-user", target.service_user, "--upload-group", target.upload_group]
    args = ["deploy", "--variant", "openssh", "--root", str(target.root), *names]
    checked = CliRunner().invoke(app, [*args, "--check", "--json"])
    assert checked.exit_code == 0, checked.output
    document = json.loads(checked.output)
    assert document["check"] is True
    assert document["changed"] == len([s for s in document["steps"] if s["outcome"] != "ok"]) > 0
    assert not target.root.exists()
    done = CliRunner().invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    assert (
        "systemctl enable --now powerview-worker powerview-watch powerview-health.timer"
        in (json.loads(done.output)["next_commands"])
    )
    again = json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert again["changed"] == 0


@pytest.mark.influxdb
def test_stack_install_system_onboards_once_and_keeps_the_token(target: deploy.Target) -> None:
    deploy.deploy(target, check=False)
    port = stack.free_port()
    first = stack.system_install(target, port, org="powerview", bucket="powerview_meta")
    assert first.onboarded
    assert first.started == "for onboarding only"  # no systemd here
    assert first.next_commands == [f"systemctl enable --now {stack.SYSTEM_UNIT}"]
    env_file = target.at(deploy.ENV_FILE)
    settings = host.env_values(env_file)
    assert settings["INFLUXDB_URL"] == f"http://127.0.0.1:{port}"
    token = settings["INFLUXDB_ADMIN_TOKEN"]
    assert len(token) > 30
    assert mode(env_file) == 0o640
    assert stack.port_is_free(port)  # the onboarding's server is stopped again

    unit = unit_entries(first.unit)
    assert unit["User"] == [target.influxdb_user]
    assert f"127.0.0.1:{port}" in unit["ExecStart"][0]
    data = target.at(deploy.INFLUXD_DATA)
    assert (data.stat().st_uid, mode(data)) == (pwd.getpwnam(target.influxdb_user).pw_uid, 0o700)

    second = stack.system_install(target, port, org="powerview", bucket="powerview_meta")
    assert not second.onboarded
    assert set(outcomes(second.steps).values()) == {"ok"}
    assert host.env_values(env_file)["INFLUXDB_ADMIN_TOKEN"] == token


@pytest.mark.parametrize("name", ["--help", "Powerview", "a b", ""])
def test_a_user_or_group_name_that_is_no_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is not a user or group name"):
        deploy.Target("openssh", root=Path("/srv/x"), service_user=name)
    with pytest.raises(ConfigError, match="is not a user or group name"):
        deploy.Target("openssh", root=Path("/srv/x"), upload_group=name)
