"""The report's output formats: one writer per format, `writer(report, path)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from powerview.campaign_report.csv_output import write_csv
from powerview.campaign_report.model import CampaignReport

# One entry per line: each format's branch adds its own line.
WRITERS: dict[str, Callable[[CampaignReport, Path], None]] = {
    "csv": write_csv,
}
