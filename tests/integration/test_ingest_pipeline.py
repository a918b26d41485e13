"""Pipelined ingestion against the real InfluxDB: many files in one run, each
moved to `parsed/` only once InfluxDB acknowledged all its points; an outage
in the middle, a file InfluxDB refuses in the middle, and `kill -9` of a
pipelined run followed by a re-run.

Files are generated (tests/factories.py), one device each, so what InfluxDB
holds can be checked file by file; expected values come from the naive reader
of tests/integration/helpers_ingest.py, not from the code under test.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from powerview import layout, stack
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, ingest_paths
from powerview.report import FileReport, RunReport
from tests.conftest import InfluxInstance
from tests.factories import Export
from tests.integration.helpers_ingest import Export as ReadExport
from tests.integration.helpers_ingest import (
    drop_buckets,
    expected_points,
    new_company,
    read_export,
    tree_files,
)

CAMPAIGN = "pipeline"
POWERVIEW = Path(sys.executable).parent / "powerview"


@dataclass
class Tree:
    """A data root with one company and device files, one device each, read
    (before any run moves them) by the naive reader."""

    root: Path
    company: str
    files: list[Path]
    exports: dict[Path, ReadExport]

    def export(self, path: Path) -> ReadExport:
        return self.exports[path]

    def serial(self, path: Path) -> str:
        return path.parent.name

    def expected(self, path: Path) -> dict[tuple[str, int], float]:
        return expected_points([self.export(path)], CAMPAIGN)


def _read(path: Path) -> ReadExport:
    export = read_export(path)
    assert export is not None
    return export


def make_tree(root: Path, company: str, count: int, rows: int = 60) -> Tree:
    """`count` files under root/company/pipeline/<serial>/, a distinct device each."""
    files = []
    for n in range(count):
        serial = f"0300{n:04d}"
        export = Export(
            master_sn=serial,
            slaves=(f"0500{n:04d}",),
            rows=rows,
            start=dt.datetime(2026, 1, 20) + dt.timedelta(hours=n),
            step_s=60,
            seed=n,
        )
        files.append(export.write(root / company / CAMPAIGN / serial / "T302_260120_000000.tsv"))
    return Tree(root, company, files, {path: _read(path) for path in files})


def device_points(client: InfluxDBClient, bucket: str, serial: str) -> dict[tuple[str, int], float]:
    """{(field, epoch): value} of one device's points."""
    query = (
        f'from(bucket: "{bucket}") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "electrical" and r.device_master_sn == "{serial}")'
    )
    points: dict[tuple[str, int], float] = {}
    for table in client.query_api().query(query):
        for record in table.records:
            when = int(record.get_time().timestamp())
            points[(record.get_field(), when)] = record.get_value()
    return points


def options(root: Path, depth: int = 4) -> IngestOptions:
    # Small requests: every file takes several batches, spread over the connections.
    return IngestOptions(root, lines_per_write=120, files_in_flight=depth)


def target_for(url: str, influxdb: InfluxInstance, connections: int, retries: int = 4):
    client = make_client(url, influxdb.token, influxdb.org, 10, retries)
    return InfluxTarget(client, influxdb.org, connections=connections)


@pytest.fixture
def tree(tmp_path: Path, influxdb: InfluxInstance) -> Iterator[Tree]:
    company = new_company()
    yield make_tree(tmp_path / "data", company, 12)
    with influxdb.client() as client:
        drop_buckets(client, [company])


def statuses(run: RunReport) -> list[str]:
    return [f.status for f in run.files]


# -- many files ---------------------------------------------------------------------


class WatchedTarget(InfluxTarget):
    """The real writer, noting any batch posted for a file already in parsed/."""

    def __init__(self, client: InfluxDBClient, org: str, tree: Tree, connections: int) -> None:
        super().__init__(client, org, connections=connections)
        self.tree = tree
        self.posted_after_move: list[str] = []

    def post(self, bucket: str, body: bytes, precision: str = "s") -> None:
        lines = gzip.decompress(body).decode()  # the writers' default: gzip level 1
        serials = set(re.findall(r",device_master_sn=(\d+)", lines))
        for serial in serials:
            device = self.tree.root / self.tree.company / CAMPAIGN / serial
            if (device / "parsed").exists():
                self.posted_after_move.append(serial)
        super().post(bucket, body, precision)


