"""The figures of a campaign report, aggregated by InfluxDB.

Python never reads a campaign's raw points: InfluxDB returns per-series counts,
first and last times, the logging interval (median spacing), the gaps, hourly sums,
counts and maxima (from `<company>_1h` when it holds exactly the raw points, else
`aggregateWindow` on the raw bucket), the peak (`max`), the night-time percentile
(`hourSelection` + `quantile`), voltage statistics and the phase imbalance. Python
then adds hours up into local days, day/night, weekday/weekend and the typical day.

Method (also stated in the report's notes):
- Each logged value is the mean power of one logging interval (the device's median
  spacing), so energy = sum of the received values x interval (rectangle rule). A
  missing interval adds nothing: gaps are never bridged. What they would hide is
  estimated apart, at the mean power of the same day.
- A gap is a spacing longer than 1.5 intervals between two received points of the
  device's reference channel (the one with the most points).
- Channels are told apart by their `channel_unit` tag (W or kW: power; V: voltage;
  A: current), never by their names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerview.campaign_report.flux import FluxSource, Params, parse_time
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
from powerview.exceptions import ReportError
from powerview.layout import check_name
from powerview.schema import MEASUREMENT

__all__ = ["POWER_UNITS", "ReportOptions", "build_report", "check_time_zone", "offset_stretches"]

# kW per unit of a power channel; the units a T302 logs (ARCHITECTURE.md section 4).
POWER_UNITS = {"W": 0.001, "kW": 1.0}
VOLTAGE_UNITS = ("V",)
CURRENT_UNITS = ("A",)
GAP_FACTOR = 1.5  # a spacing above 1.5 intervals misses at least one interval
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ReportOptions:
    """What the reader chooses; defaults are the usual audit conventions."""

    timezone: str = "UTC"
    day_hours: tuple[int, int] = (6, 22)  # local [start, end) hours of "day"; the rest is night
    base_load_percentile: int = 10
    voltage_band: tuple[float, float] = (207.0, 253.0)  # 230 V +- 10 % (EN 50160)
    max_curve_points: int = 2500  # per channel, for the load curve chart

    def __post_init__(self) -> None:
        start, end = self.day_hours
        if not (0 <= start < 24 and 0 < end <= 24 and start < end):
            raise ReportError(f"day hours {start}-{end}: need 0 <= start < end <= 24")
        if end - start == 24:
            raise ReportError("day hours 0-24 leave no night for the base load")
        if not 0 < self.base_load_percentile < 100:
            raise ReportError(f"base load percentile {self.base_load_percentile}: need 1..99")
        low, high = self.voltage_band
        if not 0 <= low < high:
            raise ReportError(f"voltage band {low}-{high}: need 0 <= low < high")
        check_time_zone(self.timezone)


def check_time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ReportError(f"{name!r} is not a time zone of the tz database") from None


@dataclass(frozen=True)
class _Series:
    """One stored series of the campaign (from the inventory query)."""

    channel_id: str
    unit: str
    label: str
    name: str
    device: str  # device_master_sn
    device_sn: str
    device_type: str
    subtype: str
    count: int
    first: dt.datetime
    last: dt.datetime

    @property
    def title(self) -> str:
        module = "" if self.device_sn == self.device else f"S{self.device_sn} "
        return (
            f"{module}{self.label} {self.name} ({'kW' if self.unit in POWER_UNITS else self.unit})"
        )


@dataclass(frozen=True)
class _Device:
    name: str
    reference: _Series
    interval_s: int
    gaps: list[Gap]


@dataclass
class _Hour:
    sum: float = 0.0
    count: int = 0
    max: float = -math.inf


# -- Flux ------------------------------------------------------------------------------
# Filters compare tags with `==` only, to parameters or to this module's constants:
# InfluxDB pushes such predicates down to its storage, while `contains()` makes it read
# every point of the range into Flux first (0.03 s against 0.8 s for one max() over
# the largest sample).


def _units(units: Iterable[str]) -> str:
    """A pushed-down predicate on the unit tag (the units are constants, not input)."""
    return "(" + " or ".join(f"r.channel_unit == {json.dumps(u)}" for u in sorted(units)) + ")"


def _flux(body: str, imports: str = "") -> str:
    """`body` after the campaign's selection `base()`; POWER and VOLTS are unit filters."""
    head = f"""{imports}
base = () => from(bucket: bucket)
    |> range(start: start, stop: stop)
    |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r.campaign == campaign)
"""
    return (
        (head + body).replace("POWER", _units(POWER_UNITS)).replace("VOLTS", _units(VOLTAGE_UNITS))
    )


