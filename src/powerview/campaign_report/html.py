"""The campaign report as one self-contained HTML file (Jinja2), also the PDF's source.

Company, campaign, device, channel and file names come from clients: the template
escapes every value (autoescape on) and shows control and bidirectional characters as
escapes (`plain_text.visible`), so a name can neither run a script nor reorder what
the reader sees. The charts are PNG data: URIs and the CSS is inline: the file asks
for nothing over the network and opens offline. Times are shown in the report's time
zone, which the title page states.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from powerview.campaign_report import charts
from powerview.campaign_report.model import CampaignReport, DailyEnergy, PowerFigures
from powerview.plain_text import visible

TEMPLATE = "report.html.j2"
# Channels per daily-energy table: more columns do not fit an A4 page.
DAILY_COLUMNS = 6


@dataclass(frozen=True)
class DailyTable:
    """Days as rows, up to DAILY_COLUMNS channels as columns, for one device."""

    channels: list[PowerFigures]
    rows: list[tuple[dt.date, DailyEnergy | None, list[DailyEnergy | None]]]


def render_html(report: CampaignReport) -> str:
    """The whole report as one HTML document."""
    return (
        _environment(ZoneInfo(report.period.timezone))
        .get_template(TEMPLATE)
        .render(
            report=report,
            charts=charts.draw_all(report),
            daily_tables={device: daily_tables(report.power, device) for device in report.devices},
            power_of={d: [p for p in report.power if p.device == d] for d in report.devices},
            gaps=sorted((g for c in report.completeness for g in c.gaps), key=lambda g: g.start),
        )
    )


def write_html(report: CampaignReport, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")


def daily_tables(power: Sequence[PowerFigures], device: str) -> list[DailyTable]:
    """The device's daily energy split into tables of DAILY_COLUMNS channels."""
    channels = [p for p in power if p.device == device and p.daily]
    tables = []
    for first in range(0, len(channels), DAILY_COLUMNS):
        group = channels[first : first + DAILY_COLUMNS]
        by_day = [{d.day: d for d in channel.daily} for channel in group]
        days = sorted({day for days in by_day for day in days})
        rows = []
        for day in days:
            cells = [days_of.get(day) for days_of in by_day]
            coverage = next((cell for cell in cells if cell is not None), None)
            rows.append((day, coverage, cells))
        tables.append(DailyTable(channels=group, rows=rows))
    return tables


def _environment(zone: ZoneInfo) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("powerview.campaign_report", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        local=lambda moment, fmt="%Y-%m-%d %H:%M": _local(moment, zone, fmt),
        num=_number,
        duration=_duration,
        percent=lambda ratio, digits=1: _number(100 * ratio, digits) + " %",
    )
    return environment


def _finalize(value: Any) -> Any:
    """Every printed string with its control and bidi characters shown, then escaped."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return "" if value is None else value


def _local(moment: dt.datetime | None, zone: ZoneInfo, fmt: str) -> str:
    return "" if moment is None else moment.astimezone(zone).strftime(fmt)


def _number(value: float | int | None, digits: int = 1) -> str:
    """Thousands separated, fixed decimals; an absent value (or NaN) is an em dash."""
    if value is None or not math.isfinite(value):
        return "\u2014"
    return f"{value:,.{digits}f}"


def _duration(seconds: float) -> str:
    """`3 h 20 min`, `45 min`, `2 d 4 h`: how long, as a reader says it."""
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"
