"""The ingest pipeline: one device file, or many, into InfluxDB.

For each file: open once without following links, names from that walk
(validated) → read from that descriptor (format detection, header) →
stream batches → encode → queue the writes → move to `parsed/` once InfluxDB
acknowledged every one of them (`ingest_paths` parses the next files
meanwhile, and finishes files in order). Content problems send
the file to `error/` with the reason; infrastructure problems (InfluxDB down,
disk trouble) leave it where it is, marked deferred, for a later run.
Re-ingesting a file writes the same series at the same times, so it never
doubles a point.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from powerview import layout
from powerview.exceptions import (
    FormatError,
    InfluxRequestError,
    InfrastructureError,
    NameRuleError,
    UnsafeUploadError,
)
from powerview.formats import DeviceFile, Header, ParseOptions, RowBatch, open_device_file
from powerview.influx import InfluxTarget, LineWriter
from powerview.ledger import Fingerprint, LedgerError, LedgerRow, Recorder, meta_line
from powerview.lineprotocol import BatchEncoder
from powerview.report import META_PRECISION, ChannelReport, FileReport, RunReport, iso_epoch
from powerview.schema import Series, series_for
from powerview.settings import Settings
from powerview.stats import DistinctPoints, FileStats
from powerview.upload_file import Upload, display, name_problem, open_upload, split_below

log = logging.getLogger(__name__)


def parse_options(settings: Settings, now: float | None = None) -> ParseOptions:
    """The parser's time window and time zone policy from the settings."""
    earliest = dt.datetime.fromisoformat(settings.earliest_valid_time.replace("Z", "+00:00"))
    if earliest.tzinfo is None:
        earliest = earliest.replace(tzinfo=dt.UTC)
    latest = int(now if now is not None else time.time()) + settings.max_future_skew_s
    return ParseOptions(
        earliest_epoch=int(earliest.timestamp()),
        latest_epoch=latest,
        headerless_time_zone=settings.headerless_timezone,
        max_line_bytes=settings.max_line_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_columns=settings.max_columns,
        max_file_bytes=settings.max_file_bytes,
    )


class EncodedFile:
    """The line protocol of one opened device file, batch by batch (see `encode_file`)."""

    def __init__(
        self, device_file: DeviceFile, campaign: str, batch_rows: int | None = None
    ) -> None:
        self.series: tuple[Series, ...] = series_for(device_file.header, campaign)
        self._device_file = device_file
        self._batch_rows = batch_rows
        self._encoder = BatchEncoder(self.series)

    def __iter__(self) -> Iterator[tuple[RowBatch, str]]:
        for batch in self._device_file.batches(self._batch_rows):
            yield batch, self._encoder.encode(batch)

    @property
    def points(self) -> int:
        """Lines encoded so far (all of them once iterated)."""
        return self._encoder.points


def encode_file(
    device_file: DeviceFile, campaign: str, batch_rows: int | None = None
) -> EncodedFile:
    """The one encoding loop: `ingest`, `parse --to lp` and the golden tests all use it,
    so what `parse` prints is exactly what `ingest` writes."""
    return EncodedFile(device_file, campaign, batch_rows)


def write_run(run: RunReport, target: InfluxTarget, settings: Settings, data_root: Path) -> Path:
    """Record a finished run: summary points in the meta bucket, JSON report on disk.

    A meta bucket that cannot be written is noted in the report, not raised:
    the data itself is in, and the JSON report still tells what happened.
    """
    if run.finished_at is None:
        run.finished_at = dt.datetime.now(dt.UTC)
    at = run.finished_at.timestamp()
    entries = "".join(meta_line(f.ledger, at) for f in run.files if f.ledger is not None)
    try:
        target.ensure_bucket(settings.meta_bucket)
        target.write_now(settings.meta_bucket, run.meta_lines() + entries, precision=META_PRECISION)
        run.meta_written = True
    except (InfrastructureError, InfluxRequestError, FormatError) as exc:
        run.meta_error = str(exc)
        log.error("run summary not written to %s: %s", settings.meta_bucket, exc)
    return run.write_json(settings.report_dir_for(data_root))


