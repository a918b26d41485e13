"""A realistic CampaignReport built in Python, for the writers' tests and the benchmark.

The figures follow from one synthetic load (a base load, office hours on weekdays,
a little on weekend mornings) sampled every 10 minutes: daily energy, peaks and the
profile are computed here from those samples, so they agree with each other the way
the real figures do. Names are hostile on purpose where a client chooses them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import defaultdict
from zoneinfo import ZoneInfo

from powerview.campaign_report.model import (
    CampaignReport,
    Completeness,
    DailyEnergy,
    Gap,
    LoadPoint,
    PhaseImbalance,
    PowerFigures,
    ProfilePoint,
    ReportPeriod,
    SourceFile,
    VoltageFigures,
)

UTC = dt.UTC
ZONE = "Europe/Paris"
INTERVAL_S = 600
# A client names its devices and files: the report must show these as text.
HOSTILE_DEVICE = "<script>alert(1)</script>"
HOSTILE_LABEL = r"P $\nocommand{1}$ & <b>bold</b>"
HOSTILE_FILE = '=HYPERLINK("http://example.invalid/","click")\u202egpj.tsv'
# 2026-03-23 is a Monday; the week holds the switch to summer time (Sunday 29 March).
START = dt.datetime(2026, 3, 22, 23, 0, tzinfo=UTC)  # 00:00 in Paris
DAYS = 8


def power_kw(moment: dt.datetime, scale: float, zone: ZoneInfo) -> float:
    """The synthetic load: base, office hours on weekdays, a weekend morning bump."""
    local = moment.astimezone(zone)
    hour = local.hour + local.minute / 60
    base = 0.35 * scale
    if local.weekday() < 5 and 8 <= hour < 18:
        return base + scale * (2.0 + 0.8 * math.sin(math.pi * (hour - 8) / 10))
    if local.weekday() >= 5 and 9 <= hour < 12:
        return base + 0.6 * scale
    return base


def _power(
    interval_s: int,
    device: str,
    channel: str,
    label: str,
    scale: float,
    times: list[dt.datetime],
    zone: ZoneInfo,
    period: ReportPeriod,
    expected_per_day: dict[dt.date, int],
) -> PowerFigures:
    hours = interval_s / 3600
    samples = [
        (t, power_kw(t, scale, zone) * (1 + 0.01 * (sum(channel.encode()) % 7))) for t in times
    ]
    by_day: dict[dt.date, list[float]] = defaultdict(list)
    for t, kw in samples:
        by_day[t.astimezone(zone).date()].append(kw)
    daily = []
    for day in sorted(expected_per_day):
        values = by_day.get(day, [])
        missing = expected_per_day[day] - len(values)
        mean = sum(values) / len(values) if values else 0.0
        daily.append(
            DailyEnergy(
                day=day,
                kwh=round(sum(values) * hours, 3),
                received_intervals=len(values),
                expected_intervals=expected_per_day[day],
                gap_kwh_estimate=round(missing * mean * hours, 3),
            )
        )
    peak_at, peak_kw = max(samples, key=lambda s: s[1])
    day_start, day_end = period.day_hours
    is_day = [day_start <= t.astimezone(zone).hour < day_end for t, _ in samples]
    night = sorted(kw for (_, kw), d in zip(samples, is_day, strict=True) if not d)
    weekend = [t.astimezone(zone).weekday() >= 5 for t, _ in samples]
    profile_sums: dict[tuple[int, bool], list[float]] = defaultdict(list)
    for t, kw in samples:
        local = t.astimezone(zone)
        profile_sums[(local.hour * 60 + local.minute, local.weekday() >= 5)].append(kw)

    def mean_at(minute: int, weekend_day: bool) -> float | None:
        values = profile_sums.get((minute, weekend_day))
        return round(sum(values) / len(values), 4) if values else None

    step = max(10, interval_s // 60)
    profile = [ProfilePoint(m, mean_at(m, False), mean_at(m, True)) for m in range(0, 1440, step)]
    return PowerFigures(
        device=device,
        channel=channel,
        label=label,
        energy_kwh=round(sum(d.kwh for d in daily), 3),
        gap_kwh_estimate=round(sum(d.gap_kwh_estimate for d in daily), 3),
        daily=daily,
        peak_kw=round(peak_kw, 3),
        peak_at=peak_at,
        base_load_kw=round(night[len(night) * period.base_load_percentile // 100], 3),
        day_kwh=round(sum(kw for (_, kw), d in zip(samples, is_day, strict=True) if d) * hours, 3),
        night_kwh=round(sum(night) * hours, 3),
        weekday_kwh=round(
            sum(kw for (_, kw), w in zip(samples, weekend, strict=True) if not w) * hours, 3
        ),
        weekend_kwh=round(
            sum(kw for (_, kw), w in zip(samples, weekend, strict=True) if w) * hours, 3
        ),
        profile=profile,
        load_curve=[LoadPoint(t, round(kw, 4), round(kw * 1.15, 4)) for t, kw in samples],
    )


def build_report(
    devices: int = 3,
    days: int = DAYS,
    channels: int = 3,
    hostile: bool = True,
    interval_s: int = INTERVAL_S,
) -> CampaignReport:
    """`devices` loggers over `days` days, `channels` power channels each; the second
    device has a 6-hour gap on day 3; the last one is named like a script when `hostile`."""
    zone = ZoneInfo(ZONE)
    first_day = START.astimezone(zone).date()
    end = dt.datetime.combine(first_day + dt.timedelta(days=days), dt.time(), tzinfo=zone)
    period = ReportPeriod(
        start=START,
        end=end.astimezone(UTC),
        timezone=ZONE,
        day_hours=(7, 21),
        base_load_percentile=10,
    )
    all_times = []
    moment = period.start
    while moment < period.end:
        all_times.append(moment)
        moment += dt.timedelta(seconds=interval_s)
    expected_per_day: dict[dt.date, int] = defaultdict(int)
    for t in all_times:
        expected_per_day[t.astimezone(zone).date()] += 1
    names = [f"0200{800 + i:04d}" for i in range(devices)]
    if hostile and devices > 1:
        names[-1] = HOSTILE_DEVICE
    power, voltage, imbalance, completeness, sources = [], [], [], [], []
    for number, device in enumerate(names):
        gaps, times = [], list(all_times)
        if number == 1:
            gap_start = START + dt.timedelta(days=2, hours=10)
            gap_end = gap_start + dt.timedelta(hours=6)
            times = [t for t in all_times if not gap_start <= t < gap_end]
            gaps.append(Gap(device, gap_start, gap_end, missing_intervals=6 * 3600 // interval_s))
        for c in range(channels):
            label = (
                HOSTILE_LABEL
                if hostile and number == 0 and c == channels - 1
                else (f"Voie{c + 1} (kW)")
            )
            power.append(
                _power(
                    interval_s,
                    device,
                    f"M{device}_Voie{c + 1}_W",
                    label,
                    1.0 + 0.5 * c,
                    times,
                    zone,
                    period,
                    expected_per_day,
                )
            )
        if number == 0:
            for phase in (1, 2, 3):
                voltage.append(
                    VoltageFigures(
                        device,
                        f"M{device}_Ph {phase}_V",
                        f"Ph {phase} (V)",
                        226.4 + phase,
                        230.1 + phase / 10,
                        243.98 - phase,
                        1800.0 * phase,
                        (207.0, 253.0),
                    )
                )
            imbalance.append(
                PhaseImbalance(device, "voltage", 0.42, 1.87, START + dt.timedelta(days=1, hours=8))
            )
            imbalance.append(
                PhaseImbalance(
                    device, "current", 6.5, 23.25, START + dt.timedelta(days=3, hours=13)
                )
            )
        completeness.append(
            Completeness(
                device,
                interval_s,
                times[0],
                times[-1] + dt.timedelta(seconds=interval_s),
                len(all_times),
                len(times),
                gaps,
            )
        )
        for day in range(days):
            name = (
                HOSTILE_FILE
                if hostile and number == 0 and day == 0
                else (f"T302_{(START + dt.timedelta(days=day)):%y%m%d}_000000_UTC.tsv")
            )
            first = START + dt.timedelta(days=day)
            written = 86400 // interval_s * (channels + (3 if number == 0 else 0))
            sources.append(
                SourceFile(
                    device=device,
                    file_name=name,
                    sha256=hashlib.sha256(f"{device}/{day}".encode()).hexdigest(),
                    size=38_000 + 17 * day,
                    uploaded_at=first + dt.timedelta(days=1, minutes=3),
                    ingested_at=first + dt.timedelta(days=1, minutes=4),
                    first_time=first,
                    last_time=first + dt.timedelta(hours=23, minutes=50),
                    points_written=written,
                    points_verified=None
                    if day == 1
                    else written - (5 if number == 1 and day == 2 else 0),
                )
            )
    return CampaignReport(
        company="acme",
        campaign="lyon-warehouse",
        period=period,
        generated_at=dt.datetime(2026, 4, 2, 9, 30, tzinfo=UTC),
        source="bucket acme (raw, 10-min intervals); acme_1h for the load curve",
        devices=names,
        power=power,
        voltage=voltage,
        imbalance=imbalance,
        completeness=completeness,
        sources=sources,
        notes=[
            "Energy integrates the logged power over the intervals received; gaps are "
            "never bridged, and the energy they would hold is estimated separately.",
            "Base load: the 10th percentile of night-time interval means (21:00-07:00).",
            "A <b>note</b> with markup & a client's words stays text.",
        ],
    )