@pytest.mark.parametrize("connections", [1, 2])
def test_every_file_is_moved_only_once_all_its_points_are_in(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, tree: Tree, connections: int
) -> None:
    """No batch of a file is posted after the file was moved, and when each file
    is reported, InfluxDB holds every one of its points (queried right then)."""
    at_report: dict[str, dict[tuple[str, int], float]] = {}

    def on_file(report: FileReport) -> None:
        assert report.moved_to is not None
        assert Path(report.moved_to).is_file()
        at_report[report.path] = device_points(influx_client, tree.company, report.device_sn or "")

    client = make_client(influxdb.url, influxdb.token, influxdb.org, 10, 4)
    target = WatchedTarget(client, influxdb.org, tree, connections)
    try:
        run = ingest_paths(tree.files, target, options(tree.root), on_file=on_file)
    finally:
        target.close()
    assert statuses(run) == ["success"] * len(tree.files)
    assert [f.path for f in run.files] == [str(p) for p in tree.files]  # finished in order
    assert target.posted_after_move == []
    for path in tree.files:
        assert at_report[str(path)] == tree.expected(path), path
        assert not path.exists()
        assert (path.parent / "parsed" / path.name).is_file()
    assert target.requests >= 3 * len(tree.files)  # several batches per file


class HeldTarget(InfluxTarget):
    """The real writer, its first request held until three files are queued."""

    def __init__(self, client: InfluxDBClient, org: str, root: Path) -> None:
        super().__init__(client, org)
        self.root = root
        self.release = threading.Event()
        self.seen_while_held: list[str] | None = None
        self.files_closed = 0
        self._held = False

    def post(self, bucket: str, body: bytes, precision: str = "s") -> None:
        if not self._held:
            self._held = True
            assert self.release.wait(60), "the next files were never parsed"
        super().post(bucket, body, precision)

    def file_done(self) -> Future[None]:
        done = super().file_done()
        self.files_closed += 1
        if self.files_closed == 3:
            # The first file's write is not acknowledged yet: nothing may be moved.
            self.seen_while_held = sorted(
                str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
            )
            self.release.set()
        return done


def test_next_files_are_parsed_while_a_write_is_unacknowledged(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, tmp_path: Path
) -> None:
    company = new_company()
    tree = make_tree(tmp_path / "data", company, 5, rows=10)  # one request per file
    before = sorted(tree_files(tree.root))
    client = make_client(influxdb.url, influxdb.token, influxdb.org, 10, 4)
    target = HeldTarget(client, influxdb.org, root=tree.root)
    try:
        run = ingest_paths(tree.files, target, options(tree.root))
    finally:
        target.close()
    try:
        assert target.seen_while_held == before  # three files parsed, none moved
        assert statuses(run) == ["success"] * 5
        for path in tree.files:
            assert device_points(influx_client, company, tree.serial(path)) == tree.expected(path)
    finally:
        drop_buckets(influx_client, [company])


# -- an outage in the middle --------------------------------------------------------


def test_an_outage_mid_run_defers_the_files_in_flight_and_after_and_moves_none(
    influxd_binary: Path, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "data", new_company(), 12)
    with stack.throwaway_server(influxd_binary, tmp_path / "influxd") as (server, setup):
        instance = InfluxInstance(server, setup.url, setup.org, setup.token, setup.bucket)

        def on_file(report: FileReport) -> None:
            if len([1 for p in tree.files if not p.exists()]) == 2:
                server.stop()  # InfluxDB goes down after the second file is in

        target = target_for(setup.url, instance, connections=2, retries=0)
        try:
            run = ingest_paths(tree.files, target, options(tree.root), on_file=on_file)
        finally:
            target.close()
        got = statuses(run)
        done = got.index("deferred")
        assert done >= 2
        assert got == ["success"] * done + ["deferred"] * (len(tree.files) - done)
        # At most four files were parsed ahead of the second: the rest were never tried.
        assert done <= 6
        for path, report in zip(tree.files, run.files, strict=True):
            if report.status == "deferred":
                assert report.deferred_by == "influxdb"
                assert report.moved_to is None
                assert path.is_file()
                assert not (path.parent / "parsed").exists()
            else:
                assert (path.parent / "parsed" / path.name).is_file()

        server.start()
        with instance.client() as client:
            for path in tree.files[:done]:  # what was moved is in, all of it
                assert device_points(client, tree.company, tree.serial(path)) == tree.expected(path)
            # InfluxDB back: the next run takes exactly the deferred files.
            target = target_for(setup.url, instance, connections=2)
            try:
                again = ingest_paths(layout.find_files([tree.root]), target, options(tree.root))
            finally:
                target.close()
            assert statuses(again) == ["success"] * (len(tree.files) - done)
            for path in tree.files:
                assert device_points(client, tree.company, tree.serial(path)) == tree.expected(path)


# -- a file InfluxDB refuses, in the middle -------------------------------------------