def write_ledger_summary(
    entries: Iterable[LedgerRow], target: InfluxTarget, settings: Settings
) -> None:
    """The `powerview_ledger` points of entries verified again (`powerview verify`)."""
    at = time.time()
    lines = "".join(meta_line(row, at) for row in entries)
    if lines:
        target.ensure_bucket(settings.meta_bucket)
        target.write_now(settings.meta_bucket, lines, precision=META_PRECISION)


@dataclass(frozen=True)
class IngestOptions:
    data_root: Path
    parse: ParseOptions = field(default_factory=ParseOptions)
    lines_per_write: int = 5000
    dry_run: bool = False
    reserved: frozenset[str] = frozenset()  # Settings.reserved_company_names
    # Files parsed ahead of the one being acknowledged (ingest_paths): each holds
    # its upload open and its report until its move.
    files_in_flight: int = 4
    # Records each acknowledged file in the ledger, with its read-back (ledger.py).
    ledger: Recorder | None = None


def ingest_file(path: Path, writer: LineWriter, options: IngestOptions) -> FileReport:
    """Ingest one file and decide its outcome; never raises for a bad file.

    The file is opened once from the data root without following links
    (`upload_file.open_upload`); its company, campaign and device come from
    that walk, its content from that descriptor, and its move goes through
    the device folder's descriptor. A link on the way is refused, left where
    it is and reported; nothing is ever read or moved through it.
    """
    report = _finish(_start(path, writer, options), options)
    if options.ledger is not None:
        options.ledger.drain()  # its read-back, counted while it was moved
    return report


@dataclass
class _InFlight:
    """A file parsed and queued: moved and reported once its writes are acknowledged.

    `stack` keeps the upload (and its device folder's descriptor) open until
    the move; `written` is None when the outcome was decided while parsing.
    """

    report: FileReport
    started: float
    stack: contextlib.ExitStack[bool | None]
    upload: Upload | None = None
    written: Future[None] | None = None

    def ready(self) -> bool:
        return self.written is None or self.written.done()


@contextlib.contextmanager
def _file_outcome(report: FileReport) -> Iterator[None]:
    """The outcome of a file the walk or the file system refused."""
    try:
        yield
    except (NameRuleError, UnsafeUploadError) as exc:
        # Not at <company>/<campaign>/<device>/ or reached through a link: left alone.
        report.status = "skipped"
        report.error = str(exc)
        log.warning("%s left where it is: %s", report.path, exc)
    except FileNotFoundError:
        report.status = "skipped"
        report.error = "gone before it could be opened"
    except OSError as exc:
        report.status = "deferred"
        report.deferred_by = "filesystem"
        report.error = f"file system: {exc}"


def _start(path: Path, writer: LineWriter, options: IngestOptions) -> _InFlight:
    """Parse `path` and queue its lines; the upload stays open for `_finish`."""
    report = FileReport(path=display(path), file_name=display(path.name))
    flight = _InFlight(report, time.perf_counter(), contextlib.ExitStack())
    with _file_outcome(report):
        if not layout.is_candidate(path):
            report.error = (
                "not a waiting upload: already processed, temporary, a symbolic link"
                " or not a .tsv file"
            )
            return flight  # skipped, left where it is
        upload = flight.stack.enter_context(open_upload(options.data_root, path))
        flight.upload = upload
        report.company, report.campaign, report.device_sn = upload.folder_names()
        flight.written = _ingest_upload(upload, writer, options, report)
    return flight


def _finish(flight: _InFlight, options: IngestOptions) -> FileReport:
    """Wait for the file's writes, then move it: `parsed/` only once all its points are in."""
    report = flight.report
    with _file_outcome(report), flight.stack:
        if flight.upload is not None and flight.written is not None:
            _settle(flight.upload, flight.written, options, report)
    report.duration_s = round(time.perf_counter() - flight.started, 4)
    return report


