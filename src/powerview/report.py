"""Run reports: what happened to each file, as JSON and as meta-bucket points.

The meta points keep the original system's names (`tsv_parser_run`,
`tsv_parser_file` and their tags and fields) so that existing monitoring
queries keep working; new fields are only added, never renamed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from powerview.lineprotocol import escape_key, escape_measurement, loose_key, string_field

if TYPE_CHECKING:
    from powerview.ledger import LedgerRow

Status = Literal["success", "error", "deferred", "skipped"]
RUN_MEASUREMENT = "tsv_parser_run"
FILE_MEASUREMENT = "tsv_parser_file"
# Meta points carry nanosecond times: runs that end within the same second (one run
# per worker job) must stay separate points, not overwrite one another.
META_PRECISION = "ns"


@dataclass
class ChannelReport:
    channel_id: str
    field: str
    name: str
    unit: str
    device_sn: str
    count: int
    min: float | None
    max: float | None
    mean: float | None


@dataclass
class FileReport:
    """The outcome of one file; `status` success means it is in `parsed/`."""

    path: str
    file_name: str
    status: Status = "skipped"
    partial: bool = False  # ingested, but some rows or values were set aside
    company: str | None = None
    campaign: str | None = None
    device_sn: str | None = None
    moved_to: str | None = None
    format: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    time_range: dict[str, str] | None = None
    channels: list[ChannelReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    deferred_by: Literal["influxdb", "filesystem"] | None = None  # what to retry after
    duration_s: float = 0.0
    sha256: str | None = None  # of the bytes parsed (ledger.Fingerprint)
    size: int | None = None
    ledger: LedgerRow | None = None  # its ledger entry, once recorded

    @property
    def nb_points(self) -> int:
        return self.counts.get("nb_points", 0)


@dataclass
class RunReport:
    """One `powerview ingest` run (or one worker job)."""

    base_folder: str
    dry_run: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None
    files: list[FileReport] = field(default_factory=list)
    meta_written: bool = False
    meta_error: str | None = None

    def count(self, status: Status) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def duration_s(self) -> float:
        end = self.finished_at or dt.datetime.now(dt.UTC)
        return round((end - self.started_at).total_seconds(), 3)

    @property
    def nb_points(self) -> int:
        return sum(f.nb_points for f in self.files)

    def totals(self) -> dict[str, Any]:
        return {
            "nb_files_total": len(self.files),
            "nb_files_success": self.count("success"),
            "nb_files_failed": self.count("error"),
            "nb_files_deferred": self.count("deferred"),
            "nb_files_skipped": self.count("skipped"),
            "nb_files_partial": sum(1 for f in self.files if f.partial),
            "nb_points_total": self.nb_points,
            "duration_s": self.duration_s,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "base_folder": self.base_folder,
            "dry_run": self.dry_run,
            "totals": self.totals(),
            "meta_written": self.meta_written,
            "meta_error": self.meta_error,
            "files": [asdict(f) for f in self.files],
        }

    def write_json(self, folder: Path) -> Path:
        """Write the report atomically as `<folder>/<UTC time>_<run id>.json`."""
        folder.mkdir(parents=True, exist_ok=True)
        stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        path = folder / f"tsv_run_{stamp}_{self.run_id}.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
        return path

    def meta_lines(self) -> str:
        """The run summary and one point per file, in the original's meta schema."""
        moment = self.finished_at or dt.datetime.now(dt.UTC)
        when = round(moment.timestamp() * 1_000_000) * 1_000  # META_PRECISION
        totals = self.totals()
        run_fields = {key: value for key, value in totals.items()}
        run_fields["base_folder"] = self.base_folder
        run_fields["run_id"] = self.run_id
        lines = [_line(RUN_MEASUREMENT, {}, run_fields, when)]
        for report in self.files:
            if report.status == "skipped":
                continue
            tags = {
                "status": report.status,
                "bucket": report.company or "",
                "campaign": report.campaign or "",
                # The file's master serial, as on the data points; the folder's when unread.
                "device_master_sn": str((report.format or {}).get("master_sn") or "")
                or report.device_sn
                or "",
                "file_name": report.file_name,
            }
            counts = report.counts
            fields: dict[str, Any] = {
                "nb_rows": counts.get("nb_rows", 0),
                "nb_channels": counts.get("nb_channels", 0),
                "nb_points": counts.get("nb_points", 0),
                "nb_invalid_timestamps": counts.get("nb_invalid_timestamps", 0),
                "nb_invalid_values": counts.get("nb_invalid_values", 0),
                "nb_rejected_rows": counts.get("nb_rejected_rows", 0),
                "partial": report.partial,
                "duration_s": report.duration_s,
                "run_id": self.run_id,
                "error": report.error or "",
            }
            lines.append(_line(FILE_MEASUREMENT, tags, fields, when))
        return "".join(lines)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def iso_epoch(epoch: int) -> str:
    return _iso(dt.datetime.fromtimestamp(epoch, dt.UTC))


def _line(measurement: str, tags: dict[str, str], fields: dict[str, Any], epoch: int) -> str:
    tag_text = "".join(
        f",{escape_key(k)}={loose_key(v)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_text = ",".join(f"{escape_key(k)}={_field_value(v)}" for k, v in fields.items())
    return f"{escape_measurement(measurement)}{tag_text} {field_text} {epoch}\n"


def _field_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return string_field(str(value))