_INVENTORY = _flux("""
base() |> count() |> yield(name: "count")
base() |> first() |> yield(name: "first")
base() |> last() |> yield(name: "last")
""")

_INTERVAL = _flux("""
base() |> filter(fn: (r) => r.device_master_sn == device and r.channel_id == id)
    |> elapsed(unit: 1s)
    |> map(fn: (r) => ({r with elapsed: float(v: r.elapsed)}))
    |> median(column: "elapsed", method: "exact_selector")
    |> keep(columns: ["channel_id", "elapsed"])
""")

_GAPS = _flux("""
base() |> filter(fn: (r) => r.device_master_sn == device and r.channel_id == id)
    |> elapsed(unit: 1s)
    |> filter(fn: (r) => r.elapsed > limit)
    |> keep(columns: ["_time", "elapsed"])
""")

_HOURLY_RAW = _flux(
    """
agg = (fn, name) => base() |> filter(fn: (r) => POWER)
    |> aggregateWindow(every: 1h, fn: fn, createEmpty: false, timeSrc: "_start",
                       location: timezone.location(name: tz))
    |> set(key: "_field", value: name)
    |> toFloat()
    |> keep(columns: ["_time", "_value", "_field", "channel_id"])
union(tables: [agg(fn: sum, name: "sum"), agg(fn: count, name: "count"), agg(fn: max, name: "max")])
""",
    imports='import "timezone"',
)

_HOURLY_1H = _flux("""
base()
    |> filter(fn: (r) => POWER and (r._field == "sum" or r._field == "count" or r._field == "max"))
    |> toFloat()
    |> keep(columns: ["_time", "_value", "_field", "channel_id"])
""")

_COUNT_1H = _flux("""
base() |> filter(fn: (r) => POWER and r._field == "count") |> group() |> sum()
""")

_VALUES = _flux("""
base() |> filter(fn: (r) => POWER) |> keep(columns: ["_time", "_value", "channel_id"])
""")

_PEAKS = _flux("""
base() |> filter(fn: (r) => POWER) |> max() |> keep(columns: ["_time", "_value", "channel_id"])
""")

_BASE_LOAD_LOCAL = _flux(
    """
base() |> filter(fn: (r) => POWER)
    |> hourSelection(start: night_start, stop: night_last, location: timezone.location(name: tz))
    |> quantile(q: q, method: "exact_selector")
    |> keep(columns: ["_time", "_value", "channel_id"])
""",
    imports='import "timezone"',
)


def _base_load_flux(segments: int) -> str:
    """The night-time percentile over `segments` stretches of one UTC offset each.

    `hourSelection` with a `location` converts every point's time (200 s against 30 s
    for 3.5 M points, bench/bench_report.py); in UTC hours per stretch of constant
    offset it selects the same points.
    """
    parts = [
        f"""    from(bucket: bucket)
        |> range(start: s{n}_start, stop: s{n}_stop)
        |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r.campaign == campaign and POWER)
        |> hourSelection(start: s{n}_first, stop: s{n}_last)
        |> keep(columns: ["_time", "_value", "channel_id"]),"""
        for n in range(segments)
    ]
    if segments == 1:  # union() wants two streams or more
        body = parts[0].rstrip(",")
    else:
        body = "\n".join(["union(tables: [", *parts, "])"])
    body += """
    |> group(columns: ["channel_id"])
    |> quantile(q: q, method: "exact_selector")
"""
    return body.replace("POWER", _units(POWER_UNITS))


_VOLTAGE = _flux("""
stat = (tables=<-, name) => tables
    |> toFloat()
    |> set(key: "_field", value: name)
    |> keep(columns: ["_value", "_field", "channel_id"])
union(tables: [
    base() |> filter(fn: (r) => VOLTS) |> min() |> stat(name: "min"),
    base() |> filter(fn: (r) => VOLTS) |> max() |> stat(name: "max"),
    base() |> filter(fn: (r) => VOLTS) |> mean() |> stat(name: "mean"),
    base() |> filter(fn: (r) => VOLTS)
        |> filter(fn: (r) => r._value < low or r._value > high, onEmpty: "keep")
        |> count() |> stat(name: "outside"),
])
""")

