"""Downsampled history: a company's `_1h`, `_1d` and `_1w` buckets and the Flux tasks
that fill them.

Schema of the aggregated buckets (README.md, "Downsampled history"): measurement
`electrical`, the raw series' tags unchanged (campaign, channel_id, channel_unit,
channel_label, channel_name, device, device_type, device_subtype,
device_master_sn, device_sn), one point per series and window at the window's
START, with the fields `mean`, `min`, `max` (floats), `sum` (float) and `count`
(integer, raw points in the window).

Maths: the 1h level aggregates the raw points. The 1d level aggregates the 1h
points and the 1w level the 1d points: min of mins and max of maxes are exact,
sums and counts add up exactly, and the mean is recomputed as sum / count, so
it is the exact mean of the raw points even when hours hold different numbers
of points (a mean of means would not be).

Windows are in UTC: hours, days from 00:00 UTC, weeks from Monday 00:00 UTC
(Flux aligns windows on the Unix epoch, a Thursday, hence the 4-day offset).
UTC keeps every day 24 h long (no DST days of 23 or 25 h) and the levels nested.

Each task recomputes the complete windows of a lookback window
(POWERVIEW_DOWNSAMPLE_LOOKBACK, plus one window of its own level for 1d and
1w, which read the level below after it ran). A window is written whole or
not at all (the range is aligned on window boundaries), and a rewrite of the
same series at the same time overwrites, so a re-run changes nothing and a
late upload inside the lookback is picked up at the next run. Backfill runs
the same Flux over given ranges as queries.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from influxdb_client import (
    Bucket,
    BucketRetentionRules,
    InfluxDBClient,
    Task,
    TaskCreateRequest,
    TaskUpdateRequest,
)

from powerview.influx import find_or_create_bucket, map_influx_errors
from powerview.layout import check_name
from powerview.provision.tokens import org_id
from powerview.schema import MEASUREMENT
from powerview.settings import Settings, duration_seconds

__all__ = [
    "LEVELS",
    "SUFFIXES",
    "DownsampleOutcome",
    "Level",
    "backfill",
    "bucket_names",
    "ensure_downsampling",
    "level_flux",
    "remove_downsampling",
    "task_flux",
    "task_name",
]

TASK_PREFIX = "powerview_downsample_"


@dataclass(frozen=True)
class Level:
    """One aggregation level: its bucket suffix, window, and where it reads from."""

    suffix: str  # "_1h"
    every: str  # Flux duration of a window
    seconds: int
    offset: str  # window alignment from the epoch (weeks start on Monday)
    offset_s: int
    source: str | None  # suffix of the level read; None: the raw bucket
    task_every: str  # how often its task runs
    task_offset: str  # after the level below has run
    backfill_chunk_s: int  # windows per backfill query, as seconds


LEVELS = (
    Level("_1h", "1h", 3600, "0s", 0, None, "1h", "5m", 30 * 86_400),
    Level("_1d", "1d", 86_400, "0s", 0, "_1h", "1d", "20m", 364 * 86_400),
    # 1w runs daily, so a week is aggregated on the Monday after it ended.
    Level("_1w", "1w", 604_800, "4d", 4 * 86_400, "_1d", "1d", "40m", 20 * 364 * 86_400),
)


SUFFIXES = ("", *(level.suffix for level in LEVELS))  # the raw bucket, then 1h, 1d, 1w


def bucket_names(company: str) -> tuple[str, ...]:
    """The raw bucket and its three downsampled buckets."""
    name = check_name("company", company)
    return tuple(name + suffix for suffix in SUFFIXES)


def task_name(company: str, level: Level) -> str:
    return f"{TASK_PREFIX}{check_name('company', company)}{level.suffix}"


def _retentions(settings: Settings) -> tuple[int, ...]:
    return tuple(
        duration_seconds(value)
        for value in (
            settings.retention_raw,
            settings.retention_1h,
            settings.retention_1d,
            settings.retention_1w,
        )
    )


# -- Flux --------------------------------------------------------------------------


def level_flux(company: str, level: Level, start: str, stop: str) -> str:
    """The Flux that writes `level`'s windows in [start, stop) (Flux time expressions)."""
    name = check_name("company", company)
    source = name + (level.source or "")
    window = f'every: {level.every}, offset: {level.offset}, createEmpty: false, timeSrc: "_start"'
    # `src` is a function, not a stream: each aggregate gets its own `from`, which
    # InfluxDB pushes down to storage (window aggregates); a stream shared by five
    # consumers is read in Flux instead: 100 s instead of 5 s for a year of one device
    # (bench/README.md).
    head = [
        f"start = {start}",
        f"stop = {stop}",
        f'src = () => from(bucket: "{source}")',
        "    |> range(start: start, stop: stop)",
        f'    |> filter(fn: (r) => r._measurement == "{MEASUREMENT}")',
    ]
    if level.source is None:
        body = [
            "agg = (fn, name) => src()",
            f"    |> aggregateWindow({window}, fn: fn)",
            '    |> set(key: "_field", value: name)',
            "union(tables: [",
            '    agg(fn: mean, name: "mean"),',
            '    agg(fn: min, name: "min"),',
            '    agg(fn: max, name: "max"),',
            '    agg(fn: sum, name: "sum"),',
            '    agg(fn: count, name: "count"),',
            "])",
        ]
    else:
        body = [
            "agg = (field, fn) => src()",
            "    |> filter(fn: (r) => r._field == field)",
            f"    |> aggregateWindow({window}, fn: fn)",
            'means = union(tables: [agg(field: "sum", fn: sum), agg(field: "count", fn: sum)])',
            '    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            '    |> map(fn: (r) => ({r with _field: "mean", _value: r.sum / float(v: r.count)}))',
            '    |> drop(columns: ["sum", "count"])',
            "union(tables: [",
            "    means,",
            '    agg(field: "sum", fn: sum),',
            '    agg(field: "count", fn: sum),',
            '    agg(field: "min", fn: min),',
            '    agg(field: "max", fn: max),',
            "])",
        ]
    body.append(f'    |> to(bucket: "{name}{level.suffix}")')
    return "\n".join(['import "date"', "", *head, *body]) + "\n"


