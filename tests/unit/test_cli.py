"""The `powerview` command: `config`, error reporting, help for every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from powerview import cli
from powerview import settings as config
from powerview.exceptions import StackError

ALL_VARIABLES = {
    name.upper() for field in config.Settings.model_fields for name in config.variable_names(field)
} | {"POWERVIEW_ENV_FILE"}

TOKEN = "tok-9f8e7d6c5b4a-never-shown"
GRAFANA_PASSWORD = "pw-0a1b2c3d-never-shown"
GRAFANA_TOKEN = "glsa-11223344-never-shown"
SECRETS = (TOKEN, GRAFANA_PASSWORD, GRAFANA_TOKEN)


@dataclass(frozen=True)
class Result:
    status: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the real environment, `.env` or `.powerview/stack.env` leaks in."""
    for name in list(os.environ):
        if name.upper() in ALL_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


Run = Callable[..., Result]


@pytest.fixture
def powerview(capsys: pytest.CaptureFixture[str]) -> Run:
    """`powerview ARGS...` in this process: its status and what it printed."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        status = cli.run(list(argv))
        captured = capsys.readouterr()
        return Result(int(status), captured.out, captured.err)

    return run


def with_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("GRAFANA_PASSWORD", GRAFANA_PASSWORD)
    monkeypatch.setenv("GRAFANA_API_TOKEN", GRAFANA_TOKEN)


# -- config ----------------------------------------------------------------------


def test_config_json_masks_secrets_and_shows_origins(
    monkeypatch: pytest.MonkeyPatch, powerview: Run
) -> None:
    with_secrets(monkeypatch)
    monkeypatch.setenv("INFLUXDB_HOST", "influx:9999")
    Path(".env").write_text("TSV_META_BUCKET=dotenv_meta\n")

    result = powerview("config", "--json")

    assert result.status == 0, result.err
    for secret in SECRETS:
        assert secret not in result.out
        assert secret not in result.err
    rows = json.loads(result.out)
    assert set(rows) == set(config.Settings.model_fields)
    assert rows["influxdb_admin_token"] == {
        "variable": "INFLUXDB_ADMIN_TOKEN",
        "value": "****",
        "origin": "environment (INFLUXDB_ADMIN_TOKEN)",
    }
    assert rows["grafana_password"]["value"] == "****"
    assert rows["grafana_api_token"]["value"] == "****"
    assert rows["influxdb_url"] == {
        "variable": "INFLUXDB_URL",
        "value": "http://influx:9999",
        "origin": "environment (INFLUXDB_HOST)",
    }
    assert rows["meta_bucket"]["value"] == "dotenv_meta"
    assert rows["meta_bucket"]["origin"] == "env file .env (TSV_META_BUCKET)"
    assert rows["log_level"] == {"variable": "TSV_LOG_LEVEL", "value": "INFO", "origin": "default"}
    assert rows["grafana_url"]["value"] == "(unset)"


def test_config_table_masks_secrets_and_shows_origins(
    monkeypatch: pytest.MonkeyPatch, powerview: Run
) -> None:
    with_secrets(monkeypatch)
    monkeypatch.setenv("INFLUXDB_ORG", "acme")

    result = powerview("config")

    assert result.status == 0, result.err
    for secret in SECRETS:
        assert secret not in result.out
    rows = {line.split()[0]: line.split() for line in result.out.splitlines() if line.strip()}
    assert rows["INFLUXDB_ADMIN_TOKEN"][1] == "****"
    assert " ".join(rows["INFLUXDB_ADMIN_TOKEN"][2:]) == "environment (INFLUXDB_ADMIN_TOKEN)"
    assert rows["GRAFANA_PASSWORD"][1] == "****"
    assert rows["GRAFANA_API_TOKEN"][1] == "****"
    assert rows["INFLUXDB_ORG"][1:] == ["acme", "environment", "(INFLUXDB_ORG)"]
    assert rows["TSV_META_BUCKET"][1:] == ["powerview_meta", "default"]


def test_config_shows_secrets_from_the_stack_env_masked(powerview: Run) -> None:
    stack_env = Path(".powerview/stack.env")
    stack_env.parent.mkdir()
    stack_env.write_text(f"INFLUXDB_ADMIN_TOKEN={TOKEN}\nPOWERVIEW_INFLUXDB_ADMIN_PASSWORD=pw\n")

    result = powerview("config", "--json")

    assert result.status == 0, result.err
    assert TOKEN not in result.out
    row = json.loads(result.out)["influxdb_admin_token"]
    assert row["value"] == "****"
    assert row["origin"] == f"stack env file {stack_env} (INFLUXDB_ADMIN_TOKEN)"


def test_the_console_script_prints_the_config_without_secrets(tmp_path: Path) -> None:
    """The installed `powerview` entry point, in a child process with a controlled environment."""
    script = Path(sys.executable).with_name("powerview")
    env = {key: value for key, value in os.environ.items() if key.upper() not in ALL_VARIABLES} | {
        "INFLUXDB_ADMIN_TOKEN": TOKEN,
        "INFLUXDB_ORG": "acme",
    }

    done = subprocess.run(
        [str(script), "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert "****" in done.stdout
    assert "environment (INFLUXDB_ADMIN_TOKEN)" in done.stdout

    env["POWERVIEW_INFLUXD_PORT"] = "abc"
    done = subprocess.run(
        [str(script), "config"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("powerview: configuration error: POWERVIEW_INFLUXD_PORT")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


# -- configuration errors ----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["config"],
        ["config", "--json"],
        ["stack", "up"],
        ["stack", "down"],
        ["stack", "status"],
        ["stack", "install"],
    ],
)
@pytest.mark.parametrize(
    ("variable", "value"),
    [("POWERVIEW_INFLUXD_PORT", "abc"), ("TSV_LOG_LEVEL", "chatty"), ("INFLUXDB_HOST", "ftp://x")],
)
def test_a_bad_setting_is_status_2_and_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    powerview: Run,
    argv: list[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", TOKEN)

    result = powerview(*argv)

    assert result.status == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("powerview: configuration error: ")
    assert variable in lines[0]
    assert "Traceback" not in result.err
    assert TOKEN not in result.err


def test_a_bad_setting_in_the_env_file_is_reported_the_same_way(powerview: Run) -> None:
    Path(".env").write_text("POWERVIEW_INFLUXD_PORT=eighty\n")

    result = powerview("config")

    assert result.status == 2
    assert result.err.startswith("powerview: configuration error: POWERVIEW_INFLUXD_PORT")


def test_traceback_flag_adds_the_chain_and_keeps_the_status(
    monkeypatch: pytest.MonkeyPatch, powerview: Run
) -> None:
    monkeypatch.setenv("POWERVIEW_INFLUXD_PORT", "abc")

    result = powerview("--traceback", "config")

    assert result.status == 2
    # The pydantic error underneath (raised `from exc`), then PowerView's, then one line.
    assert "pydantic_core._pydantic_core.ValidationError" in result.err
    assert "The above exception was the direct cause of the following exception" in result.err
    assert "powerview.exceptions.ConfigError: POWERVIEW_INFLUXD_PORT" in result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("powerview: configuration error: POWERVIEW_INFLUXD_PORT")


# -- exit statuses: 0 done, 1 rejected, 2 error, 130 interrupted -------------------


@pytest.fixture
def failing_command() -> Iterator[Callable[[BaseException], None]]:
    """A command `fail` that raises what the test gives it, removed afterwards.

    Only the raising is staged: the catching, mapping and printing are `cli.run`'s.
    """
    raised: list[BaseException] = []

    @cli.app.command("fail")
    def fail() -> None:
        raise raised[0]

    yield raised.append
    del cli.app.commands["fail"]


def test_an_unexpected_error_is_status_2_and_one_line(
    powerview: Run, failing_command: Callable[[BaseException], None]
) -> None:
    failing_command(ZeroDivisionError("division by zero"))

    result = powerview("fail")

    assert result.status == 2  # never 1: that means "files rejected"
    assert result.err.strip().splitlines() == [
        "powerview: unexpected error: ZeroDivisionError: division by zero "
        "(run again with --traceback for details)"
    ]
    assert result.out == ""


def test_traceback_shows_every_cause_of_an_unexpected_error(
    powerview: Run, failing_command: Callable[[BaseException], None]
) -> None:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except OSError as cause:
            raise LookupError("no answer") from cause
    except LookupError as exc:
        failing_command(exc)

    result = powerview("--traceback", "fail")

    assert result.status == 2
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in result.err
    assert "The above exception was the direct cause" in result.err
    assert (
        result.err.strip().splitlines()[-1].startswith("powerview: unexpected error: LookupError")
    )


def test_interrupted_is_status_130(
    powerview: Run, failing_command: Callable[[BaseException], None]
) -> None:
    failing_command(KeyboardInterrupt())

    result = powerview("fail")

    assert result.status == 130
    assert result.err.strip() == "powerview: interrupted"


def test_a_multi_line_error_is_printed_on_one_line(
    powerview: Run, failing_command: Callable[[BaseException], None]
) -> None:
    failing_command(StackError("influxd not healthy after 30 s\nlog line 1\n\nlog line 2"))

    result = powerview("fail")

    assert result.status == 2
    assert result.err.strip().splitlines() == [
        "powerview: error: influxd not healthy after 30 s | log line 1 | log line 2"
    ]


def test_a_corrupt_queue_is_status_2_and_one_line(
    monkeypatch: pytest.MonkeyPatch, powerview: Run, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "queue.sqlite3").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("POWERVIEW_STATE_DIR", str(state))

    result = powerview("queue")

    assert result.status == 2
    assert result.err.strip().splitlines() == [
        "powerview: queue database error: file is not a database"
    ]


def test_rejected_files_are_status_1_and_good_ones_0(
    powerview: Run, samples: Path, tmp_path: Path
) -> None:
    good = samples / "acme" / "v002-header" / "02001315" / "T302_260909_031459_UTC.tsv"
    bad = tmp_path / "data" / "acme" / "c1" / "02001084" / "notes.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("shopping list\n")

    assert powerview("ingest", "--dry-run", str(good)).status == 0
    rejected = powerview("ingest", "--dry-run", str(bad))
    assert rejected.status == 1, rejected.out
    assert "not a known device export" in rejected.out


def test_health_that_cannot_run_is_unknown_3(
    monkeypatch: pytest.MonkeyPatch, powerview: Run
) -> None:
    """A configuration error stops `health`: UNKNOWN, with the plugin status line first."""
    monkeypatch.setenv("POWERVIEW_HEADERLESS_TIMEZONE", "Mars/Olympus")

    result = powerview("health")

    assert result.status == 3
    assert result.out.startswith("POWERVIEW UNKNOWN - configuration error: ")
    assert "POWERVIEW_HEADERLESS_TIMEZONE" in result.out


def test_an_unknown_command_is_a_usage_error(powerview: Run) -> None:
    result = powerview("frobnicate")

    assert result.status == 2
    assert "No such command" in result.err
    assert "Traceback" not in result.err


def test_version(powerview: Run) -> None:
    result = powerview("--version")

    assert result.status == 0
    assert "version" in result.out


# -- help ---------------------------------------------------------------------------


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = all_commands(cli.app)


def test_the_required_commands_exist() -> None:
    required = {
        (),
        ("config",),
        ("stack",),
        ("stack", "up"),
        ("stack", "down"),
        ("stack", "status"),
        ("stack", "install"),
    }
    assert required <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "powerview")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_works_for_every_command(
    monkeypatch: pytest.MonkeyPatch, powerview: Run, command: tuple[str, ...], flag: str
) -> None:
    # Help must not need valid settings.
    monkeypatch.setenv("POWERVIEW_INFLUXD_PORT", "abc")

    result = powerview(*command, flag)

    assert result.status == 0, result.err
    assert result.err == ""
    assert result.out.startswith(f"Usage: {' '.join(('powerview', *command))} ")
    assert "--help" in result.out
    assert not Path(".powerview").exists()  # help starts and creates nothing


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POWERVIEW_HEADERLESS_TIMEZONE", "Europe/Pariss"),
        ("POWERVIEW_EARLIEST_VALID_TIME", "2021-01-01 midnight"),
    ],
)
def test_ingest_with_a_bad_setting_is_status_2_one_line_and_moves_nothing(
    monkeypatch: pytest.MonkeyPatch,
    powerview: Run,
    samples: Path,
    tmp_path: Path,
    variable: str,
    value: str,
) -> None:
    """Once found mid-run with a traceback; now refused when the settings load."""
    device = tmp_path / "data" / "acme" / "c1" / "02001315"
    device.mkdir(parents=True)
    sample = samples / "acme" / "v002-header" / "02001315" / "T302_260909_031459_UTC.tsv"
    (device / sample.name).write_bytes(sample.read_bytes())
    (device / "headerless.tsv").write_text("2026-09-09 03:14:59\t1.0\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("POWERVIEW_DATA_ROOT", str(tmp_path / "data"))

    result = powerview("ingest", str(tmp_path / "data"))

    assert result.status == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"powerview: configuration error: {variable}: {value!r} is not")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_unreachable_influxdb_is_one_readable_line_and_traceback_shows_the_cause(
    monkeypatch: pytest.MonkeyPatch, powerview: Run
) -> None:
    from powerview.stack import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("INFLUXDB_URL", url)
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("POWERVIEW_INFLUXDB_RETRIES", "0")
    expected = (
        f"powerview: infrastructure error: InfluxDB at {url} unreachable: connection refused "
        "(querying bucket 'acme')"
    )

    plain = powerview("summary", "acme")
    detailed = powerview("--traceback", "summary", "acme")

    assert plain.status == 2
    assert plain.err.strip().splitlines() == [expected]
    assert detailed.status == 2
    assert "urllib3.exceptions.MaxRetryError" in detailed.err  # the cause, kept
    assert "ConnectionRefusedError" in detailed.err
    assert detailed.err.strip().splitlines()[-1] == expected


def test_stack_status_and_down_json_say_what_the_text_says(powerview: Run, tmp_path: Path) -> None:
    state = tmp_path / "stack-state"

    text = powerview("stack", "status", "--state-dir", str(state))
    shown = powerview("stack", "status", "--state-dir", str(state), "--json")
    down = powerview("stack", "down", "--state-dir", str(state), "--json")

    assert text.status == shown.status == 0
    document = json.loads(shown.out)
    assert document["pid"] is None
    assert document["healthy"] is False
    assert f"InfluxDB is not running (data: {document['data_dir']})" in text.out
    assert f"settings:  {document['env_file']}" in text.out
    assert document["env_file"] == str(state / "stack.env")
    assert down.status == 0
    assert json.loads(down.out) == {"stopped": False}