_IMBALANCE = _flux(
    """
pct = base()
    |> filter(fn: (r) => r.device_master_sn == device and r.device_type == "master"
        and (r.channel_id == p1 or r.channel_id == p2 or r.channel_id == p3))
    |> map(fn: (r) => ({_time: r._time, _value: r._value,
        phase: if r.channel_id == p1 then "p1" else if r.channel_id == p2 then "p2" else "p3"}))
    |> group()
    |> pivot(rowKey: ["_time"], columnKey: ["phase"], valueColumn: "_value")
    |> filter(fn: (r) => exists r.p1 and exists r.p2 and exists r.p3)
    |> map(fn: (r) => {
        m = (r.p1 + r.p2 + r.p3) / 3.0
        d1 = math.abs(x: r.p1 - m)
        d2 = math.abs(x: r.p2 - m)
        d3 = math.abs(x: r.p3 - m)
        d = math.mMax(x: d1, y: math.mMax(x: d2, y: d3))
        return {_time: r._time, m: m, _value: if m > 0.0 then d / m * 100.0 else 0.0}
    })
    |> filter(fn: (r) => r.m > 0.0)
pct |> mean() |> yield(name: "mean")
pct |> max() |> keep(columns: ["_time", "_value"]) |> yield(name: "max")
""",
    imports='import "math"',
)


# -- the report ------------------------------------------------------------------------


def build_report(
    source: FluxSource,
    company: str,
    campaign: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    options: ReportOptions | None = None,
    sources: list[SourceFile] | None = None,
) -> CampaignReport:
    """Every figure of `campaign`'s report over [start, end) (default: its data range).

    The period is widened to whole hours (UTC), the grain of the hourly aggregates.
    `sources` are the ingested files the figures rest on (the ledger's rows).
    """
    options = options or ReportOptions()
    check_name("company", company)
    check_name("campaign", campaign)
    zone = check_time_zone(options.timezone)
    if start is not None and end is not None and start >= end:
        raise ReportError(f"the report period is empty: {start.isoformat()} >= {end.isoformat()}")
    query_start = _floor_hour(start) if start else EPOCH
    query_stop = _ceil_hour(end) if end else _ceil_hour(dt.datetime.now(dt.UTC))
    params: dict[str, object] = {
        "bucket": company, "campaign": campaign, "start": query_start, "stop": query_stop,
    }  # fmt: skip
    series = _inventory(source, params)
    if not series:
        raise ReportError(
            f"no data for campaign {campaign!r} of company {company!r} in "
            f"[{query_start.isoformat()}, {query_stop.isoformat()})"
        )
    if start is None:
        params["start"] = query_start = _floor_hour(min(s.first for s in series))
    if end is None:
        params["stop"] = query_stop = _ceil_hour(
            max(s.last for s in series) + dt.timedelta(seconds=1)
        )
    devices = _devices(source, params, series)
    period = ReportPeriod(
        start=query_start,
        end=query_stop,
        timezone=options.timezone,
        day_hours=options.day_hours,
        base_load_percentile=options.base_load_percentile,
    )
    notes = _method_notes(options)
    power = [s for s in series if s.unit in POWER_UNITS]
    hourly, hourly_source = _hourly(source, params, power, zone, period)
    notes.append(f"Hourly sums read from {hourly_source}.")
    curves, curve_note = _load_curves(source, params, power, hourly, devices, options, zone)
    notes.append(curve_note)
    power_figures = _power_figures(
        source, params, power, hourly, curves, devices, options, zone, period
    )
    voltage = [s for s in series if s.unit in VOLTAGE_UNITS]
    voltage_figures = _voltage_figures(source, params, voltage, devices, options)
    imbalance = _imbalance(source, params, series)
    completeness = [_completeness(device) for device in devices.values()]
    return CampaignReport(
        company=company,
        campaign=campaign,
        period=period,
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        source=f"bucket {company} (raw); {hourly_source} for hourly figures",
        devices=sorted(devices),
        power=power_figures,
        voltage=voltage_figures,
        imbalance=imbalance,
        completeness=completeness,
        sources=sources or [],
        notes=notes,
    )