def _align(level: Level, moment: str) -> str:
    """Flux: the start of the `level` window holding `moment`."""
    return (
        f"date.add(d: {level.offset}, to: date.truncate("
        f"t: date.sub(d: {level.offset}, from: {moment}), unit: {level.every}))"
    )


def task_lookback_s(settings: Settings, level: Level) -> int:
    """The configured lookback, plus one window for the levels read from another level."""
    extra = level.seconds if level.source is not None else 0
    return duration_seconds(settings.downsample_lookback) + extra


def task_flux(company: str, level: Level, lookback_s: int) -> str:
    """The task's Flux: its options, then the level's Flux over the lookback window."""
    options = (
        f'option task = {{name: "{task_name(company, level)}", '
        f"every: {level.task_every}, offset: {level.task_offset}}}"
    )
    start = _align(level, f"date.sub(d: {lookback_s}s, from: now())")
    flux = level_flux(company, level, start, _align(level, "now()"))
    imports, _, rest = flux.partition("\n\n")
    return f"{imports}\n\n{options}\n\n{rest}"


# -- ensure ------------------------------------------------------------------------


@dataclass
class DownsampleOutcome:
    """What `ensure_downsampling` did (or, in check mode, would do)."""

    company: str
    changes: list[str] = field(default_factory=list)
    task_ids: dict[str, str] = field(default_factory=dict)  # suffix → task id

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _ensure_bucket(
    client: InfluxDBClient, org: str, name: str, retention_s: int, check: bool, changes: list[str]
) -> Bucket | None:
    """Create the bucket, or set its retention in place; None in check mode if missing."""
    with map_influx_errors(f"ensuring bucket {name!r}"):
        bucket: Bucket | None = client.buckets_api().find_bucket_by_name(name)
    if bucket is None:
        changes.append(f"create bucket {name} (retention {_shown(retention_s)})")
        if check:
            return None
        # Created meanwhile by an ingestion, it is returned with its retention: set below.
        bucket = find_or_create_bucket(client, org, name, retention_s)
    current = bucket.retention_rules[0].every_seconds if bucket.retention_rules else 0
    if current != retention_s:
        changes.append(f"update bucket {name} retention {_shown(current)} -> {_shown(retention_s)}")
        if not check:
            bucket.retention_rules = [
                BucketRetentionRules(type="expire", every_seconds=retention_s)
            ]
            with map_influx_errors(f"setting the retention of bucket {name!r}"):
                bucket = client.buckets_api().update_bucket(bucket)
    return bucket


def _shown(seconds: int) -> str:
    return "forever" if seconds == 0 else f"{seconds}s"


def _ensure_task(
    client: InfluxDBClient, org_id: str, name: str, flux: str, check: bool, changes: list[str]
) -> str:
    """One active task called `name` running `flux`: created, kept, or updated in place."""
    api = client.tasks_api()
    with map_influx_errors(f"ensuring task {name!r}"):
        found: list[Task] = [t for t in api.find_tasks(name=name, org_id=org_id) if t.name == name]
        for extra in found[1:]:  # a duplicate (two ensures at once): keep one
            changes.append(f"delete duplicate task {name} ({extra.id})")
            if not check:
                api.delete_task(str(extra.id))
        if not found:
            changes.append(f"create task {name}")
            if check:
                return ""
            created = api.create_task(
                task_create_request=TaskCreateRequest(
                    org_id=org_id,
                    flux=flux,
                    status="active",
                    description="PowerView downsampling (see powerview downsample)",
                )
            )
            return str(created.id)
        task = found[0]
        if task.flux != flux or task.status != "active":
            changes.append(f"update task {name}")
            if not check:
                api.update_task_request(str(task.id), TaskUpdateRequest(flux=flux, status="active"))
        return str(task.id)


