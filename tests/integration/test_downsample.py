"""Downsampled history for real: the company's tasks run through InfluxDB's task API
on ingested exports, and every aggregate is compared with values computed here
from the files' rows (read with the naive reader of helpers_ingest, not PowerView's
parser)."""

from __future__ import annotations

import calendar
import datetime as dt
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from powerview import cli
from powerview import settings as config
from powerview.influx import InfluxTarget
from powerview.ingest import IngestOptions, ingest_file
from powerview.provision import create_tenant
from powerview.provision.downsample import (
    LEVELS,
    SUFFIXES,
    backfill,
    bucket_names,
    ensure_downsampling,
    task_flux,
    task_lookback_s,
    task_name,
)
from powerview.provision.tokens import ensure_read_token, find_tokens, read_token
from tests.conftest import InfluxInstance
from tests.factories import Export as Generated
from tests.integration.helpers_ingest import drop_buckets, new_company, read_export

# A task's "now" for its manual runs (a Tuesday): every window of the data below is complete.
SCHEDULED = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
WIDE = "500d"  # a lookback that reaches the oldest sample (2025-08)
SAMPLE_FILES = (
    "acme/campaign1/02001084/T302_251012_031720.tsv",
    "acme/v003-tri/02000800/T302_260128_162130_UTC.tsv",
    "acme/v003-tri/02000800/T302_260128_171459_UTC.tsv",
    "acme/v003-tri/02000800/T302_260208_211459_UTC.tsv",
)
# Ten days of a 3-phase master with one slave, every 10 minutes, with a 7-minute phase
# so that hours hold 6 points, and the last day of each file is cut mid-day.
GENERATED = Generated(
    master_sn="02005555",
    slaves=("04005556",),
    slave_channels=2,
    rows=10 * 144 - 50,
    start=dt.datetime(2026, 11, 13, 0, 7, 0),
    seed=7,
)
WINDOW_S = {"_1h": 3600, "_1d": 86_400, "_1w": 604_800}
WEEK_OFFSET_S = 4 * 86_400  # weeks start on Monday; the epoch was a Thursday


def window_of(suffix: str, epoch: int) -> int:
    size = WINDOW_S[suffix]
    offset = WEEK_OFFSET_S if suffix == "_1w" else 0
    return (epoch - offset) // size * size + offset


def epoch_of(moment: dt.datetime) -> int:
    return calendar.timegm(moment.utctimetuple())


@dataclass
class Company:
    name: str
    root: Path
    files: list[Path]
    settings: config.Settings


def expected_aggregates(
    files: Iterable[Path], root: Path, suffix: str, before: int, since: int = 0
) -> dict[tuple[str, int, str], float]:
    """{(channel_id, window start, field): value} from the files' rows, by plain Python."""
    points: dict[tuple[str, int], float] = {}  # a later row at the same time overwrites
    for path in files:
        export = read_export(path)
        assert export is not None
        campaign = path.relative_to(root).parts[1]
        channels = export.channels(campaign)
        for epoch, values in export.valid_rows():
            for channel in channels:
                points[(channel.channel_id, epoch)] = float(values[channel.index])
    windows: dict[tuple[str, int], list[float]] = {}
    for (channel_id, epoch), value in points.items():
        start = window_of(suffix, epoch)
        if since <= start and start + WINDOW_S[suffix] <= before:
            windows.setdefault((channel_id, start), []).append(value)
    expected: dict[tuple[str, int, str], float] = {}
    for (channel_id, start), values in windows.items():
        expected[(channel_id, start, "mean")] = sum(values) / len(values)
        expected[(channel_id, start, "min")] = min(values)
        expected[(channel_id, start, "max")] = max(values)
        expected[(channel_id, start, "sum")] = sum(values)
        expected[(channel_id, start, "count")] = len(values)
    return expected


