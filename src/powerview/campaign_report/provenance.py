"""Where a report's figures come from: the ingestion ledger's rows for the campaign."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from powerview.campaign_report.model import SourceFile
from powerview.ledger import LEDGER_FILE, Ledger, LedgerRow, parse_rfc3339


def ledger_sources(
    state_dir: Path, company: str, campaign: str, start: dt.datetime, end: dt.datetime
) -> list[SourceFile] | None:
    """The files of `campaign` whose points fall in [start, end); None without a ledger.

    A missing ledger is not created: a report reads, it never sets up state.
    """
    if not (state_dir / LEDGER_FILE).is_file():
        return None
    with Ledger.in_state_dir(state_dir) as ledger:
        rows = ledger.rows(company, campaign)
    return [source_file(row) for row in rows if _overlaps(row, start, end)]


def _overlaps(row: LedgerRow, start: dt.datetime, end: dt.datetime) -> bool:
    if row.first_time is None or row.last_time is None:
        return False  # a file without points holds up no figure
    return parse_rfc3339(row.first_time) < end and parse_rfc3339(row.last_time) >= start


def source_file(row: LedgerRow) -> SourceFile:
    return SourceFile(
        device=row.device,
        file_name=row.file_name,
        sha256=row.sha256,
        size=row.size,
        uploaded_at=parse_rfc3339(row.upload_time) if row.upload_time else None,
        ingested_at=parse_rfc3339(row.ingest_time),
        first_time=parse_rfc3339(row.first_time) if row.first_time else None,
        last_time=parse_rfc3339(row.last_time) if row.last_time else None,
        points_written=row.points_written,
        points_verified=row.points_verified,
    )
