"""The `powerview` command. Commands return an ExitStatus; only `main` exits."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table

from powerview import deploy, layout, stack
from powerview import settings as config
from powerview.exceptions import ConfigError, FormatError
from powerview.exit_status import ExitStatus, describe
from powerview.plain_text import PlainConsole, VisibleFormatter
from powerview.upload_file import OUTCOME_DIRS

if TYPE_CHECKING:
    from powerview.health import HealthReport
    from powerview.influx import InfluxTarget
    from powerview.report import FileReport, RunReport

# The pipeline's modules (influxdb-client, the parser, rich's progress bar) are
# imported by the commands that use them: `powerview hook`, which SFTPGo runs on
# every upload, then starts in about a third of the time.

# Pipes and CI logs get wide lines rather than rich's default 80 columns.
_WIDTH = None if sys.stdout.isatty() else 200
# Plain text only: names and contents come from clients (see plain_text.py).
out = PlainConsole(highlight=False, soft_wrap=True, width=_WIDTH)
err = PlainConsole(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

log = logging.getLogger("powerview")

# Seconds the hook waits for a locked queue before spooling the event instead.
HOOK_QUEUE_TIMEOUT_S = 5.0

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


Document = TypeVar("Document")

# The one --json option: every command that prints a result takes it.
json_option = click.option(
    "--json", "json_output", is_flag=True, help="Print the result as JSON instead of text."
)


def _jsonable(value: object) -> str:
    """What json.dumps cannot encode itself: times as ISO 8601, paths as text."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def render(document: Document, json_output: bool, as_text: Callable[[Document], None]) -> None:
    """Build the result once, then render it: as JSON, or as text by `as_text`.

    ensure_ascii: a name with undecodable bytes (\\udcxx) stays valid, lossless JSON,
    and no client's control character reaches the terminal raw.
    """
    if json_output:
        out.print_json(json.dumps(document, default=_jsonable), ensure_ascii=True)
    else:
        as_text(document)


def _settings(**overrides: Any) -> config.Settings:
    settings = config.load(**overrides)
    handler = logging.StreamHandler()
    handler.setFormatter(VisibleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    return settings


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="powerview")
def app() -> None:
    """PowerView: power-meter exports to live, multi-tenant dashboards.

    Exit status: 0 done, 1 some files rejected, 2 usage, configuration,
    infrastructure or unexpected error (one line; add --traceback for the
    details), 130 interrupted. `health` uses 0-3, the monitoring-plugin codes.
    """


@app.command("config")
@json_option
def show_config(json_output: bool) -> ExitStatus:
    """Print the resolved settings (secrets masked) and where each came from."""
    resolved = config.resolve()
    shown = config.masked(resolved.settings)
    rows = {
        name: {"variable": config.variable_names(name)[0], "value": value,
               "origin": resolved.origins[name]}
        for name, value in shown.items()
    }  # fmt: skip
    render(rows, json_output, _config_text)
    return ExitStatus.OK


def _config_text(rows: dict[str, dict[str, str]]) -> None:
    table = Table("variable", "value", "from", box=None)
    for row in rows.values():
        table.add_row(row["variable"], row["value"], row["origin"])
    out.print(table)


@app.group("stack", context_settings=CONTEXT)
def stack_group() -> None:
    """The local InfluxDB for trying PowerView out and for the tests."""


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State folder [env: POWERVIEW_STATE_DIR; default: .powerview].",
)


root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Install under this prefix; the installed files name paths under it too (tests).",
)
service_user_option = click.option(
    "--service-user",
    default=deploy.SERVICE_USER,
    show_default=True,
    help="The system user the services run as; its group may read the env file.",
)


@stack_group.command("install")
@click.option(
    "--system",
    is_flag=True,
    help="Install influxd as the systemd service powerview-influxd, start and onboard it, "
    "and write its admin token into /etc/powerview/powerview.env (root).",
)
@root_option
@click.option("--port", type=int, help="Loopback port [env: POWERVIEW_INFLUXD_PORT; 8086].")
@service_user_option
@click.option("--influxdb-user", default="powerview-influxdb", show_default=True,
              help="The system user influxd runs as (--system).")  # fmt: skip
@json_option
def stack_install(
    system: bool,
    root: Path,
    port: int | None,
    service_user: str,
    influxdb_user: str,
    json_output: bool,
) -> ExitStatus:
    """Find influxd, or build the pinned version once into the user cache.

    With --system: the production InfluxDB (idempotent; a second run keeps the token).
    """
    settings = _settings()
    if not system:
        document = {"influxd": stack.install_influxd(settings.influxd_binary)}
        render(document, json_output, lambda doc: out.print(f"influxd: {doc['influxd']}"))
        return ExitStatus.OK
    target = deploy.Target(
        "openssh", root=root, service_user=service_user, influxdb_user=influxdb_user
    )
    done = stack.system_install(
        target,
        port or settings.influxd_port,
        org=settings.influxdb_org,
        bucket=settings.meta_bucket,
        source=settings.influxd_binary,
    )
    render(dataclasses.asdict(done), json_output, _system_install_text)
    return ExitStatus.OK


def _steps_text(steps: list[dict[str, str]]) -> None:
    table = Table("", "what", "detail", box=None)
    for step in steps:
        table.add_row(step["outcome"], step["what"], step["detail"])
    out.print(table)


def _system_install_text(doc: dict[str, Any]) -> None:
    _steps_text(doc["steps"])
    if doc["onboarded"]:
        out.print(f"InfluxDB at {doc['url']} onboarded; admin token written to {doc['env_file']}")
    else:
        out.print(f"InfluxDB at {doc['url']} was onboarded already; token kept in "
                  f"{doc['env_file']}")  # fmt: skip
    out.print(f"started: {doc['started']}")
    for command in doc["next_commands"]:
        out.print(f"next: {command}")


def _stack_document(state: stack.StackState) -> dict[str, Any]:
    return dataclasses.asdict(state)


