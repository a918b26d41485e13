"""The report's output formats: one writer per format, `writer(report, path)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from powerview.campaign_report.csv_output import write_csv
from powerview.campaign_report.html import write_html
from powerview.campaign_report.model import CampaignReport
from powerview.campaign_report.pdf import write_pdf
from powerview.campaign_report.xlsx import write_xlsx

# One entry per line.
WRITERS: dict[str, Callable[[CampaignReport, Path], None]] = {
    "html": write_html,
    "pdf": write_pdf,
    "xlsx": write_xlsx,
    "csv": write_csv,
}
