"""The report as CSV: one file per table in a folder, for spreadsheets and scripts.

Files: summary.csv (what, when, where from), energy.csv (one row per power channel),
daily_energy.csv, profile.csv, load_curve.csv, voltage.csv, imbalance.csv,
completeness.csv, gaps.csv, sources.csv, notes.csv. Times are ISO 8601 in the report's
time zone, with their offset; numbers are written in full (no rounding), kW and kWh.
Each file is written beside its final name and renamed into place, so a reader never
sees half a table.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from powerview.campaign_report.model import CampaignReport

__all__ = ["TABLES", "write_csv"]

TABLES = (
    "summary",
    "energy",
    "daily_energy",
    "profile",
    "load_curve",
    "voltage",
    "imbalance",
    "completeness",
    "gaps",
    "sources",
    "notes",
)

Cell = str | int | float | dt.datetime | dt.date | None


def write_csv(report: CampaignReport, out: Path) -> None:
    """Write the report's tables into the folder `out` (created if needed)."""
    zone = ZoneInfo(report.period.timezone)
    out.mkdir(parents=True, exist_ok=True)
    for name, header, rows in _tables(report):
        _write(out / f"{name}.csv", header, ([_cell(v, zone) for v in row] for row in rows))


def _cell(value: Cell, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(zone).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _write(path: Path, header: Sequence[str], rows: Iterable[list[str]]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(partial, path)


def _tables(
    report: CampaignReport,
) -> Iterable[tuple[str, Sequence[str], Iterable[Sequence[Cell]]]]:
    period = report.period
    yield (
        "summary",
        ("item", "value"),
        [
            ("company", report.company),
            ("campaign", report.campaign),
            ("period_start", period.start),
            ("period_end", period.end),
            ("timezone", period.timezone),
            ("day_hours", f"{period.day_hours[0]:02d}:00-{period.day_hours[1]:02d}:00"),
            ("base_load_percentile", period.base_load_percentile),
            ("generated_at", report.generated_at),
            ("source", report.source),
            ("devices", " ".join(report.devices)),
        ],
    )
    yield (
        "energy",
        ("device", "channel", "label", "energy_kwh", "gap_kwh_estimate", "peak_kw", "peak_at",
         "base_load_kw", "day_kwh", "night_kwh", "weekday_kwh", "weekend_kwh"),
        [
            (p.device, p.channel, p.label, p.energy_kwh, p.gap_kwh_estimate, p.peak_kw,
             p.peak_at, p.base_load_kw, p.day_kwh, p.night_kwh, p.weekday_kwh, p.weekend_kwh)
            for p in report.power
        ],
    )  # fmt: skip
    yield (
        "daily_energy",
        ("device", "channel", "day", "kwh", "received_intervals", "expected_intervals",
         "gap_kwh_estimate"),
        [
            (p.device, p.channel, d.day, d.kwh, d.received_intervals, d.expected_intervals,
             d.gap_kwh_estimate)
            for p in report.power
            for d in p.daily
        ],
    )  # fmt: skip
    yield (
        "profile",
        ("device", "channel", "time_of_day", "weekday_kw", "weekend_kw"),
        [
            (p.device, p.channel, f"{q.minute_of_day // 60:02d}:{q.minute_of_day % 60:02d}",
             q.weekday_kw, q.weekend_kw)
            for p in report.power
            for q in p.profile
        ],
    )  # fmt: skip
    yield (
        "load_curve",
        ("device", "channel", "time", "mean_kw", "max_kw"),
        [
            (p.device, p.channel, c.time, c.mean_kw, c.max_kw)
            for p in report.power
            for c in p.load_curve
        ],
    )
    yield (
        "voltage",
        ("device", "channel", "label", "min_v", "mean_v", "max_v", "outside_band_s",
         "band_low_v", "band_high_v"),
        [
            (v.device, v.channel, v.label, v.min_v, v.mean_v, v.max_v, v.outside_band_s,
             v.band_v[0], v.band_v[1])
            for v in report.voltage
        ],
    )  # fmt: skip
    yield (
        "imbalance",
        ("device", "quantity", "mean_pct", "max_pct", "max_at"),
        [(i.device, i.quantity, i.mean_pct, i.max_pct, i.max_at) for i in report.imbalance],
    )
    yield (
        "completeness",
        ("device", "interval_s", "first", "last", "expected_intervals", "received_intervals",
         "ratio", "gaps"),
        [
            (c.device, c.interval_s, c.first, c.last, c.expected_intervals,
             c.received_intervals, c.ratio, len(c.gaps))
            for c in report.completeness
        ],
    )  # fmt: skip
    yield (
        "gaps",
        ("device", "start", "end", "missing_intervals"),
        [
            (g.device, g.start, g.end, g.missing_intervals)
            for c in report.completeness
            for g in c.gaps
        ],
    )
    yield (
        "sources",
        ("device", "file_name", "sha256", "size", "uploaded_at", "ingested_at", "first_time",
         "last_time", "points_written", "points_verified"),
        [
            (s.device, s.file_name, s.sha256, s.size, s.uploaded_at, s.ingested_at,
             s.first_time, s.last_time, s.points_written, s.points_verified)
            for s in report.sources
        ],
    )  # fmt: skip
    yield ("notes", ("note",), [(note,) for note in report.notes])