@stack_group.command("up")
@state_dir_option
@json_option
def stack_up(state_dir: Path | None, json_output: bool) -> ExitStatus:
    """Start the local InfluxDB (onboarding it on first start); no-op if it runs."""
    settings = _settings(state_dir=state_dir)
    state = stack.stack_up(
        settings.state_dir,
        settings.influxd_port,
        org=settings.influxdb_org,
        bucket=settings.meta_bucket,
        env_file=settings.stack_env_file,
        binary=settings.influxd_binary,
    )
    document = {
        **_stack_document(state), "org": settings.influxdb_org, "bucket": settings.meta_bucket
    }  # fmt: skip
    render(document, json_output, _stack_up_text)
    return ExitStatus.OK if state.healthy else ExitStatus.ERROR


def _stack_status_text(doc: dict[str, Any]) -> None:
    if doc["pid"] is None:
        out.print(f"InfluxDB is not running (data: {doc['data_dir']})")
    else:
        health = "healthy" if doc["healthy"] else "NOT healthy"
        out.print(f"InfluxDB running at {doc['url']} (pid {doc['pid']}), {health}")
    out.print(f"  binary:    {doc['binary'] or 'not installed (powerview stack install)'}")
    out.print(f"  log:       {doc['log_file']}")
    out.print(f"  settings:  {doc['env_file']}")


def _stack_up_text(doc: dict[str, Any]) -> None:
    verb = "started" if doc["started"] else "already running"
    health = "healthy" if doc["healthy"] else "NOT healthy"
    out.print(f"InfluxDB {verb} at {doc['url']} (pid {doc['pid']}), {health}")
    if doc["onboarded"]:
        out.print(f"  onboarded: org {doc['org']!r}, bucket {doc['bucket']!r}")
    out.print(f"  data:      {doc['data_dir']}")
    out.print(f"  log:       {doc['log_file']}")
    out.print(f"  settings:  {doc['env_file']} (mode 0600, read by every powerview command)")


@stack_group.command("down")
@state_dir_option
@json_option
def stack_down(state_dir: Path | None, json_output: bool) -> ExitStatus:
    """Stop the local InfluxDB; its data is kept."""
    settings = _settings(state_dir=state_dir)
    stopped = stack.stack_down(settings.state_dir, settings.influxd_port)
    render(
        {"stopped": stopped},
        json_output,
        lambda doc: out.print(
            "InfluxDB stopped; data kept" if doc["stopped"] else "InfluxDB was not running"
        ),
    )
    return ExitStatus.OK


@stack_group.command("status")
@state_dir_option
@json_option
def stack_status(state_dir: Path | None, json_output: bool) -> ExitStatus:
    """Say whether the local InfluxDB runs and where its files are."""
    settings = _settings(state_dir=state_dir)
    state = stack.stack_status(
        settings.state_dir, settings.influxd_port, settings.stack_env_file, settings.influxd_binary
    )
    render(_stack_document(state), json_output, _stack_status_text)
    return ExitStatus.OK if state.pid is None or state.healthy else ExitStatus.ERROR


# -- ingest and parse -------------------------------------------------------


