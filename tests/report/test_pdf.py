"""The PDF report read back with poppler: A4 pages, none blank, charts drawn, and the
text (pdftotext) holding the model's figures and the hostile names as written."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from PIL import Image

from powerview.campaign_report.model import CampaignReport
from powerview.campaign_report.pdf import write_pdf
from tests.report.factory import HOSTILE_DEVICE
from tests.report.viewers import coloured_share, poppler

A4_POINTS = (595.28, 841.89)


@pytest.fixture(scope="module")
def pdf(report: CampaignReport, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "report.pdf"
    write_pdf(report, path)
    return path


def test_pages_are_a4_and_none_is_blank(pdf: Path, report: CampaignReport) -> None:
    sizes = re.findall(r"Page\s+\d+ size:\s+([\d.]+) x ([\d.]+) pts",
                       poppler("pdfinfo", "-f", "1", "-l", "999", str(pdf)))  # fmt: skip
    assert len(sizes) >= 2 + len(report.devices)
    for width, height in sizes:  # portrait, or landscape for the wide tables
        assert sorted((round(float(width), 1), round(float(height), 1))) == [595.3, 841.9]
    poppler("pdftoppm", "-r", "40", "-png", str(pdf), str(pdf.parent / "page"))
    pages = sorted(pdf.parent.glob("page-*.png"))
    assert len(pages) == len(sizes)
    with_charts = 0
    for page in pages:
        grey = np.asarray(Image.open(page).convert("L"))
        assert (grey < 200).mean() > 0.005, page.name  # more than a footer
        with_charts += coloured_share(Image.open(page)) > 0.01
    # Every device's charts, and the completeness timeline, are drawn in colour.
    assert with_charts >= 1 + len(report.devices)


def test_text_holds_the_figures(pdf: Path, report: CampaignReport) -> None:
    text = poppler("pdftotext", "-raw", str(pdf), "-")
    words = text.split()
    zone = ZoneInfo(report.period.timezone)
    assert "Energy measurement report" in text
    assert f"{report.company} · {report.campaign}" in text
    for power in report.power:
        assert f"{power.energy_kwh:,.1f}" in words
        assert f"{power.peak_kw:,.2f}" in words
    peak = report.power[0].peak_at.astimezone(zone)
    assert f"{peak:%Y-%m-%d} {peak:%H:%M}" in text
    assert "2026-03-25 10:00 2026-03-25 16:00 6 h 00 min 36" in text  # the gap
    assert f"Device {HOSTILE_DEVICE}" in text
    # A SHA-256 wraps inside its cell: its pieces follow one another.
    joined = text.replace("\n", "")
    assert all(source.sha256 in joined for source in report.sources)
    total = int(re.findall(r"Pages:\s+(\d+)", poppler("pdfinfo", str(pdf)))[0])
    footers = [(int(n), int(of)) for n, of in re.findall(r"Page (\d+) of (\d+)", text)]
    assert footers == [(n, total) for n in range(1, total + 1)]