def _method_notes(options: ReportOptions) -> list[str]:
    day_start, day_end = options.day_hours
    low, high = options.voltage_band
    return [
        "Energy: each logged value is the mean power of one logging interval (the "
        "device's median spacing); energy is the sum of the received values times the "
        "interval (rectangle rule). Gaps are never bridged: a missing interval adds "
        "nothing, and the energy it would hold is estimated apart at the mean power "
        "of the same day.",
        f"A gap is a spacing over {GAP_FACTOR} logging intervals between two points of "
        "the device's reference channel (its channel with the most points); expected "
        "intervals are the received ones plus the missing ones, between the device's "
        "first and last point in the period.",
        "Peak demand: the highest logged interval mean, with the start of its interval.",
        f"Base load: the {options.base_load_percentile}th percentile (nearest rank) of the "
        f"night-time interval means, night being {day_end:02d}:00-{day_start:02d}:00 "
        f"({options.timezone}).",
        f"Day: {day_start:02d}:00-{day_end:02d}:00 local time; weekend: Saturday and "
        f"Sunday; days are calendar days in {options.timezone}. Typical day: the mean "
        "power of each local hour of day over the period, weekdays and weekend apart.",
        f"Voltage band {low:g}-{high:g} V; time outside counts the intervals whose mean "
        "is outside it. Phase imbalance: the largest deviation of a phase from the mean "
        "of the three, in % of that mean, over the intervals where all three are logged "
        "and their mean is above zero.",
        "Power, voltage and current channels are told apart by their unit tag (W or kW, V, A).",
    ]


def _inventory(source: FluxSource, params: Params) -> list[_Series]:
    found: dict[str, dict[str, str]] = {}
    facts: dict[tuple[str, str], str] = {}
    for row in source.rows(_INVENTORY, params):
        channel_id = row["channel_id"]
        found.setdefault(channel_id, row)
        result = row["result"]
        facts[(channel_id, result)] = row["_value"] if result == "count" else row["_time"]
    return [
        _Series(
            channel_id=channel_id,
            unit=row["channel_unit"],
            label=row.get("channel_label", ""),
            name=row.get("channel_name", ""),
            device=row["device_master_sn"],
            device_sn=row.get("device_sn", row["device_master_sn"]),
            device_type=row.get("device_type", ""),
            subtype=row.get("device_subtype", ""),
            count=int(facts[(channel_id, "count")]),
            first=parse_time(facts[(channel_id, "first")]),
            last=parse_time(facts[(channel_id, "last")]),
        )
        for channel_id, row in sorted(found.items())
    ]


def _devices(source: FluxSource, params: Params, series: list[_Series]) -> dict[str, _Device]:
    """Each device's logging interval (its reference channel's median spacing) and gaps."""
    references: dict[str, _Series] = {}
    for item in series:
        best = references.get(item.device)
        if best is None or item.count > best.count:
            references[item.device] = item
    medians = {
        row["channel_id"]: float(row["elapsed"])
        for reference in references.values()
        for row in source.rows(
            _INTERVAL, {**params, "device": reference.device, "id": reference.channel_id}
        )
    }
    devices = {}
    for name, reference in sorted(references.items()):
        # A device with one point has no spacing: one interval of unknown length; 600 s
        # is the T302's usual setting and only sizes that single interval.
        interval = max(1, round(medians.get(reference.channel_id, 600.0)))
        gaps = []
        limit = GAP_FACTOR * interval
        for row in source.rows(
            _GAPS, {**params, "device": name, "id": reference.channel_id, "limit": limit}
        ):
            end = parse_time(row["_time"])
            elapsed = int(row["elapsed"])
            gaps.append(
                Gap(
                    device=name,
                    start=end - dt.timedelta(seconds=elapsed),
                    end=end,
                    missing_intervals=round(elapsed / interval) - 1,
                )
            )
        devices[name] = _Device(name, reference, interval, sorted(gaps, key=lambda g: g.start))
    return devices


def _completeness(device: _Device) -> Completeness:
    received = device.reference.count
    missing = sum(gap.missing_intervals for gap in device.gaps)
    return Completeness(
        device=device.name,
        interval_s=device.interval_s,
        first=device.reference.first,
        last=device.reference.last,
        expected_intervals=received + missing,
        received_intervals=received,
        gaps=device.gaps,
    )