@app.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Root of the data tree [env: POWERVIEW_DATA_ROOT].",
)
@click.option("--dry-run", is_flag=True, help="Parse and report; write and move nothing.")
@json_option
def ingest_command(
    paths: tuple[Path, ...], data_root: Path | None, dry_run: bool, json_output: bool
) -> ExitStatus:
    """Ingest device files (files, device folders or whole data trees) into InfluxDB.

    Each file ends in parsed/ (ingested, perhaps with rows set aside) or error/
    (unusable, reason in the report) beside it; if InfluxDB fails, it stays put.
    Exit status: 0 all ingested, 1 some files rejected, 2 infrastructure error.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from powerview.influx import InfluxTarget, NullWriter
    from powerview.ingest import IngestOptions, ingest_paths, parse_options, write_run
    from powerview.ledger import open_recorder

    settings = _settings()
    root = layout.data_root_for(paths, data_root, settings.data_root).resolve()
    files = [p.resolve() for p in layout.find_files(paths)]
    target = NullWriter() if dry_run else open_target(settings)
    recorder = None
    if isinstance(target, InfluxTarget):
        recorder = open_recorder(settings.state_dir, target.client)
    options = IngestOptions(
        data_root=root,
        parse=parse_options(settings),
        lines_per_write=settings.write_batch_size,
        dry_run=dry_run,
        reserved=settings.reserved_company_names,
        ledger=recorder,
        incomplete_grace_s=settings.incomplete_grace_s,
    )
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[points]:,} points"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=len(files) < 2 or json_output or not err.is_terminal,
    )
    try:
        with progress:
            task = progress.add_task("ingesting", total=len(files), points=0)
            done_points = 0

            def advance(report: FileReport) -> None:
                nonlocal done_points
                done_points += report.nb_points
                progress.update(task, advance=1, points=done_points)

            run = ingest_paths(files, target, options, on_file=advance)
        run.finished_at = dt.datetime.now(dt.UTC)
        report_path = None
        if not dry_run:
            assert isinstance(target, InfluxTarget)
            report_path = write_run(run, target, settings, root)
    finally:
        if isinstance(target, InfluxTarget):
            target.close()
        if recorder is not None:
            recorder.close()
    render(run.to_dict(), json_output, lambda _: render_run(run, report_path))
    if run.count("deferred"):
        return ExitStatus.ERROR
    # Skipped files (not in the data-tree layout) were not ingested either.
    return ExitStatus.REJECTED if run.count("error") or run.count("skipped") else ExitStatus.OK


def render_run(run: RunReport, report_path: Path | None) -> None:
    """A short human summary of a run: totals, then every file that needs a look."""
    totals = run.totals()
    out.print(
        f"{totals['nb_files_total']} files: {totals['nb_files_success']} ingested "
        f"({totals['nb_files_partial']} with rows set aside), "
        f"{totals['nb_files_failed']} rejected, {totals['nb_files_deferred']} deferred, "
        f"{totals['nb_files_skipped']} skipped; {totals['nb_points_total']:,} points "
        f"in {totals['duration_s']:.2f} s" + (" (dry run)" if run.dry_run else "")
    )
    flagged = [f for f in run.files if f.status != "success" or f.partial or f.warnings]
    if flagged:
        table = Table(box=None)
        table.add_column("file", overflow="fold")
        table.add_column("status", no_wrap=True)
        table.add_column("details", overflow="fold")
        for report in flagged[:50]:
            details = report.error or "; ".join(
                [f"{k}={v}" for k, v in report.counts.items() if v and k.startswith("nb_")
                 and k not in ("nb_rows", "nb_valid_rows", "nb_points", "nb_channels")]
                + report.warnings
            )  # fmt: skip
            status = report.status + (" (partial)" if report.partial else "")
            table.add_row(_short(report.path, run.base_folder), status, details)
        out.print(table)
        if len(flagged) > 50:
            out.print(f"... and {len(flagged) - 50} more in the report")
    if run.meta_error:
        err.print(f"run summary not written to the meta bucket: {run.meta_error}", markup=False)
    if report_path is not None:
        out.print(f"report: {report_path}")


def _short(path: str, base: str) -> str:
    return path[len(base) + 1 :] if path.startswith(base + "/") else path


@app.command("parse")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to", "to", type=click.Choice(["lp", "json", "csv"]), default="lp", show_default=True,
    help="Line protocol, JSON lines (one object a row) or CSV (one column a channel).",
)  # fmt: skip
@click.option("--campaign", help="Campaign tag [default: the file's campaign folder].")
def parse_command(file: Path, to: str, campaign: str | None) -> ExitStatus:
    """Print what a device file holds, without any server; counts go to stderr."""
    from powerview.formats import open_device_file
    from powerview.ingest import encode_file, parse_options
    from powerview.report import iso_epoch

    settings = _settings()
    folder = file.resolve().parent
    if folder.name in OUTCOME_DIRS:  # already moved to parsed/ or error/
        folder = folder.parent
    campaign = layout.check_name("campaign", campaign or folder.parent.name)
    try:
        with open_device_file(file, parse_options(settings)) as device_file:
            encoded = encode_file(device_file, campaign)
            write = sys.stdout.write
            fields = [s.channel_id for s in encoded.series]
            csv_out = csv.writer(sys.stdout, lineterminator="\n")
            if to == "csv":
                csv_out.writerow(["time", *fields])
            for batch, lines in encoded:
                if to == "lp":
                    write(lines)
                    continue
                for epoch, values in zip(batch.epochs, batch.rows(), strict=True):
                    when = iso_epoch(epoch)
                    if to == "csv":
                        csv_out.writerow([when, *("" if v is None else v for v in values)])
                    else:
                        record = {
                            f: float(v) for f, v in zip(fields, values, strict=True)
                            if v is not None
                        }  # fmt: skip
                        write(json.dumps({"time": when, "values": record}) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return ExitStatus.OK
    except FormatError as exc:
        err.print(f"powerview: {file}: {exc}", markup=False)
        return ExitStatus.REJECTED
    counts = {k: v for k, v in device_file.counts.as_dict().items() if v}
    err.print(f"{file.name}: {device_file.header.model_tag}, {counts}", markup=False)
    for warning in device_file.warnings:
        err.print(f"warning: {warning}", markup=False)
    return ExitStatus.OK


@app.command("summary")
@click.argument("companies", nargs=-1, required=True)
@json_option
def summary_command(companies: tuple[str, ...], json_output: bool) -> ExitStatus:
    """Show what InfluxDB holds for companies: points, channels, time range per device."""
    from powerview.influx import summarize_bucket

    settings = _settings()
    for company in companies:
        layout.check_name("company", company)
    target = open_target(settings)
    try:
        rows = [
            {
                "bucket": company,
                "campaign": str(row["campaign"]),
                "device": str(row["device_master_sn"]),
                "points": row.get("points", 0),
                "channels": row.get("channels"),
                "first": row.get("first"),
                "last": row.get("last"),
            }
            for company in companies
            for row in summarize_bucket(target.client, company)
        ]
    finally:
        target.close()
    render(rows, json_output, _summary_text)
    return ExitStatus.OK


def _summary_text(rows: list[dict[str, Any]]) -> None:
    columns = ("bucket", "campaign", "device", "points", "channels", "first", "last")
    table = Table(*columns, box=None)
    for row in rows:
        table.add_row(
            row["bucket"],
            row["campaign"],
            row["device"],
            f"{row['points']:,}",
            "" if row["channels"] is None else str(row["channels"]),
            _when(row["first"]),
            _when(row["last"]),
        )
    out.print(table)


# -- campaign report ----------------------------------------------------------


@app.command("report")
@click.argument("company")
@click.argument("campaign")
@click.option("--from", "start", help="Start (ISO 8601) [default: the campaign's first point].")
@click.option("--to", "end", help="End, excluded (ISO 8601) [default: after its last point].")
@click.option(
    "--format", "fmt", type=click.Choice(["html", "pdf", "xlsx", "csv"]), default="html",
    show_default=True, help="Output format (csv: a folder with one file per table).",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(path_type=Path),
    help="Output path [default: <company>-<campaign>.<format>, csv: <company>-<campaign>-csv/].",
)  # fmt: skip
@click.option("--tz", help="Time zone of days and hours [env: POWERVIEW_REPORT_TIMEZONE].")
@click.option("--day-hours", default="6-22", show_default=True, help="Local hours counted as day.")
@click.option(
    "--base-percentile", type=click.IntRange(1, 99), default=10, show_default=True,
    help="Percentile of night-time interval means taken as the base load.",
)  # fmt: skip
@click.option(
    "--voltage-band", default="207-253", show_default=True,
    help="Voltage band in V (230 V +- 10 %); time outside it is reported.",
)  # fmt: skip
@json_option
def report_command(
    company: str,
    campaign: str,
    start: str | None,
    end: str | None,
    fmt: str,
    out: Path | None,
    tz: str | None,
    day_hours: str,
    base_percentile: int,
    voltage_band: str,
    json_output: bool,
) -> ExitStatus:
    """Write a campaign's report: energy, load curve, peak, base load, voltage, completeness.

    Figures are aggregated by InfluxDB; the files they rest on come from the ledger.
    Times without an offset are in the report's time zone.
    """
    from powerview.campaign_report import run
    from powerview.campaign_report.document import as_document
    from powerview.campaign_report.figures import ReportOptions

    settings = _settings()
    zone = tz or settings.report_timezone
    day_start, day_end = run.parse_span(day_hours, "--day-hours")
    options = ReportOptions(
        timezone=zone,
        day_hours=(int(day_start), int(day_end)),
        base_load_percentile=base_percentile,
        voltage_band=run.parse_span(voltage_band, "--voltage-band"),
    )
    outcome = run.make_report(
        settings, company, campaign,
        start=run.parse_moment(start, zone) if start else None,
        end=run.parse_moment(end, zone) if end else None,
        options=options, fmt=fmt, out=out,
    )  # fmt: skip
    document = {
        "file": outcome.path,
        "format": outcome.format,
        "report": as_document(outcome.report),
    }
    render(document, json_output, _report_text)
    return ExitStatus.OK


def _report_text(document: dict[str, Any]) -> None:
    report = document["report"]
    period = report["period"]
    out.print(
        f"{document['format']} report written to {document['file']}: "
        f"{report['company']}/{report['campaign']}, {_when(period['start'])} to "
        f"{_when(period['end'])} ({period['timezone']})",
        markup=False,
    )
    table = Table(
        "device", "completeness", "gaps", "channel", "kWh", "peak kW", "base kW", box=None
    )
    completeness = {row["device"]: row for row in report["completeness"]}
    for row in report["power"]:
        done = completeness[row["device"]]
        table.add_row(
            row["device"],
            f"{done['received_intervals']}/{done['expected_intervals']}",
            str(len(done["gaps"])),
            row["label"],
            f"{row['energy_kwh']:.3f}",
            "" if row["peak_kw"] is None else f"{row['peak_kw']:.3f}",
            "" if row["base_load_kw"] is None else f"{row['base_load_kw']:.3f}",
        )
    out.print(table)


# -- the ingestion ledger --------------------------------------------------

campaign_option = click.option("--campaign", help="Only this campaign.")


@app.command("ledger")
@click.argument("company")
@campaign_option
@json_option
def ledger_command(company: str, campaign: str | None, json_output: bool) -> ExitStatus:
    """List every file ingested for COMPANY: SHA-256, size, points written and verified."""
    from powerview.ledger import Ledger

    settings = _settings()
    _check_ledger_names(company, campaign)
    with Ledger.in_state_dir(settings.state_dir) as ledger:
        rows = [row.to_dict() for row in ledger.rows(company, campaign)]
    render(rows, json_output, _ledger_text)
    return ExitStatus.OK


@app.command("verify")
@click.argument("company")
@campaign_option
@json_option
def verify_command(company: str, campaign: str | None, json_output: bool) -> ExitStatus:
    """Count every ledger entry of COMPANY in InfluxDB again; list the files with points missing.

    For after a restore, a retention change or a manual delete. Exit status:
    0 every file's points are there, 1 some are missing (listed), 2 error.
    """
    from powerview.ingest import write_ledger_summary
    from powerview.ledger import open_recorder, verify

    settings = _settings()
    _check_ledger_names(company, campaign)
    target = open_target(settings)
    try:
        with open_recorder(settings.state_dir, target.client) as recorder:
            found = verify(recorder, company, campaign)
        write_ledger_summary(found.entries, target, settings)
    finally:
        target.close()
    render(found.to_dict(), json_output, _verify_text)
    return ExitStatus.MISSING if found.missing else ExitStatus.OK


def _check_ledger_names(company: str, campaign: str | None) -> None:
    layout.check_name("company", company)
    if campaign is not None:
        layout.check_name("campaign", campaign)


def _ledger_text(rows: list[dict[str, Any]]) -> None:
    columns = ("campaign", "device", "file", "sha256", "bytes", "first", "last", "points", "found")
    table = Table(*columns, "status", box=None)
    for row in rows:
        found = row["points_verified"]
        table.add_row(
            row["campaign"],
            row["device"],
            row["file_name"],
            row["sha256"][:12],
            f"{row['size']:,}",
            row["first_time"] or "",
            row["last_time"] or "",
            f"{row['points_expected']:,}",
            "" if found is None else f"{found:,}",
            row["status"],
        )
    out.print(table)


def _verify_text(document: dict[str, Any]) -> None:
    missing = document["missing"]
    for row in missing:
        out.print(
            f"missing: {row['campaign']}/{row['device_folder']}/{row['file_name']}: "
            f"{row['points_verified']:,} of {row['points_expected']:,} points found "
            f"({row['first_time']} to {row['last_time']})"
        )
    out.print(f"{document['checked']} files checked, {len(missing)} with points missing")


# -- upload events, queue and worker ---------------------------------------


@app.command("hook")
def hook_command() -> ExitStatus:
    """SFTPGo's command hook (common.actions: upload, rename, mkdir).

    Reads the SFTPGO_ACTION* variables, queues an ingest or provisioning job
    when the event calls for one, and returns at once; ignored events are
    logged and exit 0. The worker does the work. When the queue is unusable
    (corrupt, read-only, locked too long) the event goes to the spool the
    worker drains, and the hook still exits 0; if even that fails, 2.
    """
    import sqlite3

    from powerview import events, spool
    from powerview.queue import QUEUE_FILE, JobQueue

    settings = _settings()
    user_map = events.parse_user_map(settings.user_company_map)
    decision = events.decide_sftpgo(os.environ, settings.data_root, user_map)
    action = os.environ.get("SFTPGO_ACTION", "?")
    if decision.ignored or decision.kind is None:
        log.info("hook %s ignored: %s", action, decision.reason)
        return ExitStatus.OK
    source = f"sftpgo:{action}"
    try:
        # Well inside SFTPGo's hook timeout (30 s by default), so a lock held
        # longer still leaves the hook the time to spool the event.
        queue = JobQueue(settings.state_dir / QUEUE_FILE, timeout_s=HOOK_QUEUE_TIMEOUT_S)
        try:
            events.enqueue(queue, decision, source=source)
        finally:
            queue.close()
    except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: a value SQLite refuses
        where = spool.spool_event(
            settings.state_dir, decision.kind, decision.subject, decision.payload, source
        )
        log.warning("hook %s: event not queued (%s); spooled as %s", action, exc, where)
        return ExitStatus.OK
    log.info("hook %s queued %s job for %s", action, decision.kind, decision.subject)
    return ExitStatus.OK


@app.command("watch")
@click.argument(
    "data_root", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
def watch_command(data_root: Path | None) -> ExitStatus:
    """Watch a data tree with inotify (plain OpenSSH deployments) and queue jobs."""
    import signal

    from powerview import events
    from powerview.queue import JobQueue

    settings = _settings()
    root = (data_root or settings.data_root).resolve()
    queue = JobQueue.in_state_dir(settings.state_dir)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def add(decision: events.Decision) -> None:
        if decision.ignored:
            log.debug("ignored: %s", decision.reason)
        elif events.enqueue(queue, decision, source="watch", delay_s=settings.settle_s):
            log.info("queued %s job for %s", decision.kind, decision.subject)

    watcher = events.TreeWatcher(root, add)
    try:
        watcher.start()
        log.info("watching %s", root)
        last_beat = 0.0
        while not stopping:
            watcher.poll(timeout_ms=500)
            if time.monotonic() - last_beat > 10:
                queue.beat("watcher", {"root": str(root), "overflows": watcher.overflows})
                last_beat = time.monotonic()
    finally:
        watcher.close()
        queue.close()
    return ExitStatus.OK


@app.command("worker")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    help="Jobs at once [env: POWERVIEW_WORKER_CONCURRENCY].",
)
@click.option("--until-idle", is_flag=True, help="Exit when no job is left (cron, tests).")
@click.option("--scan-interval", type=float, help="Seconds between reconciliation scans (0: none).")
def worker_command(
    concurrency: int | None, until_idle: bool, scan_interval: float | None
) -> ExitStatus:
    """Run queued jobs: ingestions and provisionings, with retries."""
    from powerview.queue import JobQueue
    from powerview.retention import DAY_S, Retention
    from powerview.worker import Worker, WorkerOptions

    settings = _settings()
    options = WorkerOptions(
        concurrency=concurrency or settings.worker_concurrency,
        scan_interval_s=settings.scan_interval_s if scan_interval is None else scan_interval,
        settle_s=settings.settle_s,
        memory_limit_mb=settings.worker_memory_limit_mb,
        retention=Retention(
            queue_s=settings.queue_retention_days * DAY_S,
            report_s=settings.report_retention_days * DAY_S,
            report_dir=settings.report_dir_for(),
        ),
    )
    queue = JobQueue.in_state_dir(settings.state_dir)
    metrics = None
    if not until_idle:  # a cron run lives too briefly to be scraped
        from powerview.metrics import start_worker_metrics

        metrics = start_worker_metrics(queue.path, settings.metrics_port, settings.metrics_address)
    worker = Worker(queue, settings.data_root.resolve(), options, metrics=metrics)
    worker.install_signal_handlers()
    try:
        done = worker.run(until_idle=until_idle)
    finally:
        queue.close()
        if metrics is not None:
            metrics.close()
    log.info("worker stopped after %d jobs", done)
    return ExitStatus.OK


@app.group("queue", invoke_without_command=True, context_settings=CONTEXT)
@json_option
@click.option("--all", "show_all", is_flag=True, help="Also list finished jobs.")
@click.pass_context
def queue_group(ctx: click.Context, json_output: bool, show_all: bool) -> ExitStatus | None:
    """Show what waits, runs and failed in the job queue."""
    if ctx.invoked_subcommand is not None:
        return None
    from powerview import spool
    from powerview.queue import JobQueue

    settings = _settings()
    spooled = spool.pending(settings.state_dir)  # events the hook could not queue
    queue = JobQueue.in_state_dir(settings.state_dir)
    try:
        states = None if show_all else ("queued", "running", "failed")
        jobs = queue.jobs(states)  # type: ignore[arg-type]
        counts = queue.counts()
        oldest = queue.oldest_waiting_age_s()
    finally:
        queue.close()
    document = {
        "counts": counts,
        "oldest_waiting_s": oldest,
        "jobs": [{**job.__dict__, "subject": job.subject} for job in jobs],
        "spooled": [{**e.__dict__, "path": str(e.path)} for e in spooled],
    }
    render(document, json_output, _queue_text)
    return ExitStatus.OK


def _queue_text(document: dict[str, Any]) -> None:
    from rich.text import Text

    from powerview.upload_file import display

    counts, oldest = document["counts"], document["oldest_waiting_s"]
    spooled, jobs = document["spooled"], document["jobs"]
    age = f", oldest waiting {oldest:.0f} s" if oldest is not None else ""
    in_spool = f", {len(spooled)} spooled" if spooled else ""
    out.print(", ".join(f"{n} {state}" for state, n in counts.items()) + in_spool + age)
    if jobs or spooled:
        table = Table("id", "kind", "state", "tries", "subject", "last error", box=None)
        for event in spooled:
            table.add_row(
                "-", event["kind"] or "?", "spooled", "0",
                # a client's name: plain text
                Text(display(event["subject"] or Path(event["path"]).name)),
                "unreadable, set aside" if event["bad"] else f"waiting {event['age_s']:.0f} s",
            )  # fmt: skip
        for job in jobs:
            table.add_row(
                str(job["id"]), job["kind"], job["state"], str(job["attempts"]),
                job["subject"], job["last_error"] or "",
            )  # fmt: skip
        out.print(table)


@queue_group.command("scan")
@click.argument(
    "data_root", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@json_option
def queue_scan(data_root: Path | None, json_output: bool) -> ExitStatus:
    """Queue every file and campaign folder of the data tree that waits."""
    from powerview import events
    from powerview.queue import JobQueue

    settings = _settings()
    queue = JobQueue.in_state_dir(settings.state_dir)
    added = 0

    def add(decision: events.Decision) -> None:
        nonlocal added
        added += events.enqueue(queue, decision, source="scan")

    try:
        events.scan((data_root or settings.data_root).resolve(), add)
    finally:
        queue.close()
    render({"queued": added}, json_output, lambda doc: out.print(f"{doc['queued']} jobs queued"))
    return ExitStatus.OK


# -- tokens ------------------------------------------------------------------


@app.group("token", context_settings=CONTEXT)
def token_group() -> None:
    """A company's bucket-scoped InfluxDB read token (what Grafana gets)."""