def _settle(
    upload: Upload, written: Future[None], options: IngestOptions, report: FileReport
) -> None:
    try:
        written.result()
        report.status = "success"
        if not options.dry_run:
            # Recorded before the move, so no file reaches parsed/ without its entry.
            ledger = options.ledger
            entry = ledger.acknowledged(report, upload.info.st_mtime) if ledger else None
            moved = upload.move_to("parsed")
            report.moved_to = display(moved)
            if ledger is not None and entry is not None:
                ledger.stored(entry, display(moved.name), report)  # read back meanwhile
    except LedgerError as exc:  # the data is in; the file waits until it can be recorded
        report.status = "deferred"
        report.deferred_by = "filesystem"
        report.error = str(exc)
    except (NameRuleError, FormatError, UnsafeUploadError) as exc:
        _reject(report, upload, str(exc), options)
    except (InfrastructureError, InfluxRequestError) as exc:
        _defer(report, exc)


def _defer(report: FileReport, exc: Exception) -> None:
    # An outage, or the deployment's token, org or bucket refused: not the file's fault.
    report.status = "deferred"
    report.deferred_by = "influxdb"
    report.error = str(exc)


def _ingest_upload(
    upload: Upload, writer: LineWriter, options: IngestOptions, report: FileReport
) -> Future[None] | None:
    """Check and parse the upload, queueing its lines; the future of its writes.

    None when the outcome is already decided (rejected, deferred, a finished
    interrupted move); the file's batches are closed off either way, so the
    next file's lines never count as this one's.
    """
    try:
        # First: a move to error/ interrupted by a crash is finished, not made twice.
        already = None if options.dry_run else upload.finish_interrupted_move()
        if already is not None:
            # A crash hit between writing and moving: the data is in, finish the move.
            report.status = "success" if already.parent.name == "parsed" else "error"
            report.moved_to = display(already)
            report.warnings.append("finished a move interrupted by a crash")
            return None
        company, campaign, device_sn = upload.checked_names()
        report.company, report.campaign, report.device_sn = company, campaign, device_sn
        layout.check_company(company, options.reserved)
        problem = name_problem(upload.file_name)
        if problem is not None:
            raise FormatError(problem)
        if upload.info.st_nlink > 1:
            raise FormatError(
                f"hard-linked upload ({upload.info.st_nlink} names for one file): refused,"
                " upload a plain file"
            )
        if not options.dry_run:
            upload.check_outcome_dir("parsed")  # a hostile parsed/ is refused before any write
        location = layout.Location(options.data_root, company, campaign, device_sn, upload.path)
        try:
            _stream_into(location, upload, writer, options, report)
        finally:
            written = writer.file_done()
        return written
    except (NameRuleError, FormatError, UnsafeUploadError) as exc:
        _reject(report, upload, str(exc), options)
    except (InfrastructureError, InfluxRequestError) as exc:
        _defer(report, exc)
    return None


