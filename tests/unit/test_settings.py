"""Settings: the original variable names, the precedence of sources, the origins, the errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from powerview import settings as config
from powerview.exceptions import ConfigError

# Every variable a setting reads, plus the one that moves the `.env` file.
ALL_VARIABLES = {
    name.upper() for field in config.Settings.model_fields for name in config.variable_names(field)
} | {"POWERVIEW_ENV_FILE"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the real environment, `.env` or `.powerview/stack.env` leaks in."""
    for name in list(os.environ):
        if name.upper() in ALL_VARIABLES:  # the sources match names case-insensitively
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def write_env(path: Path, **values: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


# -- defaults ------------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    resolved = config.resolve()
    settings = resolved.settings

    assert settings.influxdb_url == "http://127.0.0.1:8086"
    assert settings.influxdb_org == "powerview"
    assert settings.influxdb_admin_token is None
    assert settings.grafana_url is None
    assert settings.grafana_username is None
    assert settings.grafana_password is None
    assert settings.grafana_api_token is None
    assert settings.meta_bucket == "powerview_meta"
    assert settings.report_dir is None
    assert settings.log_level == "INFO"
    assert settings.state_dir == Path(".powerview")
    assert settings.influxd_port == 8086
    assert set(resolved.origins) == set(config.Settings.model_fields)
    assert set(resolved.origins.values()) == {"default"}


def test_default_report_dir_is_next_to_the_data_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert config.load().report_dir_for() == Path("/srv/sftpgo/logs/reports").resolve()

    monkeypatch.setenv("POWERVIEW_DATA_ROOT", str(tmp_path / "uploads"))
    settings = config.load()
    assert settings.report_dir_for() == tmp_path / "logs" / "reports"
    assert settings.report_dir_for(tmp_path / "a" / "data") == tmp_path / "a" / "logs" / "reports"


def test_report_dir_from_tsv_report_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TSV_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("POWERVIEW_DATA_ROOT", str(tmp_path / "uploads"))
    resolved = config.resolve()

    assert resolved.settings.report_dir == tmp_path / "reports"
    assert resolved.settings.report_dir_for() == tmp_path / "reports"
    assert resolved.settings.report_dir_for(tmp_path / "other") == tmp_path / "reports"
    assert resolved.origins["report_dir"] == "environment (TSV_REPORT_DIR)"


# -- the original variable names -----------------------------------------------


@pytest.mark.parametrize(
    ("variable", "field", "value", "expected"),
    [
        ("INFLUXDB_URL", "influxdb_url", "http://influx.example.org:9999", None),
        ("INFLUXDB_ORG", "influxdb_org", "acme", None),
        ("GRAFANA_URL", "grafana_url", "http://grafana:3000", None),
        ("GRAFANA_USERNAME", "grafana_username", "viewer", None),
        ("TSV_META_BUCKET", "meta_bucket", "tsv_meta", None),
        ("TSV_REPORT_DIR", "report_dir", "/var/reports", Path("/var/reports")),
        ("TSV_LOG_LEVEL", "log_level", "WARNING", None),
    ],
)
def test_original_variable_names_work_unchanged(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str, value: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    resolved = config.resolve()

    assert getattr(resolved.settings, field) == (value if expected is None else expected)
    assert resolved.origins[field] == f"environment ({variable})"
    assert config.variable_names(field)[0] == variable


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("influx", "http://influx:8086"),
        ("influx:9999", "http://influx:9999"),
        ("10.1.2.3", "http://10.1.2.3:8086"),
        ("http://influx", "http://influx:8086"),
        ("https://influx.example.org/", "https://influx.example.org:8086"),
        ("http://influx:8087", "http://influx:8087"),
        ("  influx  ", "http://influx:8086"),
    ],
)
def test_influxdb_host_forms_are_normalised(
    monkeypatch: pytest.MonkeyPatch, host: str, url: str
) -> None:
    monkeypatch.setenv("INFLUXDB_HOST", host)
    resolved = config.resolve()

    assert resolved.settings.influxdb_url == url
    assert resolved.origins["influxdb_url"] == "environment (INFLUXDB_HOST)"


def test_influxdb_url_wins_over_influxdb_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_HOST", "old-host")
    monkeypatch.setenv("INFLUXDB_URL", "http://new-host:8086")
    resolved = config.resolve()

    assert resolved.settings.influxdb_url == "http://new-host:8086"
    assert resolved.origins["influxdb_url"] == "environment (INFLUXDB_URL)"


