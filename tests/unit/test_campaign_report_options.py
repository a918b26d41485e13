"""The report command's option parsing and the UTC-offset stretches of its night hours."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from powerview.campaign_report.figures import offset_stretches
from powerview.campaign_report.run import default_out, parse_moment, parse_span
from powerview.exceptions import ReportError

UTC = dt.UTC


def test_a_time_without_offset_is_in_the_reports_time_zone() -> None:
    assert parse_moment("2025-07-01", "Europe/Paris") == dt.datetime(2025, 6, 30, 22, tzinfo=UTC)
    assert parse_moment("2025-12-01T06:00", "Europe/Paris") == dt.datetime(
        2025, 12, 1, 5, tzinfo=UTC
    )
    assert parse_moment("2025-07-01T00:00:00Z", "Europe/Paris") == dt.datetime(
        2025, 7, 1, tzinfo=UTC
    )
    with pytest.raises(ReportError, match="not an ISO 8601"):
        parse_moment("yesterday", "UTC")


def test_spans_and_default_paths() -> None:
    assert parse_span("6-22", "--day-hours") == (6.0, 22.0)
    assert parse_span("207-253", "--voltage-band") == (207.0, 253.0)
    with pytest.raises(ReportError, match="--day-hours '6': expected LOW-HIGH"):
        parse_span("6", "--day-hours")
    assert default_out("acme", "c1", "pdf") == Path("acme-c1.pdf")
    assert default_out("acme", "c1", "csv") == Path("acme-c1-csv")


def test_stretches_of_one_offset_cut_at_the_dst_changes() -> None:
    paris = ZoneInfo("Europe/Paris")
    start = dt.datetime(2025, 10, 20, tzinfo=UTC)
    end = dt.datetime(2026, 4, 1, tzinfo=UTC)

    stretches = offset_stretches(paris, start, end)

    assert stretches == [
        (start, dt.datetime(2025, 10, 26, 1, tzinfo=UTC), 2),
        (dt.datetime(2025, 10, 26, 1, tzinfo=UTC), dt.datetime(2026, 3, 29, 1, tzinfo=UTC), 1),
        (dt.datetime(2026, 3, 29, 1, tzinfo=UTC), end, 2),
    ]
    assert offset_stretches(ZoneInfo("UTC"), start, end) == [(start, end, 0)]
