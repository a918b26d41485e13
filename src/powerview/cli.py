"""The `powerview` command. Commands return an ExitStatus; only `main` exits."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from powerview import settings as config
from powerview import stack
from powerview.exceptions import ConfigError, PowerViewError
from powerview.exit_status import ExitStatus

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _settings(**overrides: Any) -> config.Settings:
    settings = config.load(**overrides)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="powerview")
def app() -> None:
    """PowerView: power-meter exports to live, multi-tenant dashboards.

    Exit status: 0 done, 1 some files rejected, 2 usage, configuration or
    infrastructure error (add --traceback for details), 130 interrupted.
    """


@app.command("config")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def show_config(json_output: bool) -> ExitStatus:
    """Print the resolved settings (secrets masked) and where each came from."""
    resolved = config.resolve()
    shown = config.masked(resolved.settings)
    rows = {
        name: {"variable": config.variable_names(name)[0], "value": value,
               "origin": resolved.origins[name]}
        for name, value in shown.items()
    }  # fmt: skip
    if json_output:
        out.print_json(json.dumps(rows))
        return ExitStatus.OK
    table = Table("variable", "value", "from", box=None)
    for row in rows.values():
        table.add_row(row["variable"], row["value"], row["origin"])
    out.print(table)
    return ExitStatus.OK


@app.group("stack", context_settings=CONTEXT)
def stack_group() -> None:
    """The local InfluxDB for trying PowerView out and for the tests."""


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State folder [env: POWERVIEW_STATE_DIR; default: .powerview].",
)


@stack_group.command("install")
def stack_install() -> ExitStatus:
    """Find influxd, or build the pinned version once into the user cache."""
    settings = _settings()
    out.print(f"influxd: {stack.install_influxd(settings.influxd_binary)}")
    return ExitStatus.OK


@stack_group.command("up")
@state_dir_option
def stack_up(state_dir: Path | None) -> ExitStatus:
    """Start the local InfluxDB (onboarding it on first start); no-op if it runs."""
    settings = _settings(state_dir=state_dir)
    state = stack.stack_up(
        settings.state_dir,
        settings.influxd_port,
        org=settings.influxdb_org,
        bucket=settings.meta_bucket,
        binary=settings.influxd_binary,
    )
    verb = "started" if state.started else "already running"
    health = "healthy" if state.healthy else "NOT healthy"
    out.print(f"InfluxDB {verb} at {state.url} (pid {state.pid}), {health}")
    if state.onboarded:
        out.print(f"  onboarded: org {settings.influxdb_org!r}, bucket {settings.meta_bucket!r}")
    out.print(f"  data:      {state.data_dir}")
    out.print(f"  log:       {state.log_file}")
    out.print(f"  settings:  {state.env_file} (mode 0600, read by every powerview command)")
    return ExitStatus.OK if state.healthy else ExitStatus.ERROR


@stack_group.command("down")
@state_dir_option
def stack_down(state_dir: Path | None) -> ExitStatus:
    """Stop the local InfluxDB; its data is kept."""
    settings = _settings(state_dir=state_dir)
    stopped = stack.stack_down(settings.state_dir, settings.influxd_port)
    out.print("InfluxDB stopped; data kept" if stopped else "InfluxDB was not running")
    return ExitStatus.OK


@stack_group.command("status")
@state_dir_option
def stack_status(state_dir: Path | None) -> ExitStatus:
    """Say whether the local InfluxDB runs and where its files are."""
    settings = _settings(state_dir=state_dir)
    state = stack.stack_status(settings.state_dir, settings.influxd_port, settings.influxd_binary)
    if state.pid is None:
        out.print(f"InfluxDB is not running (data: {state.data_dir})")
    else:
        health = "healthy" if state.healthy else "NOT healthy"
        out.print(f"InfluxDB running at {state.url} (pid {state.pid}), {health}")
    out.print(f"  binary:    {state.binary or 'not installed (powerview stack install)'}")
    out.print(f"  log:       {state.log_file}")
    out.print(f"  settings:  {state.env_file}")
    return ExitStatus.OK if state.pid is None or state.healthy else ExitStatus.ERROR


def main() -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:]))


def run(argv: list[str]) -> int:
    """Run one command; map each error kind to a status and one line on stderr."""
    traceback = "--traceback" in argv
    args = [a for a in argv if a != "--traceback"]
    try:
        result = app.main(args=args, prog_name="powerview", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitStatus.ERROR
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("powerview: interrupted")
        return ExitStatus.INTERRUPTED
    except PowerViewError as exc:
        if traceback:
            raise
        kind = "configuration error" if isinstance(exc, ConfigError) else "error"
        err.print(f"powerview: {kind}: {exc}", markup=False)
        return ExitStatus.ERROR
    return int(result) if isinstance(result, int) else ExitStatus.OK