def _stream_into(
    location: layout.Location,
    upload: Upload,
    writer: LineWriter,
    options: IngestOptions,
    report: FileReport,
) -> None:
    """Parse and queue every batch, filling the report; raises FormatError for no data."""
    # The parser reads through the fingerprint: the ledger's SHA-256 is of what it read.
    with (
        Fingerprint(upload.binary()) as raw,
        open_device_file(cast(BinaryIO, raw), options.parse) as device_file,
    ):
        header = device_file.header
        report.format = _describe(header)
        report.metadata = header.metadata
        width = len(header.columns)
        rows_per_write = max(1, options.lines_per_write // width)
        if header.master_sn != location.device_sn:
            device_file.warnings.append(
                f"folder {location.device_sn} holds a file of master {header.master_sn}; "
                "the file's serial is used"
            )
        encoded = encode_file(device_file, location.campaign, rows_per_write)
        series = encoded.series
        stats = FileStats(width)
        distinct = DistinctPoints(width)
        writer.ensure_bucket(location.company)
        for batch, lines in encoded:
            stats.add(batch)
            distinct.add(batch)
            writer.write(location.company, lines)
        report.sha256, report.size = raw.finish(options.parse.max_file_bytes)
        counts = device_file.counts.as_dict()
        counts |= {
            "nb_rejected_rows": device_file.counts.nb_rejected_rows,
            "nb_points": encoded.points,
            "nb_distinct_points": distinct.count,
            "nb_channels": width,
        }
        report.counts = counts
        report.warnings.extend(device_file.warnings)
        if stats.first_epoch is not None and stats.last_epoch is not None:
            report.time_range = {
                "first": iso_epoch(stats.first_epoch),
                "last": iso_epoch(stats.last_epoch),
            }
        report.channels = [
            ChannelReport(
                channel_id=s.channel_id,
                field=s.field,
                name=s.column.name,
                unit=s.column.unit,
                device_sn=s.column.serial,
                count=c.count,
                min=c.minimum if c.count else None,
                max=c.maximum if c.count else None,
                mean=round(c.mean, 6) if c.mean is not None else None,
            )
            for s, c in zip(series, stats.channels, strict=True)
        ]
    if encoded.points == 0:
        raise FormatError(f"no valid data rows ({counts['nb_rows']} rows read)")
    report.partial = bool(counts["nb_rejected_rows"] or counts["nb_invalid_values"])


def _describe(header: Header) -> dict[str, object]:
    return {
        "model_tag": header.model_tag,
        "layout": header.layout,
        "phase": header.phase,
        "master_sn": header.master_sn,
        "time_zone": header.time_zone,
        "columns": len(header.columns),
    }


def _reject(report: FileReport, upload: Upload, reason: str, options: IngestOptions) -> None:
    """Set the file aside in its `error/`; if that folder cannot be trusted, leave it."""
    report.error = reason
    report.status = "error"
    if options.dry_run:
        return
    try:
        report.moved_to = display(upload.move_to("error"))
    except UnsafeUploadError as exc:
        report.status = "skipped"
        report.error = f"{reason}; left where it is: {exc}"
    except OSError as exc:
        report.status = "deferred"
        report.deferred_by = "filesystem"
        report.error = f"{reason}; and moving it to error/ failed: {exc}"


def ingest_paths(
    files: Iterable[Path],
    writer: LineWriter,
    options: IngestOptions,
    on_file: Callable[[FileReport], None] | None = None,
) -> RunReport:
    """Ingest files in order, pipelined: the next file is parsed while the
    previous ones are written, at most `options.files_in_flight` at once, and
    each is finished (moved, reported) in order once its writes are
    acknowledged. After InfluxDB failed, that file, the ones in flight and
    the rest are deferred, none moved: it is down for them too. A file
    system error defers one file only."""
    run = RunReport(base_folder=str(options.data_root), dry_run=options.dry_run)
    outage: str | None = None
    window: deque[_InFlight] = deque()

    def record(report: FileReport) -> None:
        run.files.append(report)
        if on_file is not None:
            on_file(report)

    def finish_head() -> None:
        nonlocal outage
        flight = window.popleft()
        if outage is not None and flight.written is not None:
            # Queued when InfluxDB failed: left where it is, even if its writes got in.
            flight.stack.close()
            record(_deferred(flight.report, outage))
            return
        report = _finish(flight, options)
        if report.deferred_by == "influxdb":
            outage = report.error
            log.error("deferring %s: %s", report.path, report.error)
        record(report)

    depth = max(1, options.files_in_flight)
    for path in files:
        while window and (len(window) >= depth or window[0].ready()):
            finish_head()
        if outage is None:
            window.append(_start(path, writer, options))
        else:
            report = FileReport(path=display(path), file_name=display(path.name))
            _fill_location(report, path, options)
            record(_deferred(report, outage))
    while window:
        finish_head()
    if options.ledger is not None:
        options.ledger.drain()  # the read-backs, counted while the next files were written
    return run


def _deferred(report: FileReport, outage: str) -> FileReport:
    """`report` as a file deferred by the outage `outage`, whatever it was before."""
    report.status = "deferred"
    report.deferred_by = "influxdb"
    report.error = outage
    report.moved_to = None
    return report


def _fill_location(report: FileReport, path: Path, options: IngestOptions) -> None:
    try:
        parts = split_below(path, options.data_root)
    except NameRuleError:
        return
    if len(parts) == 4:
        report.company, report.campaign, report.device_sn = (display(p) for p in parts[:3])