@token_group.command("ensure")
@click.argument("company")
@json_option
def token_ensure(company: str, json_output: bool) -> ExitStatus:
    """Create the read token if missing (or replace one whose value was lost)."""
    from powerview.provision.downsample import SUFFIXES
    from powerview.provision.tokens import ensure_read_token

    settings = _settings()
    layout.check_company(company, settings.reserved_company_names)
    target = open_target(settings)
    try:
        state = ensure_read_token(
            target.client, settings.influxdb_org, company, settings.secrets_dir, SUFFIXES
        )
    finally:
        target.close()
    document = {
        "company": state.company,
        "id": state.authorization_id,
        "created": state.created,
        "token_file": state.token_file,
    }
    render(document, json_output, _token_ensure_text)
    return ExitStatus.OK


def _token_ensure_text(document: dict[str, Any]) -> None:
    verb = "created" if document["created"] else "kept"
    out.print(
        f"token for bucket {document['company']!r} {verb}; value in {document['token_file']}"
        " (mode 0600)"
    )


@token_group.command("revoke")
@click.argument("company")
@json_option
def token_revoke(company: str, json_output: bool) -> ExitStatus:
    """Delete the company's read tokens (its bucket and data stay)."""
    from powerview.provision.tokens import revoke_tokens

    settings = _settings()
    target = open_target(settings)
    try:
        count = revoke_tokens(target.client, settings.influxdb_org, company, settings.secrets_dir)
    finally:
        target.close()
    render(
        {"company": company, "revoked": count},
        json_output,
        lambda doc: out.print(f"{doc['revoked']} token(s) revoked for {doc['company']!r}"),
    )
    return ExitStatus.OK


