"""The report's charts, drawn with matplotlib into PNG bytes embedded as data: URIs.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas, never pyplot:
no display, no global figure registry to leak memory across a long worker. The PNG
bytes go into the HTML as `data:` URIs, so the report is one file that opens offline,
and WeasyPrint draws the same bytes into the PDF.

Names and labels come from clients: they are drawn as plain text (a `$` would start
matplotlib's math mode, and a malformed formula fails the whole drawing), with control
characters shown as escapes like everywhere else (`plain_text.visible`).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display is ever opened

from matplotlib import dates as mdates
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from powerview.campaign_report.model import (
    CampaignReport,
    Completeness,
    Gap,
    PowerFigures,
    ReportPeriod,
)
from powerview.plain_text import visible

# A4 text width is about 180 mm; 7 x 3 inches at 150 dpi stays sharp on paper and
# keeps one chart near 60-120 KB.
WIDTH_IN = 7.2
HEIGHT_IN = 3.0
DPI = 150
# Received data, estimated gaps and missing data: the same three colours in every chart.
RECEIVED = "#2b6cb0"
ESTIMATE = "#dd6b20"
MISSING = "#c53030"
LEGEND_COLUMNS = 4
LABEL_CHARS = 40
# More lines or stacked colours than this cannot be told apart (the colour cycle has 10);
# drawing 30 series of 90 bars also took most of a report's time (bench_report_render).
SHOWN_CHANNELS = 8


Key = TypeVar("Key", dt.datetime, dt.date, int)
_EPOCH_DAYS = float(mdates.date2num(dt.datetime(1970, 1, 1)))


@dataclass(frozen=True)
class Chart:
    """One drawn chart: what it shows (its alt text) and its PNG bytes."""

    title: str
    alt: str
    png: bytes

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class DeviceCharts:
    device: str
    load_curve: Chart | None
    daily_energy: Chart | None
    typical_day: Chart | None

    @property
    def all(self) -> list[Chart]:
        return [c for c in (self.load_curve, self.daily_energy, self.typical_day) if c]


@dataclass(frozen=True)
class ReportCharts:
    completeness: Chart | None
    devices: dict[str, DeviceCharts]


def largest(
    channels: Sequence[PowerFigures], values: Callable[[PowerFigures], dict[Key, float]]
) -> list[tuple[str, dict[Key, float]]]:
    """The channels a chart draws: all of them up to SHOWN_CHANNELS, else the largest by
    energy and one series summing the others (kW and kWh add up), in channel order."""
    if len(channels) <= SHOWN_CHANNELS:
        return [(legend_label(c.label), values(c)) for c in channels]
    ranked = sorted(channels, key=lambda c: c.energy_kwh, reverse=True)
    kept = {id(c) for c in ranked[: SHOWN_CHANNELS - 1]}
    series = [(legend_label(c.label), values(c)) for c in channels if id(c) in kept]
    others: dict[Key, float] = defaultdict(float)
    for channel in channels:
        if id(channel) not in kept:
            for key, value in values(channel).items():
                others[key] += value
    series.append((f"{len(channels) - len(kept)} other channels (sum)", dict(others)))
    return series


def _shown(channels: Sequence[PowerFigures]) -> str:
    if len(channels) <= SHOWN_CHANNELS:
        return f"{len(channels)} channel(s)"
    return (f"the {SHOWN_CHANNELS - 1} largest of {len(channels)} channels by energy and "
            "the sum of the others")  # fmt: skip


def legend_label(label: str) -> str:
    """A client's label for a legend: plain, and cut so that the plot keeps its width."""
    shown = plain(label)
    return shown if len(shown) <= LABEL_CHARS else shown[: LABEL_CHARS - 1] + "\u2026"


def plain(text: str) -> str:
    """`text` as matplotlib draws it literally: no math mode, controls escaped."""
    return visible(text).replace("$", r"\$")


def draw_all(report: CampaignReport) -> ReportCharts:
    """Every chart of the report, per device, plus the completeness timeline."""
    zone = ZoneInfo(report.period.timezone)
    devices = {}
    for device in report.devices:
        channels = [p for p in report.power if p.device == device]
        devices[device] = DeviceCharts(
            device=device,
            load_curve=load_curve(
                device,
                channels,
                zone,
                [g for c in report.completeness if c.device == device for g in c.gaps],
            ),
            daily_energy=daily_energy(device, channels),
            typical_day=typical_day(device, channels),
        )
    return ReportCharts(
        completeness=completeness_timeline(report.completeness, report.period), devices=devices
    )


