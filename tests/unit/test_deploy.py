"""deploy/ stays true to the code: settings, CLI commands, SFTPGo's hook environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from powerview import settings as config
from powerview.cli import app
from powerview.queue import QUEUE_FILE, JobQueue
from powerview.settings import Settings, variable_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
VARIABLE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
UNITS = ("powerview-worker.service", "powerview-watch.service")


def env_example() -> dict[str, tuple[str, bool]]:
    """Each variable of .env.example: (value, set) where set means not commented out."""
    found: dict[str, tuple[str, bool]] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = VARIABLE.match(line)
        if match:
            name = match.group(2)
            assert name not in found, f"{name} appears twice"
            found[name] = (match.group(3), match.group(1) is None)
    return found


def main_names() -> dict[str, str]:
    return {variable_names(field)[0]: field for field in Settings.model_fields}


def test_every_variable_of_env_example_is_a_setting() -> None:
    known = {name for field in Settings.model_fields for name in variable_names(field)}
    unknown = sorted(set(env_example()) - known)
    assert unknown == [], f"not settings of powerview.settings: {unknown}"


def test_every_setting_is_in_env_example_under_its_main_name() -> None:
    missing = sorted(set(main_names()) - set(env_example()))
    assert missing == [], f"add these to deploy/.env.example: {missing}"


def test_env_example_shows_the_true_defaults_and_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env, no stack env file around
    for field in Settings.model_fields:
        for name in variable_names(field):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("POWERVIEW_ENV_FILE", raising=False)
    defaults = config.load()
    fields = main_names()
    for name, (value, _) in env_example().items():
        field = fields[name]
        default = getattr(defaults, field)
        if default is None:
            assert value == "", f"{name}: no default, so show it empty (got {value!r})"
            continue
        shown = getattr(config.load(**{field: value}), field)
        assert shown == default, f"{name}={value} but the default is {default!r}"
    for name, (value, _) in env_example().items():
        if any(word in name for word in ("TOKEN", "PASSWORD", "WEBHOOK", "HEARTBEAT_URL")):
            assert value == "", f"{name} must be empty in the example"


def test_env_example_loads_as_an_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Copied as it is, it must be a valid configuration (with an empty admin token)."""
    monkeypatch.chdir(tmp_path)
    for field in Settings.model_fields:
        for name in variable_names(field):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POWERVIEW_ENV_FILE", str(DEPLOY / ".env.example"))
    resolved = config.resolve()
    set_here = {name for name, (_, is_set) in env_example().items() if is_set}
    for field, origin in resolved.origins.items():
        if variable_names(field)[0] in set_here:
            assert origin.startswith("env file"), (field, origin)
        else:
            assert origin == "default", (field, origin)


def readme_settings_table() -> set[str]:
    """The variables named in the first column of README.md's settings table."""
    text = (DEPLOY.parent / "README.md").read_text()
    start = text.index("| variable | default | meaning |")
    rows = text[start : text.index("\n\n", start)].splitlines()[2:]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    named = readme_settings_table()
    missing = sorted(set(main_names()) - named)
    assert missing == [], f"add these to README.md's settings table: {missing}"
    known = {name for field in Settings.model_fields for name in variable_names(field)}
    assert sorted(named - known) == [], "README.md's settings table names unknown variables"


def test_powerview_config_lists_every_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POWERVIEW_ENV_FILE", str(DEPLOY / ".env.example"))
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["variable"] for row in json.loads(result.output).values()}
    assert listed == set(main_names())


def test_the_automation_dir_is_read_from_the_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Like every setting, not only from the process environment (issue 11)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POWERVIEW_GRAFANA_AUTOMATION_DIR", raising=False)
    env_file = tmp_path / "powerview.env"
    env_file.write_text(f"POWERVIEW_GRAFANA_AUTOMATION_DIR={tmp_path / 'mine'}\n")
    monkeypatch.setenv("POWERVIEW_ENV_FILE", str(env_file))
    resolved = config.resolve()
    assert resolved.settings.grafana_automation_dir == tmp_path / "mine"
    assert resolved.origins["grafana_automation_dir"].startswith("env file")


# -- systemd units -------------------------------------------------------------------------------


