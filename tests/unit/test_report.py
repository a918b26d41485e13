"""Run reports: totals, the meta-bucket points (names kept from the original), JSON."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from powerview.report import ChannelReport, FileReport, RunReport
from tests.unit.test_lineprotocol import parse_line, string_value

STARTED = dt.datetime(2026, 1, 20, 0, 0, 0, tzinfo=dt.UTC)
FINISHED = STARTED + dt.timedelta(seconds=2, milliseconds=500)
BASE = '/srv/my "data"\\x'


@pytest.fixture
def run() -> RunReport:
    good = FileReport(
        path="/srv/data/acme/campaign1/02001084/T302 a,b=c.tsv",
        file_name="T302 a,b=c.tsv",
        status="success",
        partial=True,
        company="acme",
        campaign="campaign1",
        device_sn="02001084",
        moved_to="/srv/data/acme/campaign1/02001084/parsed/T302 a,b=c.tsv",
        # The file's master differs from its folder, as in the campaign1 sample.
        format={"model_tag": "MV_T302_V002", "master_sn": "02001171", "columns": 30},
        counts={
            "nb_rows": 143,
            "nb_valid_rows": 140,
            "nb_invalid_timestamps": 1,
            "nb_invalid_values": 2,
            "nb_rejected_rows": 3,
            "nb_points": 4198,
            "nb_channels": 30,
        },
        channels=[
            ChannelReport(
                "M02001171_U1", "M02001171_U1_V", "Ph 1", "V", "02001171", 140, 241.0, 243.5, 242.1
            ),
        ],
        duration_s=0.25,
    )
    small = FileReport(
        path="/srv/data/acme/campaign1/02001084/b.tsv",
        file_name="b.tsv",
        status="success",
        company="acme",
        campaign="campaign1",
        device_sn="02001084",
        counts={"nb_rows": 5, "nb_points": 30, "nb_channels": 6},
    )
    bad = FileReport(
        path="/srv/data/acme/campaign1/02001084/c.tsv",
        file_name="c.tsv",
        status="error",
        company="acme",
        campaign="campaign1",
        device_sn="02001084",
        error='unknown format tag "MV_T999_V001" \\ here',
        duration_s=0.01,
    )
    later = FileReport(
        path="/srv/data/beta/c2/9/d.tsv",
        file_name="d.tsv",
        status="deferred",
        error="InfluxDB unreachable",
    )
    skipped = FileReport(path="/srv/data/x.tsv", file_name="x.tsv", status="skipped")
    return RunReport(
        base_folder=BASE,
        run_id="abc123def456",
        started_at=STARTED,
        finished_at=FINISHED,
        files=[good, small, bad, later, skipped],
    )


def test_totals(run: RunReport) -> None:
    assert run.totals() == {
        "nb_files_total": 5,
        "nb_files_success": 2,
        "nb_files_failed": 1,
        "nb_files_deferred": 1,
        "nb_files_skipped": 1,
        "nb_files_partial": 1,
        "nb_points_total": 4198 + 30,
        "duration_s": 2.5,
    }


def test_meta_run_line(run: RunReport) -> None:
    lines = run.meta_lines().splitlines()
    measurement, tags, fields, _ = parse_line(lines[0])
    assert measurement == "tsv_parser_run"
    assert tags == {}
    assert fields["nb_files_total"] == "5i"
    assert fields["nb_files_success"] == "2i"
    assert fields["nb_files_failed"] == "1i"
    assert fields["nb_files_deferred"] == "1i"
    assert fields["nb_points_total"] == "4228i"
    assert fields["duration_s"] == "2.5"
    assert fields["base_folder"] == r'"/srv/my \"data\"\\x"'
    assert string_value(fields["base_folder"]) == BASE
    assert string_value(fields["run_id"]) == "abc123def456"


def test_meta_file_lines(run: RunReport) -> None:
    text = run.meta_lines()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 1 + 4  # the run, then every file but the skipped one
    parsed = [parse_line(line) for line in lines[1:]]
    assert {p[0] for p in parsed} == {"tsv_parser_file"}

    _, tags, fields, _ = parsed[0]
    assert r",file_name=T302\ a\,b\=c.tsv" in lines[1]
    assert tags == {
        "bucket": "acme",
        "campaign": "campaign1",
        "device_master_sn": "02001171",  # as on the data points, not the folder's
        "file_name": "T302 a,b=c.tsv",
        "status": "success",
    }
    assert list(tags) == sorted(tags)
    assert {
        k: fields[k]
        for k in (
            "nb_rows",
            "nb_channels",
            "nb_points",
            "nb_invalid_timestamps",
            "nb_invalid_values",
        )
    } == {
        "nb_rows": "143i",
        "nb_channels": "30i",
        "nb_points": "4198i",
        "nb_invalid_timestamps": "1i",
        "nb_invalid_values": "2i",
    }
    assert fields["duration_s"] == "0.25"
    assert fields["error"] == '""'

    _, tags, fields, _ = parsed[1]
    assert tags["device_master_sn"] == "02001084"  # never read: the folder's serial
    assert (tags["file_name"], fields["nb_invalid_values"], fields["duration_s"]) == (
        "b.tsv",
        "0i",
        "0.0",  # a float even when zero: a field keeps one type in InfluxDB
    )

    _, tags, fields, _ = parsed[2]
    assert tags["status"] == "error"
    assert fields["error"] == r'"unknown format tag \"MV_T999_V001\" \\ here"'
    assert string_value(fields["error"]) == 'unknown format tag "MV_T999_V001" \\ here'
    assert fields["nb_rows"] == "0i"

    _, tags, fields, _ = parsed[3]
    # No location known: empty tags are left out, not written empty.
    assert tags == {"status": "deferred", "file_name": "d.tsv"}
    assert string_value(fields["error"]) == "InfluxDB unreachable"


def test_meta_lines_share_the_run_time(run: RunReport) -> None:
    stamps = {parse_line(line)[3] for line in run.meta_lines().splitlines()}
    assert len(stamps) == 1
    # finished_at, in seconds or in nanoseconds.
    assert stamps.pop() in (1_768_867_202, 1_768_867_202_500_000_000)


def test_write_json(run: RunReport, tmp_path: Path) -> None:
    folder = tmp_path / "reports" / "nested"
    path = run.write_json(folder)
    assert path.parent == folder
    assert path.name == "tsv_run_20260120T000000Z_abc123def456.json"
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temporary left
    data = json.loads(path.read_text())
    assert data["run_id"] == "abc123def456"
    assert data["base_folder"] == BASE
    assert data["started_at"] == "2026-01-20T00:00:00Z"
    assert data["finished_at"] == "2026-01-20T00:00:02.500000Z"
    assert data["totals"] == run.totals()
    assert [f["file_name"] for f in data["files"]] == [
        "T302 a,b=c.tsv",
        "b.tsv",
        "c.tsv",
        "d.tsv",
        "x.tsv",
    ]
    first = data["files"][0]
    assert first["status"] == "success"
    assert first["partial"] is True
    assert (first["company"], first["campaign"], first["device_sn"]) == (
        "acme",
        "campaign1",
        "02001084",
    )
    assert first["moved_to"].endswith("/parsed/T302 a,b=c.tsv")
    assert first["counts"]["nb_points"] == 4198
    assert first["counts"]["nb_rejected_rows"] == 3
    assert first["channels"] == [
        {
            "channel_id": "M02001171_U1",
            "field": "M02001171_U1_V",
            "name": "Ph 1",
            "unit": "V",
            "device_sn": "02001171",
            "count": 140,
            "min": 241.0,
            "max": 243.5,
            "mean": 242.1,
        }
    ]
    assert data["files"][2]["error"] == 'unknown format tag "MV_T999_V001" \\ here'
    assert data["files"][3]["status"] == "deferred"


def test_write_json_twice_keeps_both(run: RunReport, tmp_path: Path) -> None:
    other = RunReport(base_folder="/d", run_id="ffff00001111", started_at=STARTED)
    paths = {run.write_json(tmp_path), other.write_json(tmp_path)}
    assert len(paths) == 2
    assert all(re.fullmatch(r"tsv_run_\d{8}T\d{6}Z_[0-9a-f]{12}\.json", p.name) for p in paths)