def _whole_hour_zone(zone: ZoneInfo, period: ReportPeriod) -> bool:
    """True if every UTC offset of the zone in the period is whole hours (UTC hours are
    then local hours, and the UTC-hour `_1h` buckets split local days exactly)."""
    moment = period.start
    while moment <= period.end:
        offset = moment.astimezone(zone).utcoffset() or dt.timedelta()
        if offset.total_seconds() % 3600:
            return False
        moment += dt.timedelta(days=1)
    offset = period.end.astimezone(zone).utcoffset() or dt.timedelta()
    return offset.total_seconds() % 3600 == 0


def _hourly(
    source: FluxSource,
    params: Params,
    power: list[_Series],
    zone: ZoneInfo,
    period: ReportPeriod,
) -> tuple[dict[str, dict[dt.datetime, _Hour]], str]:
    """Per power channel and hour: sum, count and max of the logged values."""
    hourly: dict[str, dict[dt.datetime, _Hour]] = defaultdict(dict)
    if not power:
        return hourly, "no power channel"
    company = str(params["bucket"])
    aggregated = f"{company}_1h"
    whole_hours = _whole_hour_zone(zone, period)
    raw_count = sum(s.count for s in power)
    flux, label = _HOURLY_RAW, f"bucket {company} (aggregateWindow 1h)"
    query: dict[str, object] = {**params, "tz": "UTC"}
    if not whole_hours:
        query["tz"] = str(zone.key)
    elif source.bucket_exists(aggregated):
        counted = [
            float(row["_value"]) for row in source.rows(_COUNT_1H, {**params, "bucket": aggregated})
        ]
        if counted and round(counted[0]) == raw_count:
            flux, label = _HOURLY_1H, f"bucket {aggregated} (its counts match the raw points)"
            query = {**params, "bucket": aggregated}
    for row in source.rows(flux, query):
        hour = hourly[row["channel_id"]].setdefault(parse_time(row["_time"]), _Hour())
        value = float(row["_value"])
        match row["_field"]:
            case "sum":
                hour.sum = value
            case "count":
                hour.count = round(value)
            case "max":
                hour.max = value
    return hourly, label


def _load_curves(
    source: FluxSource,
    params: Params,
    power: list[_Series],
    hourly: dict[str, dict[dt.datetime, _Hour]],
    devices: dict[str, _Device],
    options: ReportOptions,
    zone: ZoneInfo,
) -> tuple[dict[str, list[LoadPoint]], str]:
    """Per power channel: interval values if few enough, else hourly, else daily means."""
    curves: dict[str, list[LoadPoint]] = defaultdict(list)
    if not power:
        return curves, "No power channel: no load curve."
    if max(s.count for s in power) <= options.max_curve_points:
        scales = {s.channel_id: POWER_UNITS[s.unit] for s in power}
        for row in source.rows(_VALUES, params):
            kw = float(row["_value"]) * scales[row["channel_id"]]
            curves[row["channel_id"]].append(LoadPoint(parse_time(row["_time"]), kw, kw))
        return curves, "Load curve: every logged interval."
    hours = max(len(h) for h in hourly.values()) if hourly else 0
    for item in power:
        scale = POWER_UNITS[item.unit]
        buckets: dict[dt.datetime, list[_Hour]] = defaultdict(list)
        for moment, hour in hourly.get(item.channel_id, {}).items():
            if hours <= options.max_curve_points:
                key = moment
            else:
                local = moment.astimezone(zone)
                key = dt.datetime.combine(local.date(), dt.time(), zone).astimezone(dt.UTC)
            buckets[key].append(hour)
        curves[item.channel_id] = [
            LoadPoint(
                time=key,
                mean_kw=sum(h.sum for h in group) / sum(h.count for h in group) * scale,
                max_kw=max(h.max for h in group) * scale,
            )
            for key, group in sorted(buckets.items())
            if sum(h.count for h in group)
        ]
    grain = "hourly" if hours <= options.max_curve_points else "daily (local days)"
    return curves, f"Load curve: {grain} means and maxima of the logged intervals."