@pytest.mark.parametrize(
    "host", ["ftp://influx", "http://:8086", "influx:port", " ", "http://", "influx:", "a b"]
)
def test_a_bad_influxdb_host_is_a_config_error(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("INFLUXDB_HOST", host)
    # The error names the variable the user set, not the field's main name.
    with pytest.raises(ConfigError, match=r"^INFLUXDB_HOST: "):
        config.load()


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("INFLUXDB_ADMIN_TOKEN", "influxdb_admin_token"),
        ("GRAFANA_PASSWORD", "grafana_password"),
        ("GRAFANA_API_TOKEN", "grafana_api_token"),
        ("SFTPGO_PASSWORD", "sftpgo_password"),
        ("SFTPGO_API_KEY", "sftpgo_api_key"),
    ],
)
def test_secrets_are_secret_and_masked(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
) -> None:
    secret = f"s3cr3t-{variable.lower()}-value"
    monkeypatch.setenv(variable, secret)
    settings = config.load()
    value = getattr(settings, field)

    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == secret
    assert secret not in repr(settings)
    assert secret not in str(settings)
    shown = config.masked(settings)
    assert shown[field] == "****"
    assert secret not in "".join(shown.values())
    assert config.resolve().origins[field] == f"environment ({variable})"


def test_masked_tells_unset_and_empty_secrets_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_PASSWORD", "")
    shown = config.masked(config.load())

    assert shown["grafana_password"] == "(empty)"
    assert shown["influxdb_admin_token"] == "(unset)"
    assert shown["influxdb_org"] == "powerview"


@pytest.mark.parametrize(
    ("given", "level"),
    [("debug", "DEBUG"), ("Info", "INFO"), (" warning ", "WARNING"), ("CRITICAL", "CRITICAL")],
)
def test_log_level_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    monkeypatch.setenv("TSV_LOG_LEVEL", given)
    assert config.load().log_level == level


def test_a_bad_log_level_is_a_config_error_naming_tsv_log_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TSV_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError) as caught:
        config.load()

    message = str(caught.value)
    assert message.startswith("TSV_LOG_LEVEL: ")
    assert "chatty" in message
    assert "\n" not in message


# -- malformed values ----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POWERVIEW_INFLUXD_PORT", "abc"),
        ("POWERVIEW_INFLUXD_PORT", "70000"),
        ("POWERVIEW_INFLUXDB_TIMEOUT_S", "-1"),
        ("POWERVIEW_WRITE_BATCH_SIZE", "0"),
        ("POWERVIEW_TENANCY", "company"),
        ("POWERVIEW_SFTP_SERVER", "vsftpd"),
        ("SFTPGO_URL", "sftpgo.example:8080"),
        ("POWERVIEW_SFTPGO_HOOK", "deploy/on-upload.sh"),
        ("POWERVIEW_HEADERLESS_TIMEZONE", "Mars/Olympus"),
        ("POWERVIEW_HEADERLESS_TIMEZONE", "Europe"),  # a folder of the tz database
        ("POWERVIEW_HEADERLESS_TIMEZONE", "../../etc/passwd"),
        ("POWERVIEW_EARLIEST_VALID_TIME", "yesterday"),
        ("POWERVIEW_EARLIEST_VALID_TIME", "2021-13-01"),
        ("POWERVIEW_EARLIEST_VALID_TIME", "1960-01-01T00:00:00Z"),
        ("GRAFANA_URL", "grafana.example:3000"),
        ("GRAFANA_URL", "ftp://grafana.example"),
        ("GRAFANA_URL", "http://grafana.example:99999"),
        ("POWERVIEW_GRAFANA_INFLUXDB_URL", "http://"),
        ("POWERVIEW_SCAN_INTERVAL_S", "nan"),
        ("POWERVIEW_EXPECTED_CADENCE_H", "inf"),
        ("POWERVIEW_SETTLE_S", "-0.5"),
        ("POWERVIEW_METRICS_PORT", "65536"),
        ("POWERVIEW_METRICS_ADDRESS", "0.0.0.0:9464"),
        ("POWERVIEW_METRICS_ADDRESS", "http://localhost"),
    ],
)
def test_a_malformed_value_is_a_one_line_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        config.load()

    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert value in message  # the bad value itself, to compare with what was meant
    assert "\n" not in message
    # The cause is kept for `--traceback`; the one-line message is all a user sees.
    assert isinstance(caught.value.__cause__, ValidationError)


