"""Every writer of WRITERS, on an empty campaign too, and charts with hostile labels."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from powerview.campaign_report import charts
from powerview.campaign_report.model import CampaignReport
from powerview.campaign_report.outputs import WRITERS
from tests.report.factory import HOSTILE_LABEL
from tests.report.viewers import poppler

MAGIC = {"html": b"<!DOCTYPE html>", "pdf": b"%PDF-", "xlsx": b"PK\x03\x04"}


@pytest.fixture(scope="module")
def empty(report: CampaignReport) -> CampaignReport:
    """A campaign whose period holds no data at all."""
    return dataclasses.replace(report, devices=[], power=[], voltage=[], imbalance=[],
                               completeness=[], sources=[])  # fmt: skip


@pytest.mark.parametrize("name", sorted(MAGIC))
def test_each_writer_writes_its_format(name: str, empty: CampaignReport, tmp_path: Path) -> None:
    path = tmp_path / f"report.{name}"
    WRITERS[name](empty, path)
    assert path.read_bytes().startswith(MAGIC[name])


def test_an_empty_campaign_says_so(empty: CampaignReport, tmp_path: Path) -> None:
    WRITERS["html"](empty, tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No power channel holds data in this period." in html
    assert "No ingested file in the ledger for this period." in html
    assert "<img" not in html
    WRITERS["pdf"](empty, tmp_path / "r.pdf")
    text = poppler("pdftotext", str(tmp_path / "r.pdf"), "-")
    assert "No device has data in this period." in text
    WRITERS["xlsx"](empty, tmp_path / "r.xlsx")
    book = openpyxl.load_workbook(tmp_path / "r.xlsx")
    assert all(sheet.max_row == 4 for sheet in book if sheet.title != "Report")


def test_labels_are_drawn_literally_not_as_math(report: CampaignReport) -> None:
    """`$\\nocommand{1}$` makes matplotlib's math parser fail the whole figure."""
    (channel,) = [p for p in report.power if p.label == HOSTILE_LABEL]
    chart = charts.load_curve(channel.device, [channel], ZoneInfo("UTC"))
    assert chart is not None
    assert chart.png.startswith(b"\x89PNG")
    assert charts.plain(HOSTILE_LABEL) == r"P \$\nocommand{1}\$ & <b>bold</b>"


def test_an_undefined_figure_is_shown_as_absent(report: CampaignReport, tmp_path: Path) -> None:
    """A NaN (a mean over nothing) is a dash in the HTML and an empty cell in Excel,
    never "nan" nor a file Excel refuses."""
    first = dataclasses.replace(report.power[0], base_load_kw=float("nan"))
    odd = dataclasses.replace(report, power=[first, *report.power[1:]])
    WRITERS["html"](odd, tmp_path / "r.html")
    assert ">nan<" not in (tmp_path / "r.html").read_text(encoding="utf-8")
    WRITERS["xlsx"](odd, tmp_path / "r.xlsx")
    summary = openpyxl.load_workbook(tmp_path / "r.xlsx")["Summary"]
    assert [cell.value for cell in summary[4]][7] == "Base load kW"
    assert summary.cell(row=5, column=8).value is None
    assert summary.cell(row=6, column=8).value == report.power[1].base_load_kw


def test_the_load_curve_is_broken_at_gaps_not_at_the_change_of_time() -> None:
    """A 6-hour gap leaves a hole in the line; the switch to summer time (the wall clock
    jumps an hour between two 10-minute intervals) does not."""
    start = dt.datetime(2026, 3, 29, 0, 0, tzinfo=dt.UTC)  # 01:00 -> 03:00 in Paris at 01:00 UTC
    times = [start + dt.timedelta(minutes=10 * n) for n in range(30)]
    times += [times[-1] + dt.timedelta(hours=6, minutes=10 * n) for n in range(1, 4)]
    zone = ZoneInfo("Europe/Paris")
    x = [charts._local(t, zone) for t in times]
    broken_x, broken_y = charts._broken_at_gaps(times, x, [1.0] * len(times))
    holes = [n for n, value in enumerate(broken_y) if math.isnan(value)]
    assert holes == [30]  # once, before the first point after the gap
    assert len(broken_x) == len(times) + 1