def _power_figures(
    source: FluxSource,
    params: Params,
    power: list[_Series],
    hourly: dict[str, dict[dt.datetime, _Hour]],
    curves: dict[str, list[LoadPoint]],
    devices: dict[str, _Device],
    options: ReportOptions,
    zone: ZoneInfo,
    period: ReportPeriod,
) -> list[PowerFigures]:
    if not power:
        return []
    peaks = {
        row["channel_id"]: (parse_time(row["_time"]), float(row["_value"]))
        for row in source.rows(_PEAKS, params)
    }
    day_start, day_end = options.day_hours
    # Only the hours holding data need their UTC offsets worked out (a --from years back).
    data = dataclasses.replace(
        period,
        start=max(period.start, _floor_hour(min(s.first for s in power))),
        end=min(period.end, _ceil_hour(max(s.last for s in power) + dt.timedelta(seconds=1))),
    )
    flux, night = _night_selection(params, zone, options, data)
    base_loads = {
        row["channel_id"]: float(row["_value"])
        for row in source.rows(flux, night)
        if row["_value"]  # a channel without night-time points has no base load
    }
    figures = []
    for item in power:
        scale = POWER_UNITS[item.unit]
        device = devices[item.device]
        interval_h = device.interval_s / 3600
        hours = hourly.get(item.channel_id, {})
        daily = _daily(hours, device, item, zone, scale, period)
        split: dict[str, float] = defaultdict(float)
        for moment, hour in hours.items():
            local = moment.astimezone(zone)
            kwh = hour.sum * scale * interval_h
            split["day" if day_start <= local.hour < day_end else "night"] += kwh
            split["weekend" if local.weekday() >= 5 else "weekday"] += kwh
        peak_at, peak = peaks.get(item.channel_id, (item.first, math.nan))
        figures.append(
            PowerFigures(
                device=item.device,
                channel=item.channel_id,
                label=item.title,
                energy_kwh=sum(d.kwh for d in daily),
                gap_kwh_estimate=sum(d.gap_kwh_estimate for d in daily),
                daily=daily,
                peak_kw=peak * scale,
                peak_at=peak_at,
                base_load_kw=base_loads.get(item.channel_id, math.nan) * scale,
                day_kwh=split["day"],
                night_kwh=split["night"],
                weekday_kwh=split["weekday"],
                weekend_kwh=split["weekend"],
                profile=_profile(hours, zone, scale),
                load_curve=curves.get(item.channel_id, []),
            )
        )
    return figures


def _night_selection(
    params: Params, zone: ZoneInfo, options: ReportOptions, period: ReportPeriod
) -> tuple[str, dict[str, object]]:
    """The base load's query: night hours in UTC per stretch of one offset, or (a zone
    with offsets that are not whole hours) `hourSelection` in the zone itself."""
    day_start, day_end = options.day_hours
    query: dict[str, object] = {
        "campaign": params["campaign"],
        "bucket": params["bucket"],
        "q": options.base_load_percentile / 100,
    }
    if not _whole_hour_zone(zone, period):
        night = {"tz": str(zone.key), "night_start": day_end % 24,
                 "night_last": (day_start - 1) % 24}  # fmt: skip
        return _BASE_LOAD_LOCAL, {**params, **night, "q": query["q"]}
    stretches = offset_stretches(zone, period.start, period.end)
    for n, (start, stop, offset_h) in enumerate(stretches):
        query |= {
            f"s{n}_start": start,
            f"s{n}_stop": stop,
            f"s{n}_first": (day_end - offset_h) % 24,
            f"s{n}_last": (day_start - 1 - offset_h) % 24,
        }
    return _base_load_flux(len(stretches)), query


def offset_stretches(
    zone: ZoneInfo, start: dt.datetime, end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime, int]]:
    """[start, end) cut where the zone's UTC offset changes (whole hours): (from, to, hours)."""

    def offset(moment: dt.datetime) -> int:
        return round((moment.astimezone(zone).utcoffset() or dt.timedelta()).total_seconds() / 3600)

    stretches = []
    begin, current = start, offset(start)
    moment = start
    while moment < end:
        if offset(moment) != current:
            stretches.append((begin, moment, current))
            begin, current = moment, offset(moment)
        moment += dt.timedelta(hours=1)  # the period is whole hours; so are DST changes
    stretches.append((begin, end, current))
    return stretches