@pytest.mark.parametrize("connections", [1, 2])
def test_a_file_influxdb_refuses_goes_to_error_and_the_others_proceed(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, tree: Tree, connections: int
) -> None:
    """A string already stored under one of the sixth file's fields at its last
    row: InfluxDB refuses that file's last batch (field type conflict), so the
    file must still be in place when that batch is answered."""
    refused = tree.files[5]
    channel = tree.export(refused).channels(CAMPAIGN)[0]
    last_epoch = tree.export(refused).rows[-1][0]
    influx_client.buckets_api().create_bucket(bucket_name=tree.company, org=influxdb.org)
    influx_client.write_api(write_options=SYNCHRONOUS).write(
        tree.company,
        record=f'electrical,source=conflict {channel.field}="text" {last_epoch}',
        write_precision="s",
    )
    target = target_for(influxdb.url, influxdb, connections)
    try:
        run = ingest_paths(tree.files, target, options(tree.root))
    finally:
        target.close()
    assert statuses(run) == ["success"] * 5 + ["error"] + ["success"] * 6
    assert "field type conflict" in (run.files[5].error or "")
    assert (refused.parent / "error" / refused.name).is_file()
    assert not (refused.parent / "parsed").exists()
    for path in tree.files[:5] + tree.files[6:]:
        assert (path.parent / "parsed" / path.name).is_file()
        assert device_points(influx_client, tree.company, tree.serial(path)) == tree.expected(path)


# -- kill -9 of a pipelined run, then a re-run ------------------------------------------


def test_kill_9_of_a_pipelined_run_then_a_rerun_loses_and_doubles_nothing(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path / "data", new_company(), 30, rows=2000)
    contents = {path: path.read_bytes() for path in tree.files}
    meta = f"meta_{tree.company}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "TSV_META_BUCKET": meta,
        "TSV_REPORT_DIR": str(tmp_path / "reports"),
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
        "POWERVIEW_INFLUXDB_CONNECTIONS": "2",
        "POWERVIEW_WRITE_BATCH_SIZE": "500",
    }
    (tmp_path / "work").mkdir()
    command = [str(POWERVIEW), "ingest", str(tree.root), "--data-root", str(tree.root)]

    def moved() -> int:
        return sum(1 for p in tree.files if (p.parent / "parsed" / p.name).exists())

    try:
        process = subprocess.Popen(
            command, env=env, cwd=tmp_path / "work", stdout=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while process.poll() is None and moved() < 3:  # mid-run, files in flight
                assert time.monotonic() < deadline, "powerview ingest made no progress"
                time.sleep(0.01)
            assert process.poll() is None, "the run ended before it could be killed"
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert 3 <= moved() < len(tree.files)

        final = subprocess.run(
            command, env=env, cwd=tmp_path / "work", capture_output=True, timeout=300
        )
        assert final.returncode == 0, final.stderr
        for path, content in contents.items():
            # In parsed/ once, under its own name, intact; nowhere else.
            assert tree_files(path.parent) == {f"parsed/{path.name}": content}
            assert device_points(influx_client, tree.company, tree.serial(path)) == tree.expected(
                path
            )
        count = influx_client.query_api().query(
            f'from(bucket: "{tree.company}") |> range(start: 0) |> group() |> count()'
        )
        total = sum(r.get_value() for t in count for r in t.records)
        assert total == sum(len(tree.expected(p)) for p in tree.files)  # nothing doubled
    finally:
        drop_buckets(influx_client, [tree.company, meta])


def test_a_later_row_of_a_file_wins_over_two_connections(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, tree: Tree
) -> None:
    """A file repeating its first time in its last row (another batch): InfluxDB
    keeps the later row, as on one connection, since a file's batches keep order."""
    path = tree.files[0]
    lines = path.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line[:2].isdigit() and "/" in line[:9])
    stamp, *values = lines[first].split("\t")
    later = [f"{float(v) + 1000:.1f}" for v in values]
    lines.insert(lines.index("END_DATA"), "\t".join([stamp, *later]))
    path.write_text("\n".join(lines) + "\n")
    export = _read(path)
    channel = export.channels(CAMPAIGN)[0]
    target = target_for(influxdb.url, influxdb, connections=2)
    try:
        run = ingest_paths(tree.files[:1], target, options(tree.root))
    finally:
        target.close()
    assert statuses(run) == ["success"]
    epoch = export.rows[0][0]
    stored = device_points(influx_client, tree.company, tree.serial(path))
    assert stored[(channel.field, epoch)] == float(later[channel.index])


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_every_gzip_level_lands_the_same_points(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, bucket: str, level: int
) -> None:
    """Bodies compressed by ISA-L (levels above its 3 mean 3) are read by InfluxDB as sent."""
    target = InfluxTarget(
        make_client(influxdb.url, influxdb.token, influxdb.org, 10, 0), influxdb.org, level
    )
    try:
        target.write(bucket, "m,t=a f=1.5 100\nm,t=a f=2.5 200\n")
        target.file_done().result(timeout=30)
    finally:
        target.close()
    tables = influx_client.query_api().query(
        "from(bucket: b) |> range(start: 0)", params={"b": bucket}
    )
    stored = {int(r.get_time().timestamp()): r.get_value() for t in tables for r in t.records}
    assert stored == {100: 1.5, 200: 2.5}
    assert target.requests == 1