def ensure_downsampling(
    client: InfluxDBClient, settings: Settings, company: str, check: bool = False
) -> DownsampleOutcome:
    """The company's four buckets with their retention and its three tasks (idempotent)."""
    outcome = DownsampleOutcome(check_name("company", company))
    org = settings.influxdb_org
    for name, retention in zip(bucket_names(company), _retentions(settings), strict=True):
        _ensure_bucket(client, org, name, retention, check, outcome.changes)
    owner = org_id(client, org)
    for level in LEVELS:
        flux = task_flux(company, level, task_lookback_s(settings, level))
        outcome.task_ids[level.suffix] = _ensure_task(
            client, owner, task_name(company, level), flux, check, outcome.changes
        )
    return outcome


def remove_downsampling(
    client: InfluxDBClient, settings: Settings, company: str, check: bool = False
) -> list[str]:
    """Delete the company's tasks, then its four buckets with their data (`tenant delete
    --purge`); what is already gone is skipped, so a second run changes nothing."""
    changes: list[str] = []
    owner = org_id(client, settings.influxdb_org)
    tasks = client.tasks_api()
    for level in LEVELS:
        name = task_name(company, level)
        with map_influx_errors(f"deleting task {name!r}"):
            for task in [t for t in tasks.find_tasks(name=name, org_id=owner) if t.name == name]:
                changes.append(f"delete task {name}")
                if not check:
                    tasks.delete_task(str(task.id))
    buckets = client.buckets_api()
    for name in reversed(bucket_names(company)):  # the raw bucket, the source, last
        with map_influx_errors(f"deleting bucket {name!r}"):
            bucket = buckets.find_bucket_by_name(name)
            if bucket is not None:
                changes.append(f"delete bucket {name} and its data")
                if not check:
                    buckets.delete_bucket(bucket)
    return changes


# -- backfill ------------------------------------------------------------------------


@dataclass
class BackfillChunk:
    level: str
    start: dt.datetime
    stop: dt.datetime
    seconds: float


def _floor(level: Level, moment: dt.datetime) -> dt.datetime:
    epoch = int(moment.timestamp())
    start = (epoch - level.offset_s) // level.seconds * level.seconds + level.offset_s
    return dt.datetime.fromtimestamp(start, dt.UTC)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_raw_time(client: InfluxDBClient, company: str) -> dt.datetime | None:
    """The time of the raw bucket's oldest point, or None if it is empty."""
    flux = (
        "from(bucket: b) |> range(start: 0) |> filter(fn: (r) => r._measurement == m)\n"
        '  |> first() |> group() |> min(column: "_time")'
    )
    params = {"b": check_name("company", company), "m": MEASUREMENT}
    with map_influx_errors(f"reading the first point of {company!r}"):
        tables = client.query_api().query(flux, params=params)
    times = [record.get_time() for table in tables for record in table.records]
    return min(times) if times else None


def backfill(
    client: InfluxDBClient,
    company: str,
    start: dt.datetime | None = None,
    stop: dt.datetime | None = None,
) -> Iterator[BackfillChunk]:
    """Recompute every complete window between `start` and `stop`, level by level.

    The range is widened to whole weeks (the coarsest level) so that each
    coarser window is computed from complete finer ones; each level goes in
    chunks of whole windows. Re-running it rewrites the same points. A
    generator: nothing is computed until it is iterated (one chunk per step).
    """
    check_name("company", company)
    stop = stop or dt.datetime.now(dt.UTC)
    start = start or first_raw_time(client, company)
    if start is None or start >= stop:
        return
    coarsest = LEVELS[-1]
    begin = _floor(coarsest, start)
    for level in LEVELS:
        end = _floor(level, stop)
        cursor = begin
        while cursor < end:
            chunk_end = min(cursor + dt.timedelta(seconds=level.backfill_chunk_s), end)
            flux = level_flux(company, level, _rfc3339(cursor), _rfc3339(chunk_end))
            began = time.monotonic()
            with map_influx_errors(f"backfilling {company}{level.suffix}"):
                client.query_api().query(flux)
            yield BackfillChunk(level.suffix, cursor, chunk_end, time.monotonic() - began)
            cursor = chunk_end