def _daily(
    hours: dict[dt.datetime, _Hour],
    device: _Device,
    item: _Series,
    zone: ZoneInfo,
    scale: float,
    period: ReportPeriod,
) -> list[DailyEnergy]:
    sums: dict[dt.date, float] = defaultdict(float)
    counts: dict[dt.date, int] = defaultdict(int)
    for moment, hour in hours.items():
        day = moment.astimezone(zone).date()
        sums[day] += hour.sum
        counts[day] += hour.count
    interval = device.interval_s
    covered_from = max(device.reference.first, period.start)
    covered_to = min(device.reference.last + dt.timedelta(seconds=interval), period.end)
    result = []
    for day in sorted(sums):
        day_from = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
        day_to = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
        seconds = (min(day_to, covered_to) - max(day_from, covered_from)).total_seconds()
        received = counts[day]
        expected = max(received, round(seconds / interval))
        mean_kw = sums[day] / received * scale if received else 0.0
        result.append(
            DailyEnergy(
                day=day,
                kwh=sums[day] * scale * interval / 3600,
                received_intervals=received,
                expected_intervals=expected,
                gap_kwh_estimate=(expected - received) * mean_kw * interval / 3600,
            )
        )
    return result


def _profile(hours: dict[dt.datetime, _Hour], zone: ZoneInfo, scale: float) -> list[ProfilePoint]:
    """Mean power per local hour of day, weekdays and weekend apart."""
    sums: dict[tuple[int, bool], float] = defaultdict(float)
    counts: dict[tuple[int, bool], int] = defaultdict(int)
    for moment, hour in hours.items():
        local = moment.astimezone(zone)
        key = (local.hour, local.weekday() >= 5)
        sums[key] += hour.sum
        counts[key] += hour.count

    def mean(key: tuple[int, bool]) -> float | None:
        return sums[key] / counts[key] * scale if counts.get(key) else None

    return [ProfilePoint(h * 60, mean((h, False)), mean((h, True))) for h in range(24)]


def _voltage_figures(
    source: FluxSource,
    params: Params,
    voltage: list[_Series],
    devices: dict[str, _Device],
    options: ReportOptions,
) -> list[VoltageFigures]:
    if not voltage:
        return []
    low, high = options.voltage_band
    stats: dict[str, dict[str, float]] = defaultdict(dict)
    query = {**params, "low": low, "high": high}
    for row in source.rows(_VOLTAGE, query):
        stats[row["channel_id"]][row["_field"]] = float(row["_value"])
    return [
        VoltageFigures(
            device=item.device,
            channel=item.channel_id,
            label=item.title,
            min_v=stats[item.channel_id]["min"],
            mean_v=stats[item.channel_id]["mean"],
            max_v=stats[item.channel_id]["max"],
            outside_band_s=stats[item.channel_id].get("outside", 0.0)
            * devices[item.device].interval_s,
            band_v=(low, high),
        )
        for item in voltage
        if "min" in stats[item.channel_id]
    ]


def _imbalance(source: FluxSource, params: Params, series: list[_Series]) -> list[PhaseImbalance]:
    """Three-phase masters: the voltage (and current, if logged) imbalance."""
    result = []
    for quantity, units in (("voltage", VOLTAGE_UNITS), ("current", CURRENT_UNITS)):
        phases: dict[str, list[_Series]] = defaultdict(list)
        for item in series:
            if item.device_type == "master" and item.subtype == "tri" and item.unit in units:
                phases[item.device].append(item)
        for device, found in sorted(phases.items()):
            if len(found) != 3:
                continue
            rows = {
                row["result"]: row
                for row in source.rows(
                    _IMBALANCE,
                    {**params, "device": device}
                    | {f"p{n}": s.channel_id for n, s in enumerate(found, 1)},
                )
            }
            if "mean" in rows and "max" in rows:
                result.append(
                    PhaseImbalance(
                        device=device,
                        quantity=quantity,
                        mean_pct=float(rows["mean"]["_value"]),
                        max_pct=float(rows["max"]["_value"]),
                        max_at=parse_time(rows["max"]["_time"]),
                    )
                )
    return result


def _floor_hour(moment: dt.datetime) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: dt.datetime) -> dt.datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment.astimezone(dt.UTC) else floor + dt.timedelta(hours=1)
