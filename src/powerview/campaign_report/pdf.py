"""The campaign report as PDF: the same HTML laid out by WeasyPrint (Pango underneath).

WeasyPrint honours the template's print CSS (A4, page breaks, running footer with page
numbers). It loads nothing but the data: URIs the HTML itself holds: any other URL is
refused, so a report can never make the server fetch a file or a web address.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from powerview.campaign_report.html import render_html
from powerview.campaign_report.model import CampaignReport
from powerview.exceptions import ConfigError

# WeasyPrint logs each layout step at INFO: noise in PowerView's log, not news.
logging.getLogger("weasyprint").setLevel(logging.WARNING)
logging.getLogger("fontTools").setLevel(logging.WARNING)


def write_pdf(report: CampaignReport, path: Path) -> None:
    weasyprint = _weasyprint()
    # A refused URL is skipped with a warning (fail_on_errors off): the HTML holds none.
    fetcher = weasyprint.URLFetcher(allowed_protocols={"data"}, fail_on_errors=False)
    weasyprint.HTML(string=render_html(report), url_fetcher=fetcher).write_pdf(path)


def _weasyprint() -> Any:
    """WeasyPrint, imported when a PDF is asked for: it loads Pango through ctypes."""
    try:
        import weasyprint
    except OSError as exc:  # the shared library is missing, not the Python package
        raise ConfigError(
            "PDF output needs Pango (Debian: libpango-1.0-0 libpangoft2-1.0-0, "
            f"see the Makefile's apt target): {exc}"
        ) from exc
    return weasyprint
