"""What a campaign report holds: plain data, computed by `figures`, drawn by the writers.

Every figure says where it comes from (bucket, interval, files) so that an auditor can
trace it; times are timezone-aware (UTC inside, shown in the report's time zone).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gap:
    """Intervals without data between two received ones, never bridged silently."""

    device: str
    start: dt.datetime  # end of the last interval received before the gap
    end: dt.datetime  # start of the first interval received after it
    missing_intervals: int


@dataclass(frozen=True)
class DailyEnergy:
    day: dt.date  # calendar day in the report's time zone
    kwh: float  # integrated over the intervals received that day only
    received_intervals: int
    expected_intervals: int
    gap_kwh_estimate: float  # what the missing intervals would hold at that day's mean power


@dataclass(frozen=True)
class ProfilePoint:
    """Mean power at one time of day (the typical-day profile)."""

    minute_of_day: int
    weekday_kw: float | None
    weekend_kw: float | None


@dataclass(frozen=True)
class LoadPoint:
    time: dt.datetime
    mean_kw: float
    max_kw: float


@dataclass(frozen=True)
class PowerFigures:
    """One power channel of one device."""

    device: str
    channel: str  # the channel tag as stored in InfluxDB
    label: str  # what a reader sees (e.g. "P L1 (kW)")
    energy_kwh: float
    gap_kwh_estimate: float
    daily: list[DailyEnergy]
    peak_kw: float  # the highest interval mean
    peak_at: dt.datetime  # start of that interval
    base_load_kw: float  # the base_load_percentile of night-time interval means
    day_kwh: float
    night_kwh: float
    weekday_kwh: float
    weekend_kwh: float
    profile: list[ProfilePoint]
    load_curve: list[LoadPoint]  # at most a few thousand points, for the chart


@dataclass(frozen=True)
class VoltageFigures:
    device: str
    channel: str
    label: str
    min_v: float
    mean_v: float
    max_v: float
    outside_band_s: float  # seconds of intervals whose mean is outside the band
    band_v: tuple[float, float]


@dataclass(frozen=True)
class PhaseImbalance:
    """Three-phase masters: max deviation from the mean of the three phases, in %."""

    device: str
    quantity: str  # "voltage" or "current"
    mean_pct: float
    max_pct: float
    max_at: dt.datetime


@dataclass(frozen=True)
class Completeness:
    device: str
    interval_s: int  # the logging interval, from the data
    first: dt.datetime
    last: dt.datetime
    expected_intervals: int
    received_intervals: int
    gaps: list[Gap]

    @property
    def ratio(self) -> float:
        return self.received_intervals / self.expected_intervals if self.expected_intervals else 0.0


@dataclass(frozen=True)
class SourceFile:
    """One ingested file the figures rest on (from the ingestion ledger)."""

    device: str
    file_name: str
    sha256: str
    size: int
    uploaded_at: dt.datetime | None
    ingested_at: dt.datetime
    first_time: dt.datetime | None
    last_time: dt.datetime | None
    points_written: int
    points_verified: int | None


@dataclass(frozen=True)
class ReportPeriod:
    start: dt.datetime
    end: dt.datetime
    timezone: str  # IANA name, e.g. "Europe/Paris"
    day_hours: tuple[int, int]  # local [start, end) hours counted as "day"
    base_load_percentile: int


@dataclass(frozen=True)
class CampaignReport:
    company: str
    campaign: str
    period: ReportPeriod
    generated_at: dt.datetime
    source: str  # e.g. "bucket acme (raw, 10-min intervals); acme_1h for the load curve"
    devices: list[str]
    power: list[PowerFigures]
    voltage: list[VoltageFigures]
    imbalance: list[PhaseImbalance]
    completeness: list[Completeness]
    sources: list[SourceFile]
    notes: list[str] = field(default_factory=list)  # method statements and warnings, shown as is