@token_group.command("list")
@click.argument("company", required=False)
@json_option
def token_list(company: str | None, json_output: bool) -> ExitStatus:
    """List PowerView's read tokens (never their values)."""
    from powerview.provision.tokens import find_tokens

    settings = _settings()
    target = open_target(settings)
    try:
        tokens = find_tokens(target.client, settings.influxdb_org, company)
    finally:
        target.close()
    rows = [
        {
            "id": str(auth.id),
            "description": str(auth.description),
            "status": str(auth.status),
            "permissions": [
                f"{p.action} {p.resource.type}/{p.resource.name or p.resource.id}"
                for p in auth.permissions or []
            ],
        }
        for auth in tokens
    ]
    render(rows, json_output, _token_list_text)
    return ExitStatus.OK


def _token_list_text(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "description", "status", "permissions", box=None)
    for row in rows:
        table.add_row(row["id"], row["description"], row["status"], ", ".join(row["permissions"]))
    out.print(table)


# -- tenants -----------------------------------------------------------------


@app.group("tenant", context_settings=CONTEXT)
def tenant_group() -> None:
    """A company's resources: InfluxDB bucket and read token, Grafana through Ansible."""


def _tenant_text(document: dict[str, Any]) -> None:
    """`tenant create` and `tenant delete` as text: SFTP account, token, Grafana, passwords."""
    verb = "would change" if document["check"] else "changed"
    company = document["company"]
    sftpgo = document["sftpgo"]
    if document["sftp_skipped"]:
        out.print(f"SFTP account: skipped, {document['sftp_skipped']}")
    elif sftpgo is not None:
        if not sftpgo["changes"]:
            out.print("SFTPGo: no change")
        _changes_text("SFTPGo", verb, sftpgo["changes"])
        if sftpgo["password"]:
            # Shown this once: SFTPGo keeps only its hash and PowerView keeps nothing.
            out.print(f"SFTPGo user {company} password: {sftpgo['password']}")
    openssh = document["openssh"]
    if openssh is not None:
        if not openssh["changes"]:
            out.print(f"OpenSSH account {openssh['user']}: no change")
        _changes_text("OpenSSH", verb, openssh["changes"])
    for change in [*document["downsample_changes"], *document["influx_changes"]]:
        out.print(f"InfluxDB {verb}: {change}")
    if document["token_created"]:
        out.print(f"read token for bucket {company!r} created")
    for note in document["notes"]:
        out.print(note)
    grafana = document["grafana"]
    if document["grafana_skipped"]:
        out.print(f"Grafana: skipped, {document['grafana_skipped']}")
    elif grafana is not None:
        if not grafana["changes"]:
            out.print("Grafana: no change")
        _changes_text("Grafana", verb, grafana["changes"])
        for warning in grafana["warnings"]:
            err.print(f"warning: {warning}")
    if document["default_user_password"]:
        # Shown once: taken from disk when the result was built.
        out.print(f"default user user_{company} password: {document['default_user_password']}")


