"""The XLSX report read back with openpyxl: every sheet, every value equal to the model's,
numbers as numbers, times as naive local datetimes, client text never a formula."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from powerview.campaign_report.model import CampaignReport
from powerview.campaign_report.xlsx import write_xlsx
from tests.report.factory import HOSTILE_FILE

SHEETS = ["Report", "Summary", "Daily energy", "Typical day", "Load curve", "Voltage",
          "Imbalance", "Completeness", "Gaps", "Sources"]  # fmt: skip


@pytest.fixture(scope="module")
def workbook(report: CampaignReport, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("xlsx") / "report.xlsx"
    write_xlsx(report, path)
    return openpyxl.load_workbook(path)


def table(sheet: Worksheet) -> tuple[list[str], list[list[Any]]]:
    """Header row (the 4th) and the rows under it."""
    rows = [list(row) for row in sheet.iter_rows(min_row=4, values_only=True)]
    return rows[0], rows[1:]


def rounded(rows: list[list[Any]]) -> list[list[Any]]:
    """Floats to 15 significant digits: openpyxl writes 16 (`%.16g`) and Excel keeps 15,
    so 230.29999999999998 is stored as 230.3."""
    return [[float(f"{v:.15g}") if isinstance(v, float) else v for v in row] for row in rows]


def naive(moment: dt.datetime | None, zone: str) -> dt.datetime | None:
    return None if moment is None else moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def test_sheets_state_the_time_zone(workbook: Any, report: CampaignReport) -> None:
    assert workbook.sheetnames == SHEETS
    for sheet in workbook:
        assert sheet["A2"].value.startswith(f"Times in {report.period.timezone} (local")
        header, _ = table(sheet)
        # A <col> element may cover several columns of the same width.
        widths = {
            index: d.width
            for d in sheet.column_dimensions.values()
            for index in range(d.min, d.max + 1)
        }
        for index, title in enumerate(header, start=1):
            assert widths[index] >= max(8, len(title)), (sheet.title, title)


def test_summary_and_daily_energy_equal_the_model(workbook: Any, report: CampaignReport) -> None:
    zone = report.period.timezone
    _, summary = table(workbook["Summary"])
    assert rounded(summary) == rounded([
        [p.device, p.channel, p.label, p.energy_kwh, p.gap_kwh_estimate, p.peak_kw,
         naive(p.peak_at, zone), p.base_load_kw, p.day_kwh, p.night_kwh, p.weekday_kwh,
         p.weekend_kwh]
        for p in report.power
    ])  # fmt: skip
    # Numbers are numbers (a 0.0 reads back as the integer 0: Excel has one number type).
    assert all(isinstance(value, int | float) for row in summary for value in row[3:6])
    _, daily = table(workbook["Daily energy"])
    assert rounded(daily) == rounded([
        [p.device, p.channel, p.label, dt.datetime.combine(d.day, dt.time()), d.kwh,
         d.gap_kwh_estimate, d.received_intervals, d.expected_intervals]
        for p in report.power for d in p.daily
    ])  # fmt: skip
    assert workbook["Daily energy"]["D5"].number_format == "yyyy-mm-dd"


def test_curves_equal_the_model(workbook: Any, report: CampaignReport) -> None:
    zone = report.period.timezone
    _, curve = table(workbook["Load curve"])
    assert rounded(curve) == rounded([
        [p.device, p.channel, p.label, naive(q.time, zone), naive(q.time, "UTC"), q.mean_kw,
         q.max_kw]
        for p in report.power for q in p.load_curve
    ])  # fmt: skip
    _, profile = table(workbook["Typical day"])
    assert rounded(profile) == rounded([
        [p.device, p.channel, p.label, dt.time(q.minute_of_day // 60, q.minute_of_day % 60),
         q.weekday_kw, q.weekend_kw]
        for p in report.power for q in p.profile
    ])  # fmt: skip


def test_quality_tables_equal_the_model(workbook: Any, report: CampaignReport) -> None:
    zone = report.period.timezone
    assert rounded(table(workbook["Voltage"])[1]) == rounded(
        [
            [v.device, v.channel, v.label, v.min_v, v.mean_v, v.max_v, *v.band_v, v.outside_band_s]
            for v in report.voltage
        ]
    )
    assert rounded(table(workbook["Imbalance"])[1]) == rounded(
        [
            [i.device, i.quantity, i.mean_pct, i.max_pct, naive(i.max_at, zone)]
            for i in report.imbalance
        ]
    )
    assert rounded(table(workbook["Completeness"])[1]) == rounded([
        [c.device, c.interval_s, naive(c.first, zone), naive(c.last, zone),
         c.expected_intervals, c.received_intervals, c.ratio, len(c.gaps)]
        for c in report.completeness
    ])  # fmt: skip
    assert workbook["Completeness"]["G5"].number_format == "0.0%"
    assert rounded(table(workbook["Gaps"])[1]) == rounded([
        [g.device, naive(g.start, zone), naive(g.end, zone), g.missing_intervals]
        for c in report.completeness for g in c.gaps
    ])  # fmt: skip


def test_sources_equal_the_model_and_names_stay_text(workbook: Any, report: CampaignReport) -> None:
    zone = report.period.timezone
    shown = HOSTILE_FILE.replace("\u202e", "\\u202e")
    assert rounded(table(workbook["Sources"])[1]) == rounded([
        [s.device, shown if s.file_name == HOSTILE_FILE else s.file_name, s.sha256, s.size,
         naive(s.uploaded_at, zone), naive(s.ingested_at, zone), naive(s.first_time, zone),
         naive(s.last_time, zone), s.points_written, s.points_verified]
        for s in report.sources
    ])  # fmt: skip
    cells = [row[1] for row in workbook["Sources"].iter_rows(min_row=5)]
    hostile = next(cell for cell in cells if str(cell.value).startswith("=HYPERLINK"))
    assert hostile.data_type == "s"  # text, not a formula Excel would run
    _, head = table(workbook["Report"])
    assert ["Company", report.company] in head
    assert ["Period start", naive(report.period.start, zone)] in head
    assert [["Note", note] for note in report.notes] == [r for r in head if r[0] == "Note"]


def test_a_formula_cell_would_be_told_apart(tmp_path: Path) -> None:
    """The check above can fail: openpyxl reads a real formula back as data type "f"."""
    book = openpyxl.Workbook()
    book.active["A1"] = '=HYPERLINK("http://example.invalid/","click")'
    book.save(tmp_path / "formula.xlsx")
    assert openpyxl.load_workbook(tmp_path / "formula.xlsx").active["A1"].data_type == "f"
