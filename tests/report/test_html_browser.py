"""The HTML report opened in Debian's Chromium: what a client's browser really shows.

No console error, no request but the file itself and its data: URIs (it opens offline),
every chart loaded and drawn (screenshot pixels), every table filled with the model's
figures, and the hostile names shown as text: no script element, no markup, no dialog.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from powerview.campaign_report.html import write_html
from powerview.campaign_report.model import CampaignReport
from tests.report.factory import HOSTILE_DEVICE, HOSTILE_LABEL
from tests.report.viewers import Page, chromium, coloured_share


@pytest.fixture(scope="module")
def opened(
    report: CampaignReport, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Page, bytes]]:
    folder = tmp_path_factory.mktemp("html")
    path = folder / "report.html"
    write_html(report, path)
    with chromium(folder / "profile") as page:
        page.open(path.as_uri())
        yield page, page.full_screenshot()


def test_no_console_error_exception_or_dialog(opened: tuple[Page, bytes]) -> None:
    page, _ = opened
    errors = [
        m
        for m in page.named("Runtime.consoleAPICalled")
        if m["params"]["type"] in ("error", "assert")
    ]
    errors += page.named("Runtime.exceptionThrown", "Page.javascriptDialogOpening")
    errors += [m for m in page.named("Log.entryAdded") if m["params"]["entry"]["level"] == "error"]
    assert errors == []


def test_only_the_file_itself_and_data_uris_are_requested(
    opened: tuple[Page, bytes], report: CampaignReport
) -> None:
    page, _ = opened
    urls = [m["params"]["request"]["url"] for m in page.named("Network.requestWillBeSent")]
    assert any(url.startswith("file://") for url in urls)
    assert [url for url in urls if not url.startswith(("file://", "data:"))] == []
    resources = page.evaluate(
        "performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:'))"
    )
    assert resources == []


def test_every_chart_is_loaded_and_drawn(
    opened: tuple[Page, bytes], report: CampaignReport
) -> None:
    page, screenshot = opened
    images: list[dict[str, Any]] = page.evaluate(
        """Array.from(document.images).map(i => {
             const r = i.getBoundingClientRect();
             return {src: i.src.slice(0, 22), complete: i.complete, natural: i.naturalWidth,
                     x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height};
           })"""
    )
    # The completeness timeline, then load curve, daily energy and typical day per device.
    assert len(images) == 1 + 3 * len(report.devices)
    assert all(i["src"] == "data:image/png;base64," and i["complete"] for i in images)
    assert all(i["natural"] > 0 and i["w"] > 300 and i["h"] > 100 for i in images)
    shot = Image.open(io.BytesIO(screenshot)).convert("RGB")
    for image in images:
        box = (int(image["x"]), int(image["y"]), int(image["x"] + image["w"]),
               int(image["y"] + image["h"]))  # fmt: skip
        assert coloured_share(shot.crop(box)) > 0.005, image


def test_tables_hold_the_figures(opened: tuple[Page, bytes], report: CampaignReport) -> None:
    page, _ = opened
    rows = page.evaluate(
        """Object.fromEntries(Array.from(document.querySelectorAll('table[id]')).map(t =>
             [t.id, Array.from(t.tBodies[0].rows).map(r =>
               Array.from(r.cells).map(c => c.innerText.trim()))]))"""
    )
    zone = ZoneInfo(report.period.timezone)
    assert rows["summary-table"] == [
        [p.device, p.label, f"{p.energy_kwh:,.1f}", f"{p.gap_kwh_estimate:,.1f}",
         f"{p.peak_kw:,.2f}", p.peak_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
         f"{p.base_load_kw:,.2f}", f"{p.day_kwh:,.1f}", f"{p.night_kwh:,.1f}",
         f"{p.weekday_kwh:,.1f}", f"{p.weekend_kwh:,.1f}"]
        for p in report.power
    ]  # fmt: skip
    assert [r[0] for r in rows["completeness-table"]] == report.devices
    assert [r[5] for r in rows["completeness-table"]] == [
        str(c.received_intervals) for c in report.completeness
    ]
    (gap,) = [g for c in report.completeness for g in c.gaps]
    assert rows["gaps-table"] == [[gap.device, "2026-03-25 10:00", "2026-03-25 16:00", "6 h 00 min",
                                   "36"]]  # fmt: skip
    assert [r[2] for r in rows["provenance-table"]] == [s.sha256 for s in report.sources]
    assert len(rows["voltage-table"]) == len(report.voltage)
    assert len(rows["imbalance-table"]) == len(report.imbalance)
    daily = page.evaluate(
        "Array.from(document.querySelectorAll('table.daily')).map(t => t.tBodies[0].rows.length)"
    )
    assert daily == [len(report.power[0].daily)] * len(report.devices)


def test_hostile_names_are_shown_as_text(opened: tuple[Page, bytes]) -> None:
    page, _ = opened
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.querySelectorAll('b').length") == 0
    text = page.evaluate("document.body.innerText")
    assert f"Device {HOSTILE_DEVICE}" in text
    assert HOSTILE_LABEL in text
    assert "\\u202egpj.tsv" in text  # the bidi override is shown, not obeyed


def test_the_report_is_one_file(report: CampaignReport, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_html(report, path)
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html
    assert "<link" not in html
    assert "http://" not in html.replace("http://example.invalid/", "")
    assert "https://" not in html