def _changes_text(server: str, verb: str, changes: list[dict[str, Any]]) -> None:
    """One server's changes (SFTPGo, OpenSSH, Grafana), an update's fields below it."""
    from powerview.provision.grafana_ensure import describe_diff

    for change in changes:
        detail = f" ({change['detail']})" if change.get("detail") else ""
        out.print(f"{server} {verb}: {change['action']} {change['resource']}{detail}")
        if change["action"] == "update" and "diff" in change:
            for line in describe_diff(change["diff"]):
                out.print(f"    {line}")


def _public_keys(files: tuple[Path, ...]) -> list[str] | None:
    """The OpenSSH public keys in `files`, one per non-comment line; None when no file given."""
    if not files:
        return None
    keys = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                keys.append(line.strip())
    if not keys:
        raise click.BadParameter("no public key in the files given", param_hint="--sftp-key")
    return keys


@tenant_group.command("create")
@click.argument("company")
@click.option("--campaign", "campaigns", multiple=True, help="Campaign to give a dashboard.")
@click.option(
    "--default-user", is_flag=True, help="Also create user_<company> (password shown once)."
)
@click.option(
    "--sftp-key",
    "sftp_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="OpenSSH public key file of the SFTP user (replaces its keys; repeatable).",
)
@click.option(
    "--sftp-password", is_flag=True, help="Give the SFTPGo user a new password (shown once)."
)
@click.option("--check", is_flag=True, help="Say what would change; change nothing.")
@json_option
def tenant_create(
    company: str,
    campaigns: tuple[str, ...],
    default_user: bool,
    sftp_keys: tuple[Path, ...],
    sftp_password: bool,
    check: bool,
    json_output: bool,
) -> ExitStatus:
    """Create or keep a company's SFTP account, bucket, read token and Grafana resources."""
    from powerview.provision import create_tenant

    settings = _settings()
    outcome = create_tenant(
        settings,
        company,
        campaigns,
        default_user=default_user,
        check=check,
        sftp_keys=_public_keys(sftp_keys),
        sftp_password=sftp_password,
    )
    render(outcome.take_result(check), json_output, _tenant_text)
    return ExitStatus.OK