@pytest.mark.parametrize("variable", ["POWERVIEW_ALERT_WEBHOOK_URL", "POWERVIEW_HEARTBEAT_URL"])
def test_a_bad_secret_url_is_named_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "hooks.example/T0K3N-s3cr3t")
    with pytest.raises(ConfigError) as caught:
        config.load()

    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("POWERVIEW_HEADERLESS_TIMEZONE", "Europe/Paris", "headerless_timezone", "Europe/Paris"),
        ("POWERVIEW_HEADERLESS_TIMEZONE", "utc", "headerless_timezone", "UTC"),
        ("POWERVIEW_HEADERLESS_TIMEZONE", " America/New_York ", "headerless_timezone",
         "America/New_York"),
        ("POWERVIEW_EARLIEST_VALID_TIME", "2022-06-01", "earliest_valid_time", "2022-06-01"),
        ("POWERVIEW_EARLIEST_VALID_TIME", "2022-06-01T00:00:00+02:00", "earliest_valid_time",
         "2022-06-01T00:00:00+02:00"),
        ("GRAFANA_URL", "https://grafana.example/sub/", "grafana_url",
         "https://grafana.example/sub/"),
        ("GRAFANA_URL", "", "grafana_url", None),  # empty: unset, as before
        ("POWERVIEW_METRICS_ADDRESS", "192.0.2.7", "metrics_address", "192.0.2.7"),
        ("POWERVIEW_METRICS_ADDRESS", "metrics.local", "metrics_address", "metrics.local"),
        ("POWERVIEW_METRICS_ADDRESS", "[::1]", "metrics_address", "::1"),
        ("POWERVIEW_GRAFANA_INFLUXDB_URL", "http://[::1]:8086", "grafana_influxdb_url",
         "http://[::1]:8086"),
    ],
)  # fmt: skip
def test_good_values_are_accepted_and_normalised(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(config.load(), field) == expected


def test_a_secret_url_is_kept_secret_and_an_empty_one_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERVIEW_ALERT_WEBHOOK_URL", "https://ntfy.example/topic-s3cr3t")
    monkeypatch.setenv("POWERVIEW_HEARTBEAT_URL", "")
    settings = config.load()

    assert settings.alert_webhook_url is not None
    assert settings.alert_webhook_url.get_secret_value() == "https://ntfy.example/topic-s3cr3t"
    assert settings.heartbeat_url is None


def test_a_malformed_value_in_the_env_file_names_the_variable() -> None:
    write_env(Path(".env"), POWERVIEW_INFLUXD_PORT="eighty")
    with pytest.raises(ConfigError, match=r"^POWERVIEW_INFLUXD_PORT: "):
        config.load()


def test_two_malformed_values_are_both_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERVIEW_INFLUXD_PORT", "abc")
    monkeypatch.setenv("TSV_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as caught:
        config.load()

    message = str(caught.value)
    assert "POWERVIEW_INFLUXD_PORT" in message
    assert "TSV_LOG_LEVEL" in message
    assert "\n" not in message


# -- precedence and origins ----------------------------------------------------


def test_precedence_command_line_environment_env_file_stack_env_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    stack_env = write_env(
        state / "stack.env",
        INFLUXDB_ORG="from-stack",
        TSV_META_BUCKET="stack_meta",
        GRAFANA_USERNAME="stack-user",
        INFLUXDB_ADMIN_TOKEN="stack-token",
    )
    write_env(
        Path(".env"),
        INFLUXDB_ORG="from-dotenv",
        TSV_META_BUCKET="dotenv_meta",
        GRAFANA_USERNAME="dotenv-user",
    )
    monkeypatch.setenv("POWERVIEW_STATE_DIR", str(state))
    monkeypatch.setenv("INFLUXDB_ORG", "from-environment")
    monkeypatch.setenv("TSV_META_BUCKET", "environment_meta")

    resolved = config.resolve(influxdb_org="from-command-line")
    settings, origins = resolved.settings, resolved.origins

    assert settings.influxdb_org == "from-command-line"
    assert origins["influxdb_org"] == "command line"
    assert settings.meta_bucket == "environment_meta"
    assert origins["meta_bucket"] == "environment (TSV_META_BUCKET)"
    assert settings.grafana_username == "dotenv-user"
    assert origins["grafana_username"] == "env file .env (GRAFANA_USERNAME)"
    assert settings.influxdb_admin_token is not None
    assert settings.influxdb_admin_token.get_secret_value() == "stack-token"
    assert origins["influxdb_admin_token"] == f"stack env file {stack_env} (INFLUXDB_ADMIN_TOKEN)"
    assert settings.state_dir == state
    assert origins["state_dir"] == "environment (POWERVIEW_STATE_DIR)"
    assert settings.grafana_url is None
    assert origins["grafana_url"] == "default"

    # load() gives the same values as resolve()
    assert config.load(influxdb_org="from-command-line") == settings


def test_unset_command_line_values_fall_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUXDB_ORG", "from-environment")
    resolved = config.resolve(influxdb_org=None, state_dir=None)

    assert resolved.settings.influxdb_org == "from-environment"
    assert resolved.origins["influxdb_org"] == "environment (INFLUXDB_ORG)"
    assert resolved.origins["state_dir"] == "default"


def test_env_file_named_by_powerview_env_file_replaces_dot_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_env(Path(".env"), INFLUXDB_ORG="from-dotenv", GRAFANA_URL="http://dotenv:3000")
    other = write_env(tmp_path / "conf" / "powerview.env", INFLUXDB_ORG="from-other")
    monkeypatch.setenv("POWERVIEW_ENV_FILE", str(other))
    resolved = config.resolve()

    assert resolved.settings.influxdb_org == "from-other"
    assert resolved.origins["influxdb_org"] == f"env file {other} (INFLUXDB_ORG)"
    assert resolved.settings.grafana_url is None  # ./.env is not read at all


def test_dot_env_host_reports_influxdb_host() -> None:
    write_env(Path(".env"), INFLUXDB_HOST="influx:9000")
    resolved = config.resolve()

    assert resolved.settings.influxdb_url == "http://influx:9000"
    assert resolved.origins["influxdb_url"] == "env file .env (INFLUXDB_HOST)"


def test_stack_env_is_found_in_the_default_state_dir() -> None:
    stack_env = write_env(Path(".powerview/stack.env"), INFLUXDB_URL="http://127.0.0.1:18086")
    resolved = config.resolve()

    assert resolved.settings.influxdb_url == "http://127.0.0.1:18086"
    assert resolved.origins["influxdb_url"] == f"stack env file {stack_env} (INFLUXDB_URL)"


def test_stack_env_is_found_in_the_state_dir_named_by_dot_env(tmp_path: Path) -> None:
    state = tmp_path / "elsewhere"
    stack_env = write_env(state / "stack.env", INFLUXDB_ORG="from-stack")
    write_env(Path(".powerview/stack.env"), INFLUXDB_ORG="from-default-stack")
    write_env(Path(".env"), POWERVIEW_STATE_DIR=str(state))
    resolved = config.resolve()

    assert resolved.settings.state_dir == state
    assert resolved.settings.influxdb_org == "from-stack"
    assert resolved.origins["influxdb_org"] == f"stack env file {stack_env} (INFLUXDB_ORG)"


def test_stack_env_is_found_in_the_state_dir_given_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`powerview stack status --state-dir X` must read X/stack.env, not another stack's."""
    state = tmp_path / "given"
    stack_env = write_env(state / "stack.env", POWERVIEW_INFLUXD_PORT="18087")
    write_env(tmp_path / "env-state" / "stack.env", POWERVIEW_INFLUXD_PORT="18088")
    monkeypatch.setenv("POWERVIEW_STATE_DIR", str(tmp_path / "env-state"))
    resolved = config.resolve(state_dir=state)

    assert resolved.settings.state_dir == state
    assert resolved.origins["state_dir"] == "command line"
    assert resolved.settings.influxd_port == 18087
    assert (
        resolved.origins["influxd_port"] == f"stack env file {stack_env} (POWERVIEW_INFLUXD_PORT)"
    )


def test_the_environment_overrides_the_stack_env(monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(Path(".powerview/stack.env"), INFLUXDB_ADMIN_TOKEN="stack-token")
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", "env-token")
    resolved = config.resolve()

    assert resolved.settings.influxdb_admin_token is not None
    assert resolved.settings.influxdb_admin_token.get_secret_value() == "env-token"
    assert resolved.origins["influxdb_admin_token"] == "environment (INFLUXDB_ADMIN_TOKEN)"


def test_settings_are_frozen() -> None:
    settings = config.load()
    with pytest.raises(ValueError, match="frozen"):
        settings.influxdb_org = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "given", "expected"),
    [
        ("http://127.0.0.1:8086", None, 0),
        ("http://localhost:8086", None, 0),
        ("http://[::1]:8086", None, 0),
        ("https://influx.example.org", None, 1),
        ("http://127.0.0.1:8086", "6", 6),
        ("https://influx.example.org", "0", 0),
    ],
)
def test_gzip_is_off_on_loopback_unless_set(
    monkeypatch: pytest.MonkeyPatch, url: str, given: str | None, expected: int
) -> None:
    monkeypatch.setenv("INFLUXDB_URL", url)
    if given is not None:
        monkeypatch.setenv("POWERVIEW_INFLUXDB_GZIP_LEVEL", given)
    assert config.load().effective_gzip_level == expected


def test_sftpgo_url_is_read_under_both_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERVIEW_SFTPGO_URL", "http://127.0.0.1:8080/")
    assert config.load().sftpgo_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("SFTPGO_URL", "https://sftp.example")
    assert config.load().sftpgo_url == "https://sftp.example"
    assert config.load().sftp_server == "none"  # nothing managed unless asked
