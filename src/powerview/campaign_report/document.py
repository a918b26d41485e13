"""The report as one JSON-able document (`powerview report --json`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from powerview.campaign_report.model import CampaignReport


def as_document(report: CampaignReport) -> dict[str, Any]:
    """The model's fields as plain data; a figure that does not exist (NaN) is null,
    days are ISO dates, and each completeness row carries its ratio."""
    document: dict[str, Any] = _plain(dataclasses.asdict(report))
    for row, completeness in zip(document["completeness"], report.completeness, strict=True):
        row["ratio"] = completeness.ratio
    return document


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    return value
