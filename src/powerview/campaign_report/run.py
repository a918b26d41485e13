"""`powerview report`: build a campaign's report from InfluxDB and write it in one format."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from powerview.campaign_report.figures import ReportOptions, build_report, check_time_zone
from powerview.campaign_report.flux import InfluxFlux
from powerview.campaign_report.model import CampaignReport
from powerview.campaign_report.outputs import WRITERS
from powerview.campaign_report.provenance import ledger_sources
from powerview.exceptions import ReportError
from powerview.layout import check_company, check_name
from powerview.settings import Settings

__all__ = ["ReportOutcome", "default_out", "make_report", "parse_moment", "parse_span"]


@dataclass(frozen=True)
class ReportOutcome:
    report: CampaignReport
    format: str
    path: Path


def default_out(company: str, campaign: str, fmt: str) -> Path:
    """`<company>-<campaign>.<ext>` in the working folder; CSV is a folder of tables."""
    return Path(f"{company}-{campaign}-csv" if fmt == "csv" else f"{company}-{campaign}.{fmt}")


def parse_moment(text: str, zone_name: str) -> dt.datetime:
    """An ISO 8601 date or time; without an offset it is in the report's time zone."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"{text!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=check_time_zone(zone_name))
    return moment.astimezone(dt.UTC)


def parse_span(text: str, what: str) -> tuple[float, float]:
    """`LOW-HIGH` (e.g. `6-22`, `207-253`)."""
    low, sep, high = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise ReportError(f"{what} {text!r}: expected LOW-HIGH, e.g. 6-22") from None


def make_report(
    settings: Settings,
    company: str,
    campaign: str,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    options: ReportOptions,
    fmt: str,
    out: Path | None,
) -> ReportOutcome:
    """Figures from InfluxDB, provenance from the ledger, then the file in `fmt`."""
    from powerview.influx import open_target

    check_company(company, settings.reserved_company_names)
    check_name("campaign", campaign)
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ReportError(
            f"no {fmt} writer in this installation (available: {', '.join(sorted(WRITERS))})"
        )
    target = open_target(settings)
    try:
        report = build_report(InfluxFlux(target.client), company, campaign, start, end, options)
    finally:
        target.close()
    sources = ledger_sources(
        settings.state_dir, company, campaign, report.period.start, report.period.end
    )
    notes = list(report.notes)
    if sources is None:
        notes.append(
            f"No ingestion ledger in {settings.state_dir}: the source files are not listed."
        )
    report = dataclasses.replace(report, sources=sources or [], notes=notes)
    path = out or default_out(company, campaign, fmt)
    writer(report, path)
    return ReportOutcome(report, fmt, path)