def unit(name: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def resolve_command(argv: list[str]) -> click.Command:
    """The click command an argv of `powerview` names; its options must exist."""
    command: click.Command = app
    args = list(argv)
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in command.commands, f"`powerview` has no command {name!r}"
        command = command.commands[name]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for arg in args:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"{command.name} has no option {arg}"
    return command


@pytest.mark.parametrize("name", UNITS)
def test_units_start_commands_the_cli_has(name: str) -> None:
    entries = unit(name)
    [exec_start] = entries["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/.venv/bin/powerview")
    command = resolve_command(argv[1:])
    assert command.name in ("worker", "watch")
    assert entries["Restart"] == ["always"]
    assert entries["User"] == ["powerview"]
    assert entries["EnvironmentFile"] == ["/etc/powerview/powerview.env"]
    assert entries["NoNewPrivileges"] == ["yes"]
    assert entries["ProtectSystem"] == ["strict"]
    assert "POWERVIEW_STATE_DIR=/var/lib/powerview" in entries["Environment"]
    assert entries["StateDirectory"] == ["powerview"]


def test_the_worker_may_write_the_default_data_root() -> None:
    entries = unit("powerview-worker.service")
    writable = " ".join(entries["ReadWritePaths"]).split()
    assert str(Settings.model_fields["data_root"].default) in writable


# -- SFTPGo ------------------------------------------------------------------------------------


def sftpgo_env() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "sftpgo.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            assert key.startswith("SFTPGO_"), line
            values[key] = value
    return values


def test_sftpgo_configuration() -> None:
    env = sftpgo_env()
    assert env["SFTPGO_COMMON__ACTIONS__EXECUTE_ON"].split(",") == ["upload", "rename", "mkdir"]
    assert env["SFTPGO_COMMON__ACTIONS__EXECUTE_SYNC"] == ""
    assert env["SFTPGO_COMMON__UPLOAD_MODE"] == "1"
    hook = env["SFTPGO_COMMON__ACTIONS__HOOK"]
    assert hook.startswith("/")  # SFTPGo runs only an absolute path
    assert env["SFTPGO_COMMAND__COMMANDS__0__PATH"] == hook  # else its env does not apply
    assert env["SFTPGO_COMMAND__COMMANDS__0__HOOK"] == "fs_actions"
    assert 1 <= int(env["SFTPGO_COMMAND__COMMANDS__0__TIMEOUT"]) <= 300
    assert Path(hook).name == "on-upload.sh"
    assert os.access(DEPLOY / "on-upload.sh", os.X_OK)


def hook_environment() -> dict[str, str]:
    """command.commands[0].env as SFTPGo splits it: a comma-separated list of key=value."""
    pairs = sftpgo_env()["SFTPGO_COMMAND__COMMANDS__0__ENV"].split(",")
    env = dict(pair.split("=", 1) for pair in pairs)
    assert len(env) == len(pairs)
    return env


def test_the_hook_gets_path_home_and_real_settings() -> None:
    env = hook_environment()
    assert {"PATH", "HOME", "POWERVIEW_DATA_ROOT", "POWERVIEW_STATE_DIR"} <= set(env)
    known = {name for field in Settings.model_fields for name in variable_names(field)}
    for name in env:
        assert name in ("PATH", "HOME", "POWERVIEW_ENV_FILE") or name in known, name
        assert not name.startswith("SFTPGO_")  # SFTPGo's own variables come last and win
    assert env["POWERVIEW_STATE_DIR"] == "/var/lib/powerview"  # the units' state folder
    assert "/usr/bin" in env["PATH"].split(":")


def test_on_upload_sh_queues_the_job_with_exactly_sftpgos_environment(tmp_path: Path) -> None:
    """The shim run as SFTPGo runs it: command env (paths moved to tmp) + the event."""
    data, state = tmp_path / "data", tmp_path / "state"
    (data / "acme" / "c1" / "02001084").mkdir(parents=True)
    state.mkdir()
    env = hook_environment()
    env.update(
        HOME=str(tmp_path),
        POWERVIEW_DATA_ROOT=str(data),
        POWERVIEW_STATE_DIR=str(state),
        POWERVIEW_ENV_FILE=str(tmp_path / "hook.env"),
        POWERVIEW_BIN=str(Path(sys.executable).with_name("powerview")),
        SFTPGO_ACTION="upload",
        SFTPGO_ACTION_USERNAME="acme",
        SFTPGO_ACTION_PATH=str(data / "acme" / "c1" / "02001084" / "x.tsv"),
        SFTPGO_ACTION_TARGET="",
        SFTPGO_ACTION_STATUS="1",
    )
    (tmp_path / "hook.env").write_text("TSV_LOG_LEVEL=WARNING\n")
    done = subprocess.run(
        [str(DEPLOY / "on-upload.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # TSV_LOG_LEVEL came from the env file
    queue = JobQueue.in_state_dir(state)
    try:
        [job] = queue.jobs()
    finally:
        queue.close()
    assert job.payload["path"] == env["SFTPGO_ACTION_PATH"]
    mode = stat.S_IMODE((state / QUEUE_FILE).stat().st_mode)
    assert mode == 0o660, oct(mode)  # the umask: the worker's group may write it too


# -- package data and the production InfluxDB's unit ----------------------------------------------


def test_the_package_ships_every_unit_and_the_sshd_fragment_of_deploy() -> None:
    """`powerview deploy` installs from package data: the same bytes as deploy/ (links)."""
    from importlib.resources import files

    shipped = files("powerview") / "system_files"
    names = sorted(p.name for p in DEPLOY.iterdir() if p.suffix in (".service", ".timer"))
    assert names, "no unit in deploy/"
    for name in [*names, "sshd_config.powerview"]:
        assert (shipped / name).read_text() == (DEPLOY / name).read_text(), name


def test_the_influxdb_unit_listens_on_the_loopback_as_its_own_user() -> None:
    entries = unit("powerview-influxd.service")
    [exec_start] = entries["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/usr/local/lib/powerview/influxd"
    assert argv[argv.index("--http-bind-address") + 1] == "127.0.0.1:8086"
    for flag in ("--bolt-path", "--engine-path", "--sqlite-path"):
        assert argv[argv.index(flag) + 1].startswith("/var/lib/powerview-influxdb/"), flag
    assert entries["User"] == ["powerview-influxdb"]
    assert entries["StateDirectory"] == ["powerview-influxdb"]
    assert entries["ReadWritePaths"] == ["/var/lib/powerview-influxdb"]
    assert entries["CapabilityBoundingSet"] == [""]
    assert entries["NoNewPrivileges"] == ["yes"]
    assert entries["ProtectSystem"] == ["strict"]
    assert entries["KillSignal"] == ["SIGINT"]  # influxd's clean shutdown


def test_the_sshd_fragment_reads_keys_from_the_keys_folder_inside_its_match_block() -> None:
    text = (DEPLOY / "sshd_config.powerview").read_text()
    block = text[text.index("\nMatch Group powerview-upload\n") :]
    directives = [line.split()[0] for line in block.splitlines()[2:] if line.strip()
                  and not line.strip().startswith("#")]  # fmt: skip
    assert "Match" not in directives  # one block, to the end of the file
    assert "    AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n" in block
    assert str(Settings.model_fields["authorized_keys_dir"].default) == "/etc/ssh/authorized_keys"
