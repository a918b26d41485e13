"""The ingestion ledger against the real InfluxDB: every sample file recorded with
its SHA-256 (hashlib over the sample, here), size and counts equal to what Flux
counts in the bucket; a write whose points vanish before the read-back is a
mismatch that `powerview health` reports until a later count finds them all;
`powerview verify` finds a day deleted with InfluxDB's delete API.

Expected values come from the samples read by the naive reader of
helpers_ingest.py, and from Flux queries written here, not from the code under test.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from powerview import cli, health
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, ingest_paths
from powerview.ledger import READ_BACK_BATCH, FluxVerifier, Ledger, LedgerRow, Recorder
from tests.conftest import InfluxInstance
from tests.integration.helpers_events import Site, influx_env
from tests.integration.helpers_ingest import expected_points, iso, read_export
from tests.integration.test_ingest_cli import Env, env, ingest
from tests.integration.test_worker import WIDTH as WORKER_WIDTH
from tests.integration.test_worker import (
    _dead_port,
    company,
    device_files,
    enqueue_files,
    site,
    worker,
)

__all__ = ["company", "env", "site"]  # fixtures shared with test_ingest_cli and test_worker

BIG = "big/02001283/T302_02001283_T302_260108_214031.tsv"
DELETED_DAY = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)


def _flux_count(
    client: InfluxDBClient, bucket: str, campaign: str, device: str, first: str, last: str
) -> int:
    """Points of one device and campaign from `first` to `last` included, counted by Flux."""
    stop = calendar.timegm(dt.datetime.fromisoformat(last.replace("Z", "+00:00")).timetuple()) + 1
    query = (
        f'from(bucket: "{bucket}") |> range(start: {first}, stop: {stop}) '
        f'|> filter(fn: (r) => r._measurement == "electrical" and r.campaign == "{campaign}"'
        f' and r.device_master_sn == "{device}") |> group() |> count()'
    )
    return sum(r.get_value() for t in client.query_api().query(query) for r in t.records)


def _ledger(env: Env) -> Ledger:
    return Ledger.in_state_dir(env.root.parent / "work" / "state")


def _delete_day(client: InfluxDBClient, bucket: str, device: str, day: dt.datetime) -> None:
    client.delete_api().delete(
        day, day + dt.timedelta(days=1), f'device_master_sn="{device}"', bucket=bucket
    )


def _points_on(source: Path, campaign: str, day: dt.datetime) -> int:
    """The points of `source` from `day` 00:00 to the next 00:00 included (as deleted)."""
    export = read_export(source)
    assert export is not None
    start = calendar.timegm(day.timetuple())
    points = expected_points([export], campaign)
    return sum(1 for _, epoch in points if start <= epoch <= start + 86_400)


def test_every_ingested_sample_has_its_entry_with_its_sha256_and_flux_counts(
    env: Env, samples: Path
) -> None:
    company = env.company()
    shutil.copytree(samples / "acme", env.root / company)
    sources = sorted((samples / "acme").rglob("*.tsv"))
    assert ingest(env.root / company, "--data-root", env.root) == 0
    with _ledger(env) as ledger:
        rows = ledger.rows(company)
    assert len(rows) == len(sources) == 7
    by_upload = {(r.campaign, r.upload_name): r for r in rows}
    for source in sources:
        campaign = source.parent.parent.name
        export = read_export(source)
        assert export is not None
        row = by_upload[(campaign, source.name)]
        content = source.read_bytes()
        assert row.sha256 == hashlib.sha256(content).hexdigest()
        assert row.size == len(content)
        assert row.device == export.master_sn
        assert row.device_folder == source.parent.name
        parsed = env.root / company / campaign / row.device_folder / "parsed" / row.file_name
        assert parsed.read_bytes() == content
        epochs = [epoch for epoch, _ in export.valid_rows()]
        assert (row.first_time, row.last_time) == (iso(min(epochs)), iso(max(epochs)))
        assert row.rows == len(export.rows)
        assert row.points_written == len(export.valid_rows()) * export.width
        assert row.points_expected == len(expected_points([export], campaign))
        assert row.points_verified == _flux_count(
            env.client, company, campaign, row.device, row.first_time, row.last_time
        )
        # No two sample files of one device overlap: each count is exactly its own points.
        assert row.points_verified == row.points_expected
        assert row.status == "verified"
        assert row.upload_time.endswith("Z")
        assert row.verified_at is not None
    # The meta bucket's summary: one powerview_ledger point per file.
    query = (
        f'from(bucket: "{env.meta_bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._measurement == "powerview_ledger" and r._field == "sha256")'
    )
    points = {
        (r.values["campaign"], r.values["file"]): r.get_value()
        for t in env.client.query_api().query(query)
        for r in t.records
    }
    assert points == {(r.campaign, r.file_name): r.sha256 for r in rows}


def test_the_ledger_command_lists_the_entries_as_json(
    env: Env, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    shutil.copytree(samples / "acme" / "v003-tri", env.root / company / "v003-tri")
    assert ingest(env.root / company, "--data-root", env.root) == 0
    capsys.readouterr()
    assert cli.run(["ledger", company, "--campaign", "v003-tri", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(e["upload_name"] for e in listed) == sorted(
        p.name for p in (samples / "acme" / "v003-tri" / "02000800").iterdir()
    )
    assert {e["status"] for e in listed} == {"verified"}
    assert cli.run(["ledger", company, "--campaign", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


class DeletingVerifier(FluxVerifier):
    """Points deleted between the acknowledged write and its read-back (the seam)."""

    def __init__(self, client: InfluxDBClient, day: dt.datetime) -> None:
        super().__init__(client)
        self.client = client
        self.day = day

    def count(self, rows: Sequence[LedgerRow]) -> list[int]:
        for row in rows:
            _delete_day(self.client, row.company, row.device, self.day)
        return super().count(rows)


def test_points_deleted_before_the_read_back_are_a_mismatch_health_reports(
    env: Env, samples: Path, influxdb: InfluxInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    company = env.company()
    upload = env.root / company / "big" / "02001283" / Path(BIG).name
    upload.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / BIG, upload)
    state = env.root.parent / "work" / "state"
    target = InfluxTarget(env.client, influxdb.org, gzip_level=0)
    recorder = Recorder(Ledger.in_state_dir(state), DeletingVerifier(env.client, DELETED_DAY))
    try:
        run = ingest_paths(
            [upload], target, IngestOptions(data_root=env.root.resolve(), ledger=recorder)
        )
        target.flush()
    finally:
        recorder.close()
    (report,) = run.files
    assert report.status == "success"  # the write was acknowledged: the file is in parsed/
    assert report.ledger is not None
    missing = _points_on(samples / "acme" / BIG, "big", DELETED_DAY)
    # A day of 10-minute rows, 6 channels, and midnight after it: the delete API's
    # stop is inclusive (as `_points_on` counts).
    assert missing == 145 * 6
    with Ledger.in_state_dir(state) as ledger:
        (row,) = ledger.rows(company)
    assert row.status == "mismatch"
    assert row.points_verified == row.points_expected - missing
    checked = health.check_ledger(state)
    assert checked.status == health.Status.WARNING
    subject = f"{company}/big/02001283/{Path(BIG).name}"
    assert [p.subject for p in checked.problems] == [subject]
    assert f"{missing} of {row.points_expected} points missing" in checked.message
    # Through the command, as monitoring runs it.
    monkeypatch.setenv("POWERVIEW_HEALTH_EXPECT", "")
    report_health = health.run_checks(_settings())
    (ledger_check,) = [c for c in report_health.checks if c.name == "ledger"]
    assert ledger_check.status == health.Status.WARNING
    # The same file uploaded again: its points are written again and counted in full.
    shutil.copy(samples / "acme" / BIG, upload)
    assert ingest(upload, "--data-root", env.root) == 0
    with Ledger.in_state_dir(state) as ledger:
        (again,) = ledger.rows(company)
    assert (again.status, again.points_verified) == ("verified", row.points_expected)
    assert again.file_name == Path(BIG).stem + ".1.tsv"  # parsed/ already held that name
    cleared = health.check_ledger(state)
    assert cleared.status == health.Status.OK


def _settings() -> Any:
    from powerview import settings

    return settings.load()


def test_verify_lists_the_file_of_a_deleted_day_and_exits_1(
    env: Env, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    shutil.copytree(samples / "acme" / "big", env.root / company / "big")
    shutil.copytree(samples / "acme" / "v003-mono", env.root / company / "v003-mono")
    assert ingest(env.root / company, "--data-root", env.root) == 0
    capsys.readouterr()
    assert cli.run(["verify", company, "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert (before["checked"], before["missing"]) == (2, [])

    _delete_day(env.client, company, "02001283", DELETED_DAY)
    assert cli.run(["verify", company, "--json"]) == 1
    after = json.loads(capsys.readouterr().out)
    (missing,) = after["missing"]
    assert (missing["campaign"], missing["upload_name"]) == ("big", Path(BIG).name)
    lost = _points_on(samples / "acme" / BIG, "big", DELETED_DAY)
    assert missing["points_verified"] == missing["points_expected"] - lost
    assert after["checked"] == 2
    # The meta bucket's summary follows: the file's latest point says mismatch.
    query = (
        f'from(bucket: "{env.meta_bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._measurement == "powerview_ledger" and r._field == "status")'
        "|> last()"
    )
    latest = {
        r.values["file"]: r.get_value()
        for t in env.client.query_api().query(query)
        for r in t.records
    }
    assert latest[missing["file_name"]] == "mismatch"
    # Only the campaign asked for; the text names the file.
    assert cli.run(["verify", company, "--campaign", "v003-mono"]) == 0
    capsys.readouterr()
    assert cli.run(["verify", company, "--campaign", "big"]) == 1
    text = capsys.readouterr().out
    assert f"missing: big/02001283/{Path(BIG).name}" in text
    assert "1 files checked, 1 with points missing" in text


# -- where the entry is recorded: the worker, a locked ledger, InfluxDB gone ---------


def test_the_worker_records_each_file_it_ingests(
    site: Site, company: str, influxdb: InfluxInstance, influx_client: InfluxDBClient
) -> None:
    paths = device_files(site, company, count=3, rows=30)
    enqueue_files(site, paths)
    worker(site, influx_env(site, influxdb))
    with Ledger.in_state_dir(site.state) as ledger:
        rows = ledger.rows(company)
    assert sorted(r.upload_name for r in rows) == sorted(p.name for p in paths)
    for row in rows:
        parsed = site.data / company / "c1" / row.device_folder / "parsed" / row.file_name
        assert row.sha256 == hashlib.sha256(parsed.read_bytes()).hexdigest()
        assert (row.points_expected, row.points_verified, row.status) == (
            30 * WORKER_WIDTH,
            30 * WORKER_WIDTH,
            "verified",
        )


def _one_file(env: Env, samples: Path) -> tuple[str, Path]:
    company = env.company()
    upload = env.root / company / "v003-mono" / "02001311" / "T302_260122_162658_UTC.tsv"
    upload.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / "v003-mono" / "02001311" / upload.name, upload)
    return company, upload


def test_a_ledger_that_cannot_be_written_defers_the_file_until_it_can(
    env: Env, samples: Path, influxdb: InfluxInstance
) -> None:
    company, upload = _one_file(env, samples)
    state = env.root.parent / "work" / "state"
    target = InfluxTarget(env.client, influxdb.org, gzip_level=0)
    ledger = Ledger(state / "ledger.sqlite3", timeout_s=0.2)
    options = IngestOptions(
        data_root=env.root.resolve(), ledger=Recorder(ledger, FluxVerifier(env.client))
    )
    holder = sqlite3.connect(state / "ledger.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the ledger locked
    try:
        (locked,) = ingest_paths([upload], target, options).files
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (locked.status, locked.deferred_by) == ("deferred", "filesystem")
    assert "database is locked" in (locked.error or "")
    assert upload.is_file()  # left where it was, to be ingested again
    assert not (upload.parent / "parsed").exists()
    (again,) = ingest_paths([upload], target, options).files
    ledger.close()
    assert again.status == "success"
    with Ledger.in_state_dir(state) as reopened:
        (row,) = reopened.rows(company)
    assert (row.file_name, row.status) == (upload.name, "verified")


def test_a_read_back_that_fails_leaves_the_entry_unverified_and_the_file_moves(
    env: Env, samples: Path, influxdb: InfluxInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    company, upload = _one_file(env, samples)
    state = env.root.parent / "work" / "state"
    target = InfluxTarget(env.client, influxdb.org, gzip_level=0)
    gone = make_client(f"http://127.0.0.1:{_dead_port()}", influxdb.token, influxdb.org, 2, 0)
    with Recorder(Ledger.in_state_dir(state), FluxVerifier(gone)) as recorder:
        options = IngestOptions(data_root=env.root.resolve(), ledger=recorder)
        (report,) = ingest_paths([upload], target, options).files
    assert report.status == "success"
    assert (upload.parent / "parsed" / upload.name).is_file()
    assert report.ledger is not None
    assert (report.ledger.status, report.ledger.points_verified) == ("unverified", None)
    assert health.check_ledger(state).status == health.Status.OK  # not a loss: not counted
    # `verify` counts it now that InfluxDB answers.
    assert cli.run(["verify", company]) == 0
    assert "1 files checked, 0 with points missing" in capsys.readouterr().out
    with Ledger.in_state_dir(state) as ledger:
        (row,) = ledger.rows(company)
    assert (row.status, row.points_verified) == ("verified", row.points_expected)


def test_more_files_than_one_query_counts_are_each_counted_as_their_own(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, tmp_path: Path
) -> None:
    """45 files (two read-back queries): each entry gets its own file's count, checked
    against Flux; then one device's points are deleted and only its entry is short."""
    from tests.integration.helpers_ingest import drop_buckets, new_company
    from tests.integration.test_ingest_pipeline import make_tree

    assert READ_BACK_BATCH < 45
    tree = make_tree(tmp_path / "data", new_company(), 45, rows=3)
    target = InfluxTarget(influx_client, influxdb.org, gzip_level=0)
    try:
        with Recorder(Ledger.in_state_dir(tmp_path / "state"), FluxVerifier(influx_client)) as rec:
            run = ingest_paths(tree.files, target, IngestOptions(tree.root, ledger=rec))
            target.flush()
            rows = [report.ledger for report in run.files]
            assert all(row is not None and row.status == "verified" for row in rows)
            entries = [row for row in rows if row is not None]
            for row in entries:
                flux = _flux_count(
                    influx_client, tree.company, row.campaign, row.device,
                    row.first_time or "", row.last_time or "",
                )  # fmt: skip
                assert row.points_verified == row.points_expected == flux > 0

            victim = entries[41]  # in the second query
            influx_client.delete_api().delete(
                dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
                dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
                f'device_master_sn="{victim.device}"',
                bucket=tree.company,
            )
            again = rec.verify(entries)
        assert [row.status for row in again] == ["verified"] * 41 + ["mismatch"] + ["verified"] * 3
        assert again[41].points_verified == 0
    finally:
        drop_buckets(influx_client, [tree.company])