@tenant_group.command("delete")
@click.argument("company")
@click.option("--with-user", is_flag=True, help="Also delete user_<company>.")
@click.option("--keep-token", is_flag=True, help="Keep the company's read token active.")
@click.option(
    "--purge", is_flag=True, help="Also delete its buckets, their data and downsampling tasks."
)
@click.option("--check", is_flag=True, help="Say what would change; change nothing.")
@json_option
def tenant_delete(
    company: str, with_user: bool, keep_token: bool, purge: bool, check: bool, json_output: bool
) -> ExitStatus:
    """Remove a company's SFTP login, read token and Grafana resources; its files stay,
    and its data too unless --purge."""
    from powerview.provision import delete_tenant

    settings = _settings()
    outcome = delete_tenant(
        settings, company, with_user=with_user, check=check, keep_token=keep_token, purge=purge
    )
    render(outcome.take_result(check), json_output, _tenant_text)
    return ExitStatus.OK


@tenant_group.command("list")
@json_option
def tenant_list(json_output: bool) -> ExitStatus:
    """Companies with a bucket (or an SFTP account): read token, and SFTP account when managed."""
    from powerview.provision import list_tenants

    settings = _settings()
    render(list_tenants(settings), json_output, _tenant_list_text)
    return ExitStatus.OK


def _tenant_list_text(rows: list[dict[str, Any]]) -> None:
    # The SFTPGo or OpenSSH columns when PowerView manages them (every row then has them).
    managed = bool(rows) and "sftpgo_user" in rows[0]
    openssh = bool(rows) and "ssh_account" in rows[0]
    columns = ["company", "read token", "token value on file"]
    if managed:
        columns += ["SFTPGo user", "keys", "password"]
    if openssh:
        columns += ["OpenSSH user", "account", "keys"]
    table = Table(*columns, box=None)
    for row in rows:
        cells = [row["company"], "yes" if row["read_token"] else "no"]
        cells.append("yes" if row["token_on_file"] else "no")
        if managed:
            cells.append(row["sftpgo_user"])
            cells.append(str(row.get("sftpgo_keys", "")))
            password = row.get("sftpgo_password")
            cells.append("" if password is None else "set" if password else "none")
        if openssh:
            cells += [row["ssh_user"], row["ssh_account"], str(row["ssh_keys"])]
        table.add_row(*cells)
    out.print(table)


# -- downsampled history ---------------------------------------------------------


@app.group("downsample", context_settings=CONTEXT)
def downsample_group() -> None:
    """A company's 1h, 1d and 1w aggregate buckets and the InfluxDB tasks filling them."""


@downsample_group.command("ensure")
@click.argument("company")
@click.option("--check", is_flag=True, help="Say what would change; change nothing.")
@json_option
def downsample_ensure(company: str, check: bool, json_output: bool) -> ExitStatus:
    """Create or update the buckets' retention and the tasks (idempotent)."""
    from powerview.provision.downsample import ensure_downsampling

    settings = _settings()
    target = open_target(settings)
    try:
        outcome = ensure_downsampling(target.client, settings, company, check=check)
    finally:
        target.close()
    document = {"company": company, "check": check, "changes": list(outcome.changes)}
    render(document, json_output, _downsample_text)
    return ExitStatus.OK


def _downsample_text(document: dict[str, Any]) -> None:
    verb = "would change" if document["check"] else "changed"
    for change in document["changes"]:
        out.print(f"{verb}: {change}")
    if not document["changes"]:
        out.print(f"downsampling of {document['company']!r}: no change")


