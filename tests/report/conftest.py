"""The campaign report the writers' tests draw: several devices and days, a gap, hostile names."""

from __future__ import annotations

import pytest

from powerview.campaign_report.model import CampaignReport
from tests.report.factory import build_report


@pytest.fixture(scope="session")
def report() -> CampaignReport:
    return build_report()