def stored_aggregates(
    client: InfluxDBClient, bucket: str
) -> tuple[dict[tuple[str, int, str], float], dict[str, dict[str, str]]]:
    """Every point of an aggregate bucket, and the tags of each channel."""
    values: dict[tuple[str, int, str], float] = {}
    tags: dict[str, dict[str, str]] = {}
    query = f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => true)'
    for table in client.query_api().query(query):
        for record in table.records:
            assert record.get_measurement() == "electrical"
            key = (record["channel_id"], epoch_of(record.get_time()), record.get_field())
            assert key not in values, f"two points for {key}"
            values[key] = record.get_value()
            tags[record["channel_id"]] = {
                k: v
                for k, v in record.values.items()
                if not k.startswith("_") and k not in ("result", "table")
            }
    return values, tags


def raw_tags(client: InfluxDBClient, bucket: str) -> dict[str, dict[str, str]]:
    query = f'from(bucket: "{bucket}") |> range(start: 0) |> last()'
    return {
        r["channel_id"]: {
            k: v
            for k, v in r.values.items()
            if not k.startswith("_") and k not in ("result", "table")
        }
        for t in client.query_api().query(query)
        for r in t.records
    }


def assert_matches(
    stored: dict[tuple[str, int, str], float], expected: dict[tuple[str, int, str], float]
) -> None:
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        if key[2] == "count":
            assert isinstance(stored[key], int), key
            assert stored[key] == value, key
        else:
            assert stored[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def run_task(client: InfluxDBClient, task_id: str, scheduled_for: dt.datetime) -> None:
    """`POST /api/v2/tasks/{id}/runs`, wait for the run; fail with its log unless it succeeded."""
    api = client.tasks_api()
    run = api.run_manually(task_id, scheduled_for=scheduled_for)
    deadline = time.monotonic() + 120
    while run.status not in ("success", "failed", "canceled"):
        assert time.monotonic() < deadline, f"run {run.id} still {run.status}"
        time.sleep(0.2)
        try:
            run = api.get_run(task_id, str(run.id))
        except ApiException as exc:  # 404 while it moves from the queue to the run log
            if exc.status != 404:
                raise
    logs = [str(event.message) for event in api.get_run_logs(task_id, str(run.id))]
    assert run.status == "success", logs
    assert any("Completed(success)" in line for line in logs), logs


def run_all(client: InfluxDBClient, task_ids: dict[str, str], when: dt.datetime) -> None:
    for level in LEVELS:  # 1h, then 1d from it, then 1w
        run_task(client, task_ids[level.suffix], when)


def ingest(root: Path, client: InfluxDBClient, files: Iterable[Path]) -> None:
    target = InfluxTarget(client, client.org)
    for path in files:
        report = ingest_file(path, target, IngestOptions(data_root=root))
        assert report.status == "success", report.error


@pytest.fixture
def make_company(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, samples: Path, tmp_path: Path
) -> Iterator[object]:
    created: list[str] = []

    def make(samples_used: Iterable[str] = SAMPLE_FILES, lookback: str = WIDE) -> Company:
        name = new_company()
        created.append(name)
        root = tmp_path / name / "data"
        files = []
        for relative in samples_used:
            destination = root / name / Path(relative).relative_to("acme")
            destination.parent.mkdir(parents=True, exist_ok=True)
            files.append(Path(shutil.copy(samples / relative, destination)))
        files.append(GENERATED.write(root / name / "gen" / "02005555" / "T302_261123_000000.tsv"))
        ingest(root, influx_client, files)
        # The files moved to parsed/ once ingested; the test reads them there.
        files = [f.parent / "parsed" / f.name for f in files]
        settings = config.load(
            influxdb_url=influxdb.url,
            influxdb_org=influxdb.org,
            influxdb_admin_token=influxdb.token,
            downsample_lookback=lookback,
        )
        return Company(name, root, files, settings)

    yield make
    for name in created:
        drop_buckets(influx_client, bucket_names(name))
        api = influx_client.tasks_api()
        for task in api.find_tasks():
            if task.name.startswith(f"powerview_downsample_{name}_"):
                api.delete_task(str(task.id))


def count_all(client: InfluxDBClient, bucket: str) -> int:
    query = f'from(bucket: "{bucket}") |> range(start: 0) |> group() |> count()'
    return sum(r.get_value() for t in client.query_api().query(query) for r in t.records)


def test_every_aggregate_equals_the_one_computed_from_the_files(
    influx_client: InfluxDBClient, make_company: object
) -> None:
    company: Company = make_company()  # type: ignore[operator]
    outcome = ensure_downsampling(influx_client, company.settings, company.name)
    run_all(influx_client, outcome.task_ids, SCHEDULED)

    tags = raw_tags(influx_client, company.name)
    channels = {k[0] for k in expected_aggregates(company.files, company.root, "_1h", 2**40)}
    assert set(tags) == channels
    assert len(channels) > 40
    for level in LEVELS:
        stored, stored_tags = stored_aggregates(influx_client, company.name + level.suffix)
        before = window_of(level.suffix, epoch_of(SCHEDULED))
        expected = expected_aggregates(company.files, company.root, level.suffix, before)
        assert_matches(stored, expected)
        assert stored_tags == tags  # the raw series' tags, unchanged


def test_a_rerun_changes_nothing(influx_client: InfluxDBClient, make_company: object) -> None:
    company: Company = make_company(SAMPLE_FILES[1:2])  # type: ignore[operator]
    outcome = ensure_downsampling(influx_client, company.settings, company.name)
    run_all(influx_client, outcome.task_ids, SCHEDULED)
    before = {
        level.suffix: (
            stored_aggregates(influx_client, company.name + level.suffix)[0],
            count_all(influx_client, company.name + level.suffix),
        )
        for level in LEVELS
    }
    assert all(points for _, points in before.values())

    run_all(influx_client, outcome.task_ids, SCHEDULED)
    run_all(influx_client, outcome.task_ids, SCHEDULED + dt.timedelta(hours=1))
    for level in LEVELS:
        bucket = company.name + level.suffix
        assert stored_aggregates(influx_client, bucket)[0] == before[level.suffix][0]
        assert count_all(influx_client, bucket) == before[level.suffix][1]


def test_a_late_upload_inside_the_lookback_is_reflected_after_the_next_run(
    influx_client: InfluxDBClient, make_company: object
) -> None:
    company: Company = make_company((), lookback="14d")  # type: ignore[operator]
    outcome = ensure_downsampling(influx_client, company.settings, company.name)
    # Steady state: the history is backfilled, the tasks have run.
    assert list(backfill(influx_client, company.name, stop=SCHEDULED))
    run_all(influx_client, outcome.task_ids, SCHEDULED)
    # Late rows between the ones already aggregated, 3 minutes after each, for two days.
    late = Generated(
        master_sn=GENERATED.master_sn,
        slaves=GENERATED.slaves,
        slave_channels=GENERATED.slave_channels,
        rows=2 * 144,
        start=dt.datetime(2026, 11, 20, 0, 10, 0),
        seed=99,
    )
    path = late.write(company.root / company.name / "gen" / "02005555" / "T302_late.tsv")
    ingest(company.root, influx_client, [path])
    files = [*company.files, path.parent / "parsed" / path.name]
    hour = company.name + "_1h"
    stale, _ = stored_aggregates(influx_client, hour)

    after = SCHEDULED + dt.timedelta(hours=1)
    run_all(influx_client, outcome.task_ids, after)
    for level in LEVELS:
        stored, _ = stored_aggregates(influx_client, company.name + level.suffix)
        before = window_of(level.suffix, epoch_of(after))
        assert_matches(stored, expected_aggregates(files, company.root, level.suffix, before))
    key = ("M02005555_U1", epoch_of(dt.datetime(2026, 11, 20, 5, tzinfo=dt.UTC)), "count")
    assert (stale[key], stored_aggregates(influx_client, hour)[0][key]) == (6, 12)


def test_a_changed_definition_updates_the_task_in_place(
    influx_client: InfluxDBClient, make_company: object
) -> None:
    company: Company = make_company(())  # type: ignore[operator]
    first = ensure_downsampling(influx_client, company.settings, company.name)
    assert any(c.startswith("create task") for c in first.changes)
    again = ensure_downsampling(influx_client, company.settings, company.name)
    assert again.changes == []
    assert again.task_ids == first.task_ids

    changed = company.settings.model_copy(update={"downsample_lookback": "14d"})
    check = ensure_downsampling(influx_client, changed, company.name, check=True)
    updated = ensure_downsampling(influx_client, changed, company.name)
    assert (
        check.changes
        == updated.changes
        == [f"update task {task_name(company.name, level)}" for level in LEVELS]
    )
    assert updated.task_ids == first.task_ids
    api = influx_client.tasks_api()
    for level in LEVELS:
        name = task_name(company.name, level)
        tasks = [t for t in api.find_tasks(name=name) if t.name == name]
        assert len(tasks) == 1
        assert tasks[0].flux == task_flux(company.name, level, task_lookback_s(changed, level))
        # 14 days, plus one window of its own level above 1h.
        days = {"_1h": 14, "_1d": 15, "_1w": 21}[level.suffix]
        assert f"date.sub(d: {days * 86_400}s, from: now())" in tasks[0].flux


def test_retention_settings_are_applied_and_updated(
    influx_client: InfluxDBClient, make_company: object
) -> None:
    company: Company = make_company(())  # type: ignore[operator]
    settings = company.settings.model_copy(update={"retention_1h": "90d", "retention_raw": "0"})
    ensure_downsampling(influx_client, settings, company.name)
    api = influx_client.buckets_api()

    def retention(name: str) -> int:
        bucket = api.find_bucket_by_name(name)
        return bucket.retention_rules[0].every_seconds if bucket.retention_rules else 0

    assert [retention(n) for n in bucket_names(company.name)] == [0, 90 * 86_400, 0, 0]
    shorter = settings.model_copy(update={"retention_1h": "30d"})
    outcome = ensure_downsampling(influx_client, shorter, company.name)
    assert outcome.changes == [
        f"update bucket {company.name}_1h retention {90 * 86_400}s -> {30 * 86_400}s"
    ]
    assert retention(company.name + "_1h") == 30 * 86_400


def test_the_read_token_reads_the_four_buckets_and_nothing_else(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    make_company: object,
    tmp_path: Path,
) -> None:
    company: Company = make_company(SAMPLE_FILES[1:2])  # type: ignore[operator]
    other: Company = make_company(())  # type: ignore[operator]
    secrets = tmp_path / "secrets"
    # A token of the single-bucket era exists: it is replaced, once.
    old = ensure_read_token(influx_client, influxdb.org, company.name, secrets)
    outcome = ensure_downsampling(influx_client, company.settings, company.name)
    assert list(backfill(influx_client, company.name))
    assert outcome.changes
    new = ensure_read_token(influx_client, influxdb.org, company.name, secrets, SUFFIXES)
    assert new.created
    assert new.authorization_id != old.authorization_id
    again = ensure_read_token(influx_client, influxdb.org, company.name, secrets, SUFFIXES)
    assert not again.created
    assert again.authorization_id == new.authorization_id
    assert [str(t.id) for t in find_tokens(influx_client, influxdb.org, company.name)] == [
        new.authorization_id
    ]

    token = read_token(secrets, company.name)
    assert token is not None
    with InfluxDBClient(url=influxdb.url, token=token, org=influxdb.org) as reader:
        for bucket in bucket_names(company.name):
            rows = reader.query_api().query(f'from(bucket: "{bucket}") |> range(start: 0)')
            assert rows, bucket
        for forbidden in (other.name, other.name + "_1h", influxdb.meta_bucket):
            with pytest.raises(ApiException) as refused:
                reader.query_api().query(f'from(bucket: "{forbidden}") |> range(start: 0)')
            assert refused.value.status in (401, 403, 404), forbidden
        with pytest.raises(ApiException):  # read-only
            reader.write_api(write_options=SYNCHRONOUS).write(
                company.name, record="electrical,x=1 v=1"
            )


def test_backfill_then_rerun_gives_the_same_result(
    influx_client: InfluxDBClient,
    make_company: object,
    influxdb: InfluxInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    company: Company = make_company()  # type: ignore[operator]
    for key, value in {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert cli.run(["downsample", "ensure", company.name]) == 0
    capsys.readouterr()
    assert cli.run(["downsample", "ensure", company.name]) == 0
    assert capsys.readouterr().out.strip() == f"downsampling of {company.name!r}: no change"
    # The downsampled buckets are the company's, not companies of their own.
    assert cli.run(["tenant", "list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if line]
    assert company.name in listed
    assert not [name for name in listed if name.startswith(f"{company.name}_")]
    # Part of the range first, then all of it, twice.
    args = ["downsample", "backfill", company.name, "--from", "2026-01-01", "--to", "2026-12-01"]
    assert cli.run(args) == 0
    assert count_all(influx_client, company.name + "_1h") > 0
    assert cli.run([*args[:3], "--to", "2026-12-01"]) == 0
    stop = epoch_of(SCHEDULED)
    results = {}
    for level in LEVELS:
        stored, _ = stored_aggregates(influx_client, company.name + level.suffix)
        expected = expected_aggregates(
            company.files, company.root, level.suffix, window_of(level.suffix, stop)
        )
        assert_matches(stored, expected)
        results[level.suffix] = (stored, count_all(influx_client, company.name + level.suffix))
    assert cli.run([*args[:3], "--to", "2026-12-01"]) == 0
    for level in LEVELS:
        bucket = company.name + level.suffix
        assert (stored_aggregates(influx_client, bucket)[0], count_all(influx_client, bucket)) == (
            results[level.suffix]
        )


def test_tenant_create_makes_the_buckets_tasks_and_four_bucket_token_once(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    make_company: object,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    company: Company = make_company(())  # type: ignore[operator]
    settings = company.settings.model_copy(update={"state_dir": tmp_path / "state"})
    first = create_tenant(settings, company.name, ("gen",))
    assert first.changed
    assert first.token_created
    assert len(first.downsample_changes) == 6  # three buckets, three tasks
    second = create_tenant(settings, company.name, ("gen",))
    assert not second.changed
    assert second.downsample_changes == []

    api = influx_client.tasks_api()
    names = {t.name for t in api.find_tasks() if t.name.startswith("powerview_downsample_")}
    assert {task_name(company.name, level) for level in LEVELS} <= names
    (token,) = find_tokens(influx_client, influxdb.org, company.name)
    buckets = influx_client.buckets_api()
    assert {p.resource.id for p in token.permissions} == {
        buckets.find_bucket_by_name(name).id for name in bucket_names(company.name)
    }
    assert {p.action for p in token.permissions} == {"read"}


def test_tenant_create_check_mode_says_a_one_bucket_token_would_be_replaced(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    make_company: object,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    company: Company = make_company(())  # type: ignore[operator]
    settings = company.settings.model_copy(update={"state_dir": tmp_path / "state"})
    old = ensure_read_token(influx_client, influxdb.org, company.name, tmp_path / "state/secrets")
    ensure_downsampling(influx_client, settings, company.name)

    check = create_tenant(settings, company.name, check=True)
    assert check.notes == [
        f"would replace the read token of {company.name!r} by one reading "
        + ", ".join(bucket_names(company.name))
    ]
    (still,) = find_tokens(influx_client, influxdb.org, company.name)
    assert str(still.id) == old.authorization_id  # check mode changed nothing

    done = create_tenant(settings, company.name)
    assert done.token_created
    assert create_tenant(settings, company.name, check=True).notes == []
