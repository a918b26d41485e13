"""Configuration from the environment and `.env` files.

The variable names of the original deployment (`INFLUXDB_URL`, `TSV_REPORT_DIR`,
...) keep working unchanged; settings PowerView added are named `POWERVIEW_*`.
Precedence, highest first: values given on the command line, the process
environment, the `.env` file (in the working folder, or `POWERVIEW_ENV_FILE`),
the local stack's env file written by `powerview stack up`, the defaults.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from powerview.exceptions import ConfigError

DEFAULT_STATE_DIR = Path(".powerview")
STACK_ENV_NAME = "stack.env"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"  # a name or an IPv4 address
    r"|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*"  # an IPv6 address (brackets already removed)
)


def _http_url(value: str) -> str:
    """`value` if it is an http(s) URL with a valid host (and port), else ValueError."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{value!r} is not an http(s) URL with a host name")
    return value


def _env(*names: str) -> Any:
    """Accept each of `names` as the variable for a field; the first is the main one."""
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every setting PowerView reads, with the variable names that set it."""

    # allow_inf_nan: "nan" or "inf" would pass every bound (`gt=0`, `ge=0`) unnoticed.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, frozen=True, allow_inf_nan=False
    )

    influxdb_url: str = Field(
        "http://127.0.0.1:8086", validation_alias=_env("INFLUXDB_URL", "INFLUXDB_HOST")
    )
    influxdb_org: str = Field("powerview", validation_alias=_env("INFLUXDB_ORG"))
    influxdb_admin_token: SecretStr | None = Field(
        None, validation_alias=_env("INFLUXDB_ADMIN_TOKEN")
    )
    influxdb_timeout_s: float = Field(
        30.0, gt=0, validation_alias=_env("POWERVIEW_INFLUXDB_TIMEOUT_S")
    )
    grafana_url: str | None = Field(None, validation_alias=_env("GRAFANA_URL"))
    grafana_username: str | None = Field(None, validation_alias=_env("GRAFANA_USERNAME"))
    grafana_password: SecretStr | None = Field(None, validation_alias=_env("GRAFANA_PASSWORD"))
    grafana_api_token: SecretStr | None = Field(None, validation_alias=_env("GRAFANA_API_TOKEN"))
    grafana_datasource_type: str = Field(
        "influxdb-adecwatts-datasource",
        validation_alias=_env("POWERVIEW_GRAFANA_DATASOURCE_TYPE"),
    )
    grafana_influxdb_url: str | None = Field(
        None, validation_alias=_env("POWERVIEW_GRAFANA_INFLUXDB_URL")
    )
    # An operator's own copy of the playbooks, module and templates; unset: the packaged one.
    grafana_automation_dir: Path | None = Field(
        None, validation_alias=_env("POWERVIEW_GRAFANA_AUTOMATION_DIR")
    )
    # -- SFTP accounts: which server `tenant create` manages, and SFTPGo's REST API
    sftp_server: Literal["sftpgo", "openssh", "none"] = Field(
        "none", validation_alias=_env("POWERVIEW_SFTP_SERVER")
    )
    sftpgo_url: str | None = Field(
        None, validation_alias=_env("SFTPGO_URL", "POWERVIEW_SFTPGO_URL")
    )
    sftpgo_username: str | None = Field(
        None, validation_alias=_env("SFTPGO_USERNAME", "POWERVIEW_SFTPGO_USERNAME")
    )
    sftpgo_password: SecretStr | None = Field(
        None, validation_alias=_env("SFTPGO_PASSWORD", "POWERVIEW_SFTPGO_PASSWORD")
    )
    sftpgo_api_key: SecretStr | None = Field(
        None, validation_alias=_env("SFTPGO_API_KEY", "POWERVIEW_SFTPGO_API_KEY")
    )
    sftpgo_hook: str = Field(
        "/opt/powerview/deploy/on-upload.sh", validation_alias=_env("POWERVIEW_SFTPGO_HOOK")
    )
    sftpgo_hook_env_file: str | None = Field(
        None, validation_alias=_env("POWERVIEW_SFTPGO_HOOK_ENV_FILE")
    )
    # -- OpenSSH accounts (provision/openssh.py): where sshd finds each company's chroot
    # and keys (deploy/sshd_config.powerview names the same paths and group)
    upload_group: str = Field("powerview-upload", validation_alias=_env("POWERVIEW_UPLOAD_GROUP"))
    chroot_base: Path = Field(
        Path("/srv/powerview/chroot"), validation_alias=_env("POWERVIEW_CHROOT_BASE")
    )
    authorized_keys_dir: Path = Field(
        Path("/etc/ssh/authorized_keys"), validation_alias=_env("POWERVIEW_AUTHORIZED_KEYS_DIR")
    )
    fstab: Path = Field(Path("/etc/fstab"), validation_alias=_env("POWERVIEW_FSTAB"))
    tenancy: Literal["org", "team"] = Field("org", validation_alias=_env("POWERVIEW_TENANCY"))
    meta_bucket: str = Field("powerview_meta", validation_alias=_env("TSV_META_BUCKET"))
    report_dir: Path | None = Field(None, validation_alias=_env("TSV_REPORT_DIR"))
    log_level: str = Field("INFO", validation_alias=_env("TSV_LOG_LEVEL"))
    data_root: Path = Field(Path("/srv/sftpgo/data"), validation_alias=_env("POWERVIEW_DATA_ROOT"))
    state_dir: Path = Field(DEFAULT_STATE_DIR, validation_alias=_env("POWERVIEW_STATE_DIR"))
    influxd_binary: Path | None = Field(None, validation_alias=_env("POWERVIEW_INFLUXD"))
    influxd_port: int = Field(8086, ge=1, le=65535, validation_alias=_env("POWERVIEW_INFLUXD_PORT"))
    influxdb_retries: int = Field(
        4, ge=0, le=20, validation_alias=_env("POWERVIEW_INFLUXDB_RETRIES")
    )
    influxdb_gzip_level: int | None = Field(
        None, ge=0, le=9, validation_alias=_env("POWERVIEW_INFLUXDB_GZIP_LEVEL")
    )
    influxdb_connections: int = Field(
        1, ge=1, le=16, validation_alias=_env("POWERVIEW_INFLUXDB_CONNECTIONS")
    )
    write_batch_size: int = Field(
        5000, ge=1, le=100_000, validation_alias=_env("POWERVIEW_WRITE_BATCH_SIZE")
    )
    earliest_valid_time: str = Field(
        "2021-01-01T00:00:00Z", validation_alias=_env("POWERVIEW_EARLIEST_VALID_TIME")
    )
    max_future_skew_s: int = Field(
        86_400, ge=0, validation_alias=_env("POWERVIEW_MAX_FUTURE_SKEW_S")
    )
    worker_concurrency: int = Field(
        2, ge=1, le=64, validation_alias=_env("POWERVIEW_WORKER_CONCURRENCY")
    )
    scan_interval_s: float = Field(300.0, ge=0, validation_alias=_env("POWERVIEW_SCAN_INTERVAL_S"))
    # Done queue rows serve `powerview queue --all` and debugging a recent upload: a
    # week covers a long weekend's questions. Reports are what a client's "my file
    # is missing" is answered from: 90 days covers a quarter's review, and the meta
    # bucket keeps every file's summary beyond. 0 keeps them forever.
    queue_retention_days: float = Field(
        7.0, ge=0, validation_alias=_env("POWERVIEW_QUEUE_RETENTION_DAYS")
    )
    report_retention_days: float = Field(
        90.0, ge=0, validation_alias=_env("POWERVIEW_REPORT_RETENTION_DAYS")
    )
    settle_s: float = Field(1.0, ge=0, validation_alias=_env("POWERVIEW_SETTLE_S"))
    # A block file without END_DATA is an upload cut short that FileZilla or
    # `sftp reput` may resume under the same name: it waits this long after its
    # last change before going to error/ (the original system's name and default).
    incomplete_grace_s: float = Field(600.0, ge=0, validation_alias=_env("TSV_INCOMPLETE_GRACE_S"))
    user_company_map: str = Field("", validation_alias=_env("POWERVIEW_USER_COMPANY_MAP"))
    headerless_timezone: str = Field("UTC", validation_alias=_env("POWERVIEW_HEADERLESS_TIMEZONE"))
    # The campaign report's calendar days, day/night hours and weekends (`report --tz`).
    report_timezone: str = Field("UTC", validation_alias=_env("POWERVIEW_REPORT_TIMEZONE"))
    # -- limits on what one uploaded file may cost (issue 10), enforced while reading.
    # The widest real export has 30 channels and 279-byte rows; its JSON header is
    # 167 bytes (tests/samples/README.md). A row of 1024 channels with the longest
    # value the parser keeps (sign + 15.15 digits) is about 33 KiB, under the line
    # limit; a year of the widest device at one row a minute is 147 MB, under the
    # file limit. The worker's pool processes get an address-space limit.
    max_line_bytes: int = Field(
        64 * 1024, ge=1024, le=64 * 1024**2, validation_alias=_env("POWERVIEW_MAX_LINE_BYTES")
    )
    max_header_bytes: int = Field(
        1024**2, ge=1024, le=256 * 1024**2, validation_alias=_env("POWERVIEW_MAX_HEADER_BYTES")
    )
    max_columns: int = Field(1024, ge=1, le=100_000, validation_alias=_env("POWERVIEW_MAX_COLUMNS"))
    max_file_bytes: int = Field(1024**3, ge=1024, validation_alias=_env("POWERVIEW_MAX_FILE_BYTES"))
    worker_memory_limit_mb: int = Field(
        1024, ge=0, validation_alias=_env("POWERVIEW_WORKER_MEMORY_LIMIT_MB")
    )
    # -- operations: `powerview health`, metrics, alerts (see health.py, metrics.py, alerts.py)
    expected_cadence_h: float = Field(
        26.0, gt=0, validation_alias=_env("POWERVIEW_EXPECTED_CADENCE_H")
    )
    freshness_window_d: float = Field(
        14.0, gt=0, validation_alias=_env("POWERVIEW_FRESHNESS_WINDOW_D")
    )
    queue_max_wait_s: float = Field(
        900.0, gt=0, validation_alias=_env("POWERVIEW_QUEUE_MAX_WAIT_S")
    )
    health_expect: str = Field("worker", validation_alias=_env("POWERVIEW_HEALTH_EXPECT"))
    heartbeat_max_age_s: float = Field(
        120.0, gt=0, validation_alias=_env("POWERVIEW_HEARTBEAT_MAX_AGE_S")
    )
    # A worker run from cron (`worker --until-idle`) beats only while it runs: one
    # that finished cleanly is fine for this long, a few of the cron's periods.
    worker_run_max_age_s: float = Field(
        900.0, gt=0, validation_alias=_env("POWERVIEW_WORKER_RUN_MAX_AGE_S")
    )
    heartbeat_url: SecretStr | None = Field(None, validation_alias=_env("POWERVIEW_HEARTBEAT_URL"))
    metrics_port: int = Field(9464, ge=0, le=65535, validation_alias=_env("POWERVIEW_METRICS_PORT"))
    metrics_address: str = Field("127.0.0.1", validation_alias=_env("POWERVIEW_METRICS_ADDRESS"))
    alert_webhook_url: SecretStr | None = Field(
        None, validation_alias=_env("POWERVIEW_ALERT_WEBHOOK_URL")
    )
    alert_format: Literal["json", "ntfy", "slack"] = Field(
        "json", validation_alias=_env("POWERVIEW_ALERT_FORMAT")
    )
    alert_quiet_period_s: float = Field(
        21_600.0, ge=0, validation_alias=_env("POWERVIEW_ALERT_QUIET_PERIOD_S")
    )
    # -- hygiene: reserved names, the state folder's mode (see layout.py, private_files.py)
    reserved_names: str = Field("", validation_alias=_env("POWERVIEW_RESERVED_NAMES"))

    @property
    def reserved_company_names(self) -> frozenset[str]:
        """Names no company may take, beyond layout's built-in ones."""
        extra = {name.strip() for name in self.reserved_names.split(",") if name.strip()}
        return frozenset({self.meta_bucket, *extra})

    # -- downsampled history (see provision/downsample.py): InfluxDB durations, `0` = forever
    retention_raw: str = Field("0", validation_alias=_env("POWERVIEW_RETENTION_RAW"))
    retention_1h: str = Field("0", validation_alias=_env("POWERVIEW_RETENTION_1H"))
    retention_1d: str = Field("0", validation_alias=_env("POWERVIEW_RETENTION_1D"))
    retention_1w: str = Field("0", validation_alias=_env("POWERVIEW_RETENTION_1W"))
    downsample_lookback: str = Field("7d", validation_alias=_env("POWERVIEW_DOWNSAMPLE_LOOKBACK"))

    @field_validator("retention_raw", "retention_1h", "retention_1d", "retention_1w")
    @classmethod
    def _retention(cls, value: str) -> str:
        seconds = duration_seconds(value)
        if 0 < seconds < 3600:
            raise ValueError("InfluxDB keeps data at least 1h (or 0: forever)")
        return value.strip()

    @field_validator("downsample_lookback")
    @classmethod
    def _lookback(cls, value: str) -> str:
        if duration_seconds(value) < 3600:
            raise ValueError("must be at least 1h")
        return value.strip()

    @field_validator("health_expect")
    @classmethod
    def _known_processes(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in ("worker", "watcher")]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: expected a list of worker, watcher")
        return ",".join(names)

    @field_validator("influxdb_url")
    @classmethod
    def _normalise_influx_url(cls, value: str) -> str:
        """Accept the original `INFLUXDB_HOST` forms: `host`, `host:port` or a URL."""
        value = value.strip().rstrip("/")
        if not value:
            raise ValueError("must not be empty")
        if "://" not in value:
            value = f"http://{value}"
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not _HOSTNAME.fullmatch(host):
            raise ValueError(f"{value!r} is not an http(s) URL with a host name")
        if parts.netloc.endswith(":") or parts.query or parts.fragment:
            raise ValueError(f"{value!r} is not an http(s) URL with a host name")
        if port is None:
            value = f"{parts.scheme}://{parts.netloc}:8086{parts.path}"
        return value

    @field_validator("grafana_url", "grafana_influxdb_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host, or unset (empty counts as unset)."""
        if value is None or not value.strip():
            return None
        return _http_url(value.strip())

    @field_validator("heartbeat_url", "alert_webhook_url")
    @classmethod
    def _secret_http_url(cls, value: SecretStr | None) -> SecretStr | None:
        """As `_optional_http_url`; the URL may carry a key, so errors never show it."""
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            _http_url(value.get_secret_value().strip())
        except ValueError:
            raise ValueError("is not an http(s) URL with a host name (value hidden)") from None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("metrics_address")
    @classmethod
    def _host_or_address(cls, value: str) -> str:
        """A host name or an IP address to bind the exporter to."""
        host = value.strip().removeprefix("[").removesuffix("]")
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            if ":" in host or not _HOSTNAME.fullmatch(host):
                raise ValueError(f"{value!r} is not a host name or an IP address") from None
        return host

    @field_validator("headerless_timezone", "report_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        """A zone of the tz database (checked now, not at the first headerless file)."""
        zone = value.strip()
        if zone.upper() in ("UTC", "GMT", "Z"):
            return "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: `Europe` is a folder
            raise ValueError(
                f"{value!r} is not a time zone of the tz database (e.g. UTC, Europe/Paris)"
            ) from None
        return zone

    @field_validator("earliest_valid_time")
    @classmethod
    def _iso_datetime(cls, value: str) -> str:
        """An ISO 8601 date or date and time; without an offset it is read as UTC."""
        text = value.strip()
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an ISO 8601 date and time (e.g. 2021-01-01T00:00:00Z)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        if moment.timestamp() < 0:
            raise ValueError(f"{value!r} is before 1970, the start of epoch time")
        return text

    @field_validator("user_company_map")
    @classmethod
    def _user_map_parses(cls, value: str) -> str:
        from powerview.events import parse_user_map

        parse_user_map(value)
        return value

    @field_validator("sftpgo_url")
    @classmethod
    def _sftpgo_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL with a host name")
        return value

    @field_validator("sftpgo_hook")
    @classmethod
    def _absolute_hook(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path (SFTPGo runs command actions by path)")
        return value

    @field_validator("upload_group")
    @classmethod
    def _group_name(cls, value: str) -> str:
        if re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value) is None:
            raise ValueError(
                f"{value!r} is not a group name (lower-case letters, digits, '_', '-')"
            )
        return value

    @field_validator("chroot_base", "authorized_keys_dir", "fstab")
    @classmethod
    def _absolute_path(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path (sshd and mount read it as written)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level

    @property
    def effective_gzip_level(self) -> int:
        """POWERVIEW_INFLUXDB_GZIP_LEVEL, else 0 for an InfluxDB on this machine, 1 elsewhere.

        Measured in bench/bench_ingest.py: on loopback, gzip costs both sides
        more CPU than it saves (70 % of the raw-write ceiling with level 1, 80 %
        without); over a network the 15x smaller bodies are worth it.
        """
        if self.influxdb_gzip_level is not None:
            return self.influxdb_gzip_level
        host = (urlsplit(self.influxdb_url).hostname or "").lower()
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        return 0 if loopback else 1

    def report_dir_for(self, data_root: Path | None = None) -> Path:
        """`TSV_REPORT_DIR`, or `<data_root>/../logs/reports` as the original did."""
        root = (data_root or self.data_root).resolve()
        return self.report_dir or root.parent / "logs" / "reports"

    @property
    def stack_env_file(self) -> Path:
        """Where `powerview stack up` writes the local InfluxDB's settings (read on load)."""
        return self.state_dir / STACK_ENV_NAME

    @property
    def secrets_dir(self) -> Path:
        """The 0700 folder of token values and one-time passwords: the one place it is named."""
        return self.state_dir.resolve() / "secrets"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return tuple(source for _, source in _sources(settings_cls, init_settings))


_DURATION = re.compile(r"(\d+)([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def duration_seconds(value: str) -> int:
    """`90d`, `12h`, `2w`, `3600` (seconds) or `0` → seconds."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a duration such as 0, 3600, 12h, 90d or 2w")
    return int(match[1]) * _UNIT_SECONDS[match[2]]


@dataclass(frozen=True)
class Resolved:
    """Settings plus, for each field, where its value came from."""

    settings: Settings
    origins: Mapping[str, str]


def _env_files(environ: Mapping[str, str], state_dir: Any = None) -> tuple[Path, Path]:
    """The `.env` file and the stack env file, in that order of precedence.

    The stack env file is in the state folder given on the command line, else
    in the environment's or the `.env` file's `POWERVIEW_STATE_DIR`.
    """
    dotenv = Path(environ.get("POWERVIEW_ENV_FILE", ".env"))
    state = None if state_dir is None else str(state_dir)
    if state is None:
        state = environ.get("POWERVIEW_STATE_DIR")
    if state is None and dotenv.is_file():
        state = dotenv_values(dotenv).get("POWERVIEW_STATE_DIR")
    return dotenv, Path(state or DEFAULT_STATE_DIR) / STACK_ENV_NAME


def _sources(
    settings_cls: type[BaseSettings], init: PydanticBaseSettingsSource
) -> list[tuple[str, PydanticBaseSettingsSource]]:
    given: Mapping[str, Any] = getattr(init, "init_kwargs", {})
    state_dir = given.get("POWERVIEW_STATE_DIR", given.get("state_dir"))
    dotenv, stack_env = _env_files(os.environ, state_dir)
    return [
        ("command line", init),
        ("environment", EnvSettingsSource(settings_cls)),
        (f"env file {dotenv}", DotEnvSettingsSource(settings_cls, env_file=dotenv)),
        (f"stack env file {stack_env}", DotEnvSettingsSource(settings_cls, env_file=stack_env)),
    ]


def _raw_variables(label: str) -> Mapping[str, str | None]:
    """The variables a source read, to name the one that set a field."""
    if label == "environment":
        return os.environ
    if label.startswith(("env file ", "stack env file ")):
        path = Path(label.split(" file ", 1)[1])
        return dotenv_values(path) if path.is_file() else {}
    return {}


def load(**overrides: Any) -> Settings:
    """Build the settings; a bad value is a `ConfigError` naming its variable."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def resolve(**overrides: Any) -> Resolved:
    """Load the settings and tell, for each field, which source set it."""
    settings = load(**overrides)
    given = {key: value for key, value in overrides.items() if value is not None}
    found: dict[str, str] = {}
    for label, source in _sources(Settings, InitSettingsSource(Settings, given)):
        values = source()
        raw = _raw_variables(label)
        for name in Settings.model_fields:
            if name in found or not ({name, variable_names(name)[0]} & values.keys()):
                continue
            variable = _variable_in(name, raw)
            found[name] = f"{label} ({variable})" if variable else label
    origins = {name: found.get(name, "default") for name in Settings.model_fields}
    return Resolved(settings, origins)


def variable_names(field: str) -> list[str]:
    """The environment variables that set `field`, main name first."""
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices)
    return [str(choice) for choice in alias.choices]


def _variable_in(field: str, raw: Mapping[str, Any]) -> str | None:
    lowered = {key.lower() for key in raw}
    return next((n for n in variable_names(field) if n.lower() in lowered), None)


def _describe(exc: ValidationError) -> str:
    """One line per bad setting, naming the variable the user would set."""
    lines = []
    for error in exc.errors():
        field = _field_of(str(error["loc"][0])) if error["loc"] else "?"
        names = variable_names(field) if field in Settings.model_fields else [field]
        # Name the variable the user actually set (INFLUXDB_HOST, not INFLUXDB_URL).
        given = {key.upper() for key in os.environ}
        name = next((n for n in names if n in given), names[0])
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        secret = any(word in field for word in ("token", "password", "api_key")) or (
            field in Settings.model_fields
            and "SecretStr" in str(Settings.model_fields[field].annotation)
        )
        if isinstance(value, str) and not secret and value not in message:
            message = f"{message} (got {value!r})"
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def _field_of(location: str) -> str:
    """The field behind an error location, which may be one of its variable names."""
    if location in Settings.model_fields:
        return location
    for name in Settings.model_fields:
        if location.upper() in variable_names(name):
            return name
    return location


def masked(settings: Settings) -> dict[str, str]:
    """Field values for display: secrets shown as `****` (or unset), URLs without secrets."""
    shown: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown[name] = "****" if value.get_secret_value() else "(empty)"
        else:
            shown[name] = "(unset)" if value is None else mask_url_secrets(str(value))
    return shown


_SECRET_QUERY_KEYS = re.compile(r"token|key|secret|pass|auth|sig|credential", re.IGNORECASE)


_URL_PASSWORD = re.compile(r"(://[^/\s:@]*):[^@\s/]*@")


def mask_passwords_in(text: str) -> str:
    """Free text (a log line, an error) with every `scheme://user:pass@` shown `user:***@`."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def mask_url_secrets(text: str) -> str:
    """`text` with any URL password (`user:***@`) and secret-looking query values masked.

    Text that is not a URL with a scheme comes back unchanged.
    """
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return "****"
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = (
        "&".join(
            f"{key}=***" if _SECRET_QUERY_KEYS.search(key) and sep else f"{key}{sep}{value}"
            for key, sep, value in (pair.partition("=") for pair in parts.query.split("&"))
        )
        if parts.query
        else ""
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