def _moment(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@downsample_group.command("backfill")
@click.argument("company")
@click.option("--from", "start", help="ISO date/time (UTC unless given); default: first point.")
@click.option("--to", "stop", help="ISO date/time, excluded; default: now.")
def downsample_backfill(company: str, start: str | None, stop: str | None) -> ExitStatus:
    """Recompute the aggregates of existing data, in chunks (idempotent)."""
    from powerview.provision.downsample import backfill

    settings = _settings()
    target = open_target(settings)
    chunks = 0
    try:
        for chunk in backfill(target.client, company, _moment(start), _moment(stop)):
            chunks += 1
            out.print(
                f"{company}{chunk.level}: {_when(chunk.start)} .. {_when(chunk.stop)}"
                f" in {chunk.seconds:.1f} s",
                markup=False,
            )
    finally:
        target.close()
    out.print(f"{chunks} chunk(s) recomputed for {company!r}")
    return ExitStatus.OK


# -- operations: health, alerts, admin dashboard ------------------------------------


@app.command("deploy")
@click.option("--variant", type=click.Choice(deploy.VARIANTS), required=True,
              help="How clients upload: plain OpenSSH (watcher) or SFTPGo (hook).")  # fmt: skip
@click.option("--check", is_flag=True, help="Show what would change; change nothing.")
@root_option
@service_user_option
@click.option("--upload-group", default=deploy.UPLOAD_GROUP, show_default=True,
              help="The group of the companies' SFTP users (OpenSSH).")  # fmt: skip
@json_option
def deploy_command(
    variant: deploy.Variant,
    check: bool,
    root: Path,
    service_user: str,
    upload_group: str,
    json_output: bool,
) -> ExitStatus:
    """Set up this host for PowerView: users, folders, env file, units (idempotent)."""
    target = deploy.Target(variant, root=root, service_user=service_user, upload_group=upload_group)
    steps = deploy.deploy(target, check)
    document = {
        "variant": variant,
        "root": root,
        "check": check,
        "steps": [dataclasses.asdict(step) for step in steps],
        "changed": sum(step.outcome != "ok" for step in steps),
        "next_commands": deploy.next_commands(target),
    }
    render(document, json_output, _deploy_text)
    return ExitStatus.OK


def _deploy_text(doc: dict[str, Any]) -> None:
    _steps_text(doc["steps"])
    verb = "would change" if doc["check"] else "changed"
    out.print(f"{doc['changed']} {verb}, {len(doc['steps']) - doc['changed']} ok")
    if not doc["check"]:
        for command in doc["next_commands"]:
            out.print(f"next: {command}")


@app.command("health")
@json_option
@click.option(
    "--notify",
    is_flag=True,
    help="Send new problems and recoveries to POWERVIEW_ALERT_WEBHOOK_URL; ping "
    "POWERVIEW_HEARTBEAT_URL when nothing is critical.",
)
def health_command(json_output: bool, notify: bool) -> int:
    """Check every part of the pipeline; exit 0 ok, 1 warning, 2 critical, 3 unknown.

    InfluxDB (a real write), the queue, the worker's and watcher's heartbeats,
    the data root, Grafana (when configured), and from the meta bucket each
    device's last ingested file against POWERVIEW_EXPECTED_CADENCE_H and the
    files rejected or deferred in the last hour. The first line of output is
    a monitoring-plugin status line (Nagios, Icinga).
    """
    from powerview import alerts, health

    try:
        settings = _settings()
    except ConfigError as exc:
        out.print(f"POWERVIEW UNKNOWN - configuration error: {exc}", markup=False)
        return health.Status.UNKNOWN
    report = health.run_checks(settings)
    if notify:
        if settings.alert_webhook_url is not None:
            outcome = alerts.notify(
                report,
                settings.state_dir,
                settings.alert_webhook_url.get_secret_value(),
                settings.alert_format,
                settings.alert_quiet_period_s,
            )
            report.checks.append(outcome.as_check())
        # The dead-man switch: silence (no ping) is what alerts, so ping unless critical.
        status = report.status
        if settings.heartbeat_url is not None and status.severity <= health.Status.WARNING.severity:
            report.checks.append(alerts.ping_heartbeat(settings.heartbeat_url.get_secret_value()))
    render(report.to_dict(), json_output, lambda _: _health_text(report))
    return report.status


def _health_text(report: HealthReport) -> None:
    """The monitoring-plugin status line (with perfdata), then one row a check."""
    from rich.text import Text

    perfdata = report.perfdata()
    out.print(report.summary() + (f" | {perfdata}" if perfdata else ""))
    table = Table("check", "status", "message", box=None)
    colours = {0: "green", 1: "yellow", 2: "red", 3: "magenta"}
    for check in report.checks:
        label = Text(check.status.name, style=colours[check.status])
        table.add_row(check.name, label, Text(check.message))
    out.print(table)


@tenant_group.command("admin-dashboard")
@click.option("--check", is_flag=True, help="Say what would change; change nothing.")
@json_option
def admin_dashboard_command(check: bool, json_output: bool) -> ExitStatus:
    """Provision the ingestion dashboard (meta bucket) in the admin's own Grafana org."""
    from powerview.provision.admin_dashboard import provision_admin_dashboard

    settings = _settings()
    changes = provision_admin_dashboard(settings, check=check)
    document = {"check": check, "changes": [change.summary() for change in changes]}
    render(document, json_output, _admin_dashboard_text)
    return ExitStatus.OK


def _admin_dashboard_text(document: dict[str, Any]) -> None:
    verb = "would change" if document["check"] else "changed"
    for change in document["changes"]:
        detail = f" ({change['detail']})" if change["detail"] else ""
        out.print(f"Grafana {verb}: {change['action']} {change['resource']}{detail}")
    if not document["changes"]:
        out.print("admin dashboard: no change")


def open_target(settings: config.Settings) -> InfluxTarget:
    """The configured InfluxDB, imported on demand (see the note on imports)."""
    from powerview.influx import open_target as open_influx

    return open_influx(settings)


def _when(moment: object) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if isinstance(moment, dt.datetime) else ""


def main() -> None:
    """Console entry point."""
    argv = sys.argv[1:]
    status = run(argv)
    try:
        sys.stdout.flush()
    except OSError as exc:
        # Output lost (a full disk, a reader gone): said once here, and stdout
        # pointed at /dev/null so Python's own flush at exit does not exit 120.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if status == ExitStatus.OK:
            with contextlib.suppress(OSError):
                err.print(f"powerview: {describe(exc)}", markup=False)
            status = HEALTH_UNKNOWN if _command_of(argv) == "health" else ExitStatus.ERROR
    sys.exit(status)


# `powerview health` speaks the monitoring-plugin convention: 3 is UNKNOWN.
HEALTH_UNKNOWN = 3


def run(argv: list[str]) -> int:
    """Run one command; map each error kind to a status and one line on stderr.

    Everything is caught here, last (httpie's `raw_main`): an unexpected error
    is status 2 (3 for `health`), never 1, which means "files rejected". With
    `--traceback` the full chain (every `raise ... from exc`) is printed too.
    """
    show_traceback = "--traceback" in argv
    args = [a for a in argv if a != "--traceback"]
    try:
        result = app.main(args=args, prog_name="powerview", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitStatus.ERROR
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("powerview: interrupted", markup=False)
        return ExitStatus.INTERRUPTED
    except SystemExit as exc:
        if not isinstance(exc.__context__, BrokenPipeError):
            raise
        # rich turns a reader that went away (`| head`) into exit 1, which would
        # say "files rejected"; stdout already points at /dev/null.
        err.print("powerview: output closed before the end (broken pipe)", markup=False)
        return ExitStatus.ERROR
    except Exception as exc:
        if show_traceback:
            import traceback

            sys.stderr.write("".join(traceback.format_exception(exc)))
        line = describe(exc)
        # Writing may be what failed (stdout on a full disk): the status must still come out.
        with contextlib.suppress(OSError):
            err.print(f"powerview: {line}", markup=False)
        if _command_of(args) == "health":
            with contextlib.suppress(OSError):  # the plugin's status line comes first on stdout
                out.print(f"POWERVIEW UNKNOWN - {line}", markup=False)
            return HEALTH_UNKNOWN
        return ExitStatus.ERROR
    return int(result) if isinstance(result, int) else ExitStatus.OK


def _command_of(args: list[str]) -> str | None:
    """The command's name (`powerview` has no option before it but --help/--version)."""
    return next((a for a in args if not a.startswith("-")), None)