def load_curve(
    device: str, channels: Sequence[PowerFigures], zone: ZoneInfo, gaps: Sequence[Gap] = ()
) -> Chart | None:
    """Interval mean power over the campaign, one line per channel, in local time; the
    device's gaps shaded, so that a hole in a line is never taken for zero power."""
    drawn = [c for c in channels if c.load_curve]
    if not drawn:
        return None
    figure, axes = _figure()
    series = largest(drawn, lambda c: {p.time: p.mean_kw for p in c.load_curve})
    for label, values in series:
        times = sorted(values)
        x, y = _broken_at_gaps(times, [_local(t, zone) for t in times], [values[t] for t in times])
        axes.plot(x, y, linewidth=0.8, label=label)
    for number, gap in enumerate(gaps):
        axes.axvspan(_local(gap.start, zone), _local(gap.end, zone), color=MISSING, alpha=0.15,
                     linewidth=0, label=None if number else "gap (no data)")  # fmt: skip
    _time_axis(axes)
    axes.set_ylabel("kW (interval mean)")
    _legend(axes)
    return _chart(
        figure,
        f"Load curve, {device}",
        f"Load curve of {device}: mean power per interval, {_shown(drawn)}, local time",
    )


def daily_energy(device: str, channels: Sequence[PowerFigures]) -> Chart | None:
    """Energy per day, stacked by channel; the gap estimates hatched on top, apart."""
    drawn = [c for c in channels if c.daily]
    if not drawn:
        return None
    days = sorted({d.day for c in drawn for d in c.daily})
    figure, axes = _figure()
    bottom = [0.0] * len(days)
    for label, values in largest(drawn, lambda c: {d.day: d.kwh for d in c.daily}):
        heights = [values.get(day, 0.0) for day in days]
        axes.bar(range(len(days)), heights, bottom=bottom, width=0.8, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    estimates = [sum(d.gap_kwh_estimate for c in drawn for d in c.daily if d.day == day)
                 for day in days]  # fmt: skip
    if any(estimates):
        axes.bar(
            range(len(days)),
            estimates,
            bottom=bottom,
            width=0.8,
            fill=False,
            edgecolor=ESTIMATE,
            hatch="////",
            linewidth=0.8,
            label="gap estimate (not measured)",
        )
    step = max(1, len(days) // 15)
    axes.set_xticks(range(0, len(days), step))
    axes.set_xticklabels(
        [days[i].strftime("%d %b") for i in range(0, len(days), step)],
        rotation=45,
        ha="right",
        fontsize=7,
    )
    axes.set_ylabel("kWh per day")
    _legend(axes)
    return _chart(
        figure,
        f"Daily energy, {device}",
        f"Daily energy of {device} over {len(days)} day(s), {_shown(drawn)} stacked, "
        "estimates for gaps hatched",
    )


def typical_day(device: str, channels: Sequence[PowerFigures]) -> Chart | None:
    """Mean power by time of day: weekdays solid, weekend dashed, same colour per channel."""
    drawn = [c for c in channels if c.profile]
    if not drawn:
        return None
    figure, axes = _figure()
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    weekdays = largest(drawn, lambda c: {p.minute_of_day: p.weekday_kw for p in c.profile
                                         if p.weekday_kw is not None})  # fmt: skip
    weekends = dict(largest(drawn, lambda c: {p.minute_of_day: p.weekend_kw for p in c.profile
                                              if p.weekend_kw is not None}))  # fmt: skip
    for number, (label, weekday) in enumerate(weekdays):
        colour = cycle[number % len(cycle)]
        minutes = sorted(weekday)
        axes.plot([m / 60 for m in minutes], [weekday[m] for m in minutes], color=colour,
                  linewidth=1.0, label=label)  # fmt: skip
        weekend = weekends.get(label, {})
        minutes = sorted(weekend)
        axes.plot([m / 60 for m in minutes], [weekend[m] for m in minutes], color=colour,
                  linewidth=1.0, linestyle="--")  # fmt: skip
    axes.set_xlim(0, 24)
    axes.set_xticks(range(0, 25, 3))
    axes.set_xticklabels([f"{h:02d}:00" for h in range(0, 25, 3)], fontsize=7)
    axes.set_xlabel("time of day (local)")
    axes.set_ylabel("mean kW")
    # One entry per channel (its colour), then what solid and dashed mean.
    _legend(axes, [(Line2D([], [], color="#4a5568"), "weekdays (Mon-Fri)"),
                   (Line2D([], [], color="#4a5568", linestyle="--"), "weekend")])  # fmt: skip
    return _chart(
        figure,
        f"Typical day, {device}",
        f"Typical-day profile of {device}: mean power by time of day, weekdays and weekend, "
        f"{_shown(drawn)}",
    )


def completeness_timeline(
    completeness: Sequence[Completeness], period: ReportPeriod
) -> Chart | None:
    """One row per device: data received, gaps, and the period outside the data."""
    if not completeness:
        return None
    zone = ZoneInfo(period.timezone)
    height = max(1.6, 0.45 * len(completeness) + 1.0)
    figure, axes = _figure(height=height)
    start, end = _local(period.start, zone), _local(period.end, zone)
    for row, device in enumerate(completeness):
        y = (row - 0.35, 0.7)
        first, last = _local(device.first, zone), _local(device.last, zone)
        axes.broken_barh(_spans([(start, first), (last, end)]), y, color="#e2e8f0")
        received, cursor = [], first
        for gap in sorted(device.gaps, key=lambda g: g.start):
            received.append((cursor, _local(gap.start, zone)))
            cursor = _local(gap.end, zone)
        received.append((cursor, last))
        axes.broken_barh(_spans(received), y, color=RECEIVED)
        gaps = [(_local(g.start, zone), _local(g.end, zone)) for g in device.gaps]
        # At least one pixel wide at the campaign's scale, so a 10-minute gap still shows.
        minimum = (end - start) / 600
        axes.broken_barh([(s, max(e - s, minimum)) for s, e in gaps], y, color=MISSING)
    axes.set_yticks(range(len(completeness)))
    axes.set_yticklabels([legend_label(c.device) for c in completeness], fontsize=8)
    axes.set_ylim(len(completeness) - 0.5, -0.5)
    axes.set_xlim(start, end)
    _time_axis(axes)
    axes.legend(
        handles=[
            Patch(color=RECEIVED, label="data received"),
            Patch(color=MISSING, label="gap (no data)"),
            Patch(color="#e2e8f0", label="before first / after last"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.22),
        ncol=3,
        fontsize=7,
        frameon=False,
    )
    return _chart(
        figure,
        "Completeness",
        f"Completeness timeline of {len(completeness)} device(s): received data and gaps",
    )


def _broken_at_gaps(
    times: Sequence[dt.datetime], x: Sequence[float], y: Sequence[float]
) -> tuple[list[float], list[float]]:
    """The line's points with a NaN wherever a step is longer than 1.5 times the usual
    one: matplotlib then leaves a gap in the line instead of bridging it silently. Steps
    are measured in UTC: the change to summer time is no gap, though the wall clock jumps."""
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    usual = sorted(steps)[len(steps) // 2] if steps else 0.0
    broken_x, broken_y = list(x[:1]), list(y[:1])
    for step, left, value in zip(steps, x[1:], y[1:], strict=True):
        if step > 1.5 * usual:
            broken_x.append(left)
            broken_y.append(float("nan"))
        broken_x.append(left)
        broken_y.append(value)
    return broken_x, broken_y


def _spans(pairs: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """(start, width) pairs for broken_barh, empty spans left out."""
    return [(start, end - start) for start, end in pairs if end > start]


def _local(moment: dt.datetime, zone: ZoneInfo) -> float:
    """Local wall-clock time as matplotlib's date number (days since its epoch): the time
    the reader lives by. Computed directly: `date2num` costs 80 us a point."""
    wall = moment.astimezone(zone).replace(tzinfo=dt.UTC)
    return _EPOCH_DAYS + wall.timestamp() / 86400


def _figure(height: float = HEIGHT_IN) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(True, linewidth=0.3, color="#cbd5e0")
    axes.set_axisbelow(True)
    axes.tick_params(labelsize=7)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure, axes


def _time_axis(axes: Axes) -> None:
    locator = mdates.AutoDateLocator(maxticks=10)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _legend(axes: Axes, extra: Sequence[tuple[Artist, str]] = ()) -> None:
    """Below the plot, in as many columns as the labels' length allows."""
    handles, labels = axes.get_legend_handles_labels()
    handles += [handle for handle, _ in extra]
    labels += [label for _, label in extra]
    longest = max((len(label) for label in labels), default=0)
    columns = LEGEND_COLUMNS if longest <= 22 else 2 if longest <= 45 else 1
    axes.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7,
                frameon=False, ncol=min(columns, max(1, len(labels))))  # fmt: skip


def _chart(figure: Figure, title: str, alt: str) -> Chart:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return Chart(title=title, alt=alt, png=buffer.getvalue())
