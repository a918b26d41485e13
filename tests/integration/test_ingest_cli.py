"""`powerview ingest` and `powerview parse` end to end through `cli.run`, with the
settings taken from the environment exactly as in production, against the real
InfluxDB: meta-bucket points, the JSON run report, --json, --dry-run, exit
statuses and the parse output formats.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from powerview import cli, stack
from tests.conftest import InfluxInstance
from tests.integration.helpers_ingest import (
    EARLIEST_DEFAULT,
    bucket_exists,
    drop_buckets,
    expected_points,
    expected_tags,
    iso,
    new_company,
    outcome_path,
    read_export,
    stored_points,
    tree_files,
    without_reasons,
)

CAMPAIGN1 = "campaign1/02001084/T302_251012_031720.tsv"
MONO = "v003-mono/02001311/T302_260122_162658_UTC.tsv"
TRI_SHORT = "v003-tri/02000800/T302_260128_171459_UTC.tsv"
T202 = "campaign/02001283/T202_251022_121951.tsv"
EMPTY = "campaign/02001283/T302_260109_120045.tsv"
HEADERS_ONLY = "campaign/02001283/T302_260109_133915.tsv"
SETTING_PREFIXES = ("POWERVIEW_", "INFLUXDB_", "TSV_", "GRAFANA_")


@dataclass
class Env:
    """A working folder, data root and report folder of one test, settings in the env."""

    root: Path
    reports: Path
    meta_bucket: str
    client: InfluxDBClient
    companies: list[str] = field(default_factory=list)

    def company(self) -> str:
        name = new_company()
        self.companies.append(name)
        return name

    def report_files(self) -> list[Path]:
        return sorted(self.reports.glob("*.json")) if self.reports.is_dir() else []

    def only_report(self) -> dict[str, Any]:
        (path,) = self.report_files()
        return json.loads(path.read_text())


def _clear_settings(monkeypatch: pytest.MonkeyPatch, work: Path) -> None:
    """No setting from the caller's environment, .env or stack env file leaks in."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    work.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("POWERVIEW_STATE_DIR", str(work / "state"))


def _set_influx(
    monkeypatch: pytest.MonkeyPatch, influxdb: InfluxInstance, meta: str, reports: Path
) -> None:
    monkeypatch.setenv("INFLUXDB_URL", influxdb.url)
    monkeypatch.setenv("INFLUXDB_ORG", influxdb.org)
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", influxdb.token)
    monkeypatch.setenv("TSV_META_BUCKET", meta)
    monkeypatch.setenv("TSV_REPORT_DIR", str(reports))


@pytest.fixture
def env(influxdb: InfluxInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    _clear_settings(monkeypatch, tmp_path / "work")
    meta = f"meta_{uuid.uuid4().hex[:10]}"
    _set_influx(monkeypatch, influxdb, meta, tmp_path / "reports")
    (tmp_path / "data").mkdir()
    with influxdb.client() as client:
        state = Env(tmp_path / "data", tmp_path / "reports", meta, client)
        yield state
        drop_buckets(client, [*state.companies, meta])


def ingest(*args: str | Path) -> int:
    return cli.run(["ingest", *map(str, args)])


# -- one CLI run over the whole sample tree ---------------------------------------


@dataclass
class SampleRun:
    env: Env
    acme: str
    faulty: str
    status: int
    sources: dict[str, Path]  # "<company>/<relative>" → sample file

    def entry(self, company: str, relative: str) -> dict[str, Any]:
        path = str(self.env.root / company / relative)
        (found,) = [f for f in self.env.only_report()["files"] if f["path"] == path]
        return found


@pytest.fixture(scope="module")
def sample_run(
    influxdb: InfluxInstance, samples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SampleRun]:
    base = tmp_path_factory.mktemp("cli_samples")
    with pytest.MonkeyPatch.context() as monkeypatch, influxdb.client() as client:
        _clear_settings(monkeypatch, base / "work")
        meta = f"meta_{uuid.uuid4().hex[:10]}"
        _set_influx(monkeypatch, influxdb, meta, base / "reports")
        state = Env(base / "data", base / "reports", meta, client)
        acme, faulty = state.company(), state.company()
        shutil.copytree(samples / "acme", state.root / acme)
        shutil.copytree(samples / "faulty", state.root / faulty)
        sources = {
            f"{company}/{path.relative_to(samples / source)}": path
            for company, source in ((acme, "acme"), (faulty, "faulty"))
            for path in (samples / source).rglob("*.tsv")
        }
        try:
            status = ingest(state.root, "--data-root", state.root)
            yield SampleRun(state, acme, faulty, status, sources)
        finally:
            drop_buckets(client, [*state.companies, meta])


def _pivot(client: InfluxDBClient, bucket: str, measurement: str) -> list[dict[str, Any]]:
    query = (
        f'from(bucket: "{bucket}") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "{measurement}") '
        '|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    return [r.values for t in client.query_api().query(query) for r in t.records]


def test_sample_run_exits_1_because_two_files_were_rejected(sample_run: SampleRun) -> None:
    assert sample_run.status == 1
    totals = sample_run.env.only_report()["totals"]
    assert totals["nb_files_total"] == 10
    assert totals["nb_files_success"] == 8
    assert totals["nb_files_failed"] == 2
    assert totals["nb_files_deferred"] == 0


def _expected_file_point(source: Path) -> dict[str, Any]:
    export = read_export(source)
    if export is None:
        return {"nb_rows": 0, "nb_channels": 0, "nb_points": 0}
    return {
        "nb_rows": len(export.rows),
        "nb_channels": export.width,
        "nb_points": len(export.valid_rows()) * export.width,
    }


def test_meta_bucket_has_the_run_point(sample_run: SampleRun) -> None:
    env = sample_run.env
    (run,) = _pivot(env.client, env.meta_bucket, "tsv_parser_run")
    points = sum(_expected_file_point(s)["nb_points"] for s in sample_run.sources.values())
    assert points == 78348  # 143x30 + 134x6 + 62x24 + 11293x6 + (631+5)x6 + 6x12 + 20x6
    assert {k: run[k] for k in ("nb_files_total", "nb_files_success", "nb_files_failed")} == {
        "nb_files_total": 10,
        "nb_files_success": 8,
        "nb_files_failed": 2,
    }
    assert run["nb_files_deferred"] == 0
    assert run["nb_points_total"] == points
    assert isinstance(run["duration_s"], float)
    assert 0 < run["duration_s"] < 120
    assert run["base_folder"] == str(env.root)


def test_meta_bucket_has_one_point_per_file(sample_run: SampleRun) -> None:
    env = sample_run.env
    rows = _pivot(env.client, env.meta_bucket, "tsv_parser_file")
    assert len(rows) == 10
    by_name = {(r["bucket"], r["file_name"]): r for r in rows}
    assert len(by_name) == 10
    for key, source in sample_run.sources.items():
        company, campaign, device, name = key.split("/")
        row = by_name[(company, name)]
        bad = name in (Path(EMPTY).name, Path(HEADERS_ONLY).name)
        assert row["status"] == ("error" if bad else "success"), key
        assert row["campaign"] == campaign
        if device == "02001084":
            # The folder says 02001084, the file's master is 02001171 (see the report note).
            assert row["device_master_sn"] in ("02001084", "02001171")
        else:
            assert row["device_master_sn"] == device
        expected = _expected_file_point(source)
        if bad:
            expected["nb_points"] = 0
        assert {k: row[k] for k in expected} == expected, key
        assert (row["nb_invalid_timestamps"], row["nb_invalid_values"]) == (0, 0)
        error = row.get("error") or ""
        if name == Path(EMPTY).name:
            assert "empty file" in error
        elif name == Path(HEADERS_ONLY).name:
            assert "no valid data rows" in error
        else:
            assert error == ""


def test_report_file_entries(sample_run: SampleRun, samples: Path) -> None:
    run, acme, faulty = sample_run, sample_run.acme, sample_run.faulty
    report = run.env.only_report()
    assert report["dry_run"] is False
    assert len(report["files"]) == 10

    entry = run.entry(acme, CAMPAIGN1)
    export = read_export(samples / "acme" / CAMPAIGN1)
    assert export is not None
    assert entry["status"] == "success"
    assert entry["error"] is None
    assert entry["moved_to"] == str(run.env.root / outcome_path(f"{acme}/{CAMPAIGN1}", "parsed"))
    assert {k: entry["format"][k] for k in ("model_tag", "layout", "phase", "master_sn")} == {
        "model_tag": "MV_T302_V002",
        "layout": "plain",
        "phase": "tri",
        "master_sn": "02001171",
    }
    assert entry["metadata"] == {}
    assert entry["counts"]["nb_rows"] == 143
    assert entry["counts"]["nb_points"] == 143 * 30
    assert entry["time_range"] == {"first": "2025-08-03T03:20:00Z", "last": "2025-08-04T03:00:00Z"}
    assert entry["time_range"]["first"] == iso(export.rows[0][0])
    assert any("02001084" in w and "02001171" in w for w in entry["warnings"])
    # Statistics of one slave channel, worked out from the file itself.
    channel = export.channels("campaign1")[8]
    assert channel.channel_id == "M02001171_S04000466_Ch3"
    values = export.column(8)
    (stats,) = [c for c in entry["channels"] if c["channel_id"] == channel.channel_id]
    assert stats["field"] == "M02001171_S04000466_Ch3_W"
    assert (stats["count"], stats["min"], stats["max"]) == (143, min(values), max(values))
    assert stats["mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert (stats["name"], stats["unit"], stats["device_sn"]) == ("Voie3", "W", "04000466")
    assert [c["channel_id"] for c in entry["channels"]] == [
        c.channel_id for c in export.channels("campaign1")
    ]

    mono = run.entry(acme, MONO)
    mono_export = read_export(samples / "acme" / MONO)
    assert mono_export is not None
    assert mono["format"]["model_tag"] == "MV_T302_V003"
    assert mono["format"]["layout"] == "block"
    assert mono["format"]["phase"] == "mono"
    assert mono["metadata"] == mono_export.metadata
    assert mono["metadata"]["TimeZoneName"] == "Europe/Paris"
    assert mono["counts"]["nb_duplicate_timestamps"] == 2
    assert mono["warnings"] == []

    t202 = run.entry(faulty, T202)
    assert t202["status"] == "success"
    assert t202["partial"] is True
    assert t202["counts"]["nb_out_of_window"] == 1
    assert t202["counts"]["nb_duplicate_timestamps"] == 2
    assert t202["time_range"] == {"first": "2025-07-29T11:13:12Z", "last": "2025-10-22T12:18:00Z"}

    for relative, reason in ((EMPTY, "empty file"), (HEADERS_ONLY, "no valid data rows")):
        bad = run.entry(faulty, relative)
        assert bad["status"] == "error"
        assert reason in bad["error"]
        assert bad["moved_to"] == str(run.env.root / outcome_path(f"{faulty}/{relative}", "error"))
        assert bad["channels"] == [] or all(c["count"] == 0 for c in bad["channels"])


def test_sample_run_moved_every_file(sample_run: SampleRun) -> None:
    files = without_reasons(tree_files(sample_run.env.root))
    expected = {}
    for key, source in sample_run.sources.items():
        outcome = (
            "error" if source.name in (Path(EMPTY).name, Path(HEADERS_ONLY).name) else "parsed"
        )
        expected[outcome_path(key, outcome)] = source.read_bytes()
    assert files == expected


# -- --json, --dry-run and exit statuses -------------------------------------------


def test_json_prints_the_same_report_as_the_file(
    env: Env, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    shutil.copytree(samples / "acme" / "v003-tri", env.root / company / "v003-tri")
    assert ingest(env.root, "--data-root", env.root, "--json") == 0  # all good
    printed = json.loads(capsys.readouterr().out)
    assert printed == env.only_report()
    assert [f["status"] for f in printed["files"]] == ["success"] * 3
    assert printed["totals"]["nb_points_total"] == (631 + 5) * 6 + 6 * 12
    assert printed["meta_written"] is True


def test_dry_run_writes_moves_and_reports_nothing(
    env: Env, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acme, faulty = env.company(), env.company()
    shutil.copytree(samples / "acme" / "v003-tri", env.root / acme / "v003-tri")
    shutil.copytree(samples / "faulty", env.root / faulty)
    before = tree_files(env.root)
    status = ingest(env.root, "--data-root", env.root, "--dry-run", "--json")
    printed = json.loads(capsys.readouterr().out)
    assert status == 1  # the empty and headers-only files would be rejected
    assert printed["dry_run"] is True
    statuses = sorted(f["status"] for f in printed["files"])
    assert statuses == ["error"] * 2 + ["success"] * 4
    assert all(f["moved_to"] is None for f in printed["files"])
    assert printed["totals"]["nb_points_total"] == (631 + 5) * 6 + 6 * 12 + 20 * 6
    assert tree_files(env.root) == before
    assert env.report_files() == []
    for bucket in (acme, faulty, env.meta_bucket):
        assert not bucket_exists(env.client, bucket), bucket


def test_exit_0_when_every_file_is_ingested(env: Env, samples: Path) -> None:
    company = env.company()
    target = env.root / company / TRI_SHORT
    target.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / TRI_SHORT, target)
    # A single file without --data-root: the root is the file's fourth parent.
    assert ingest(target) == 0
    assert tree_files(env.root) == {
        outcome_path(f"{company}/{TRI_SHORT}", "parsed"): (
            samples / "acme" / TRI_SHORT
        ).read_bytes()
    }
    assert len(stored_points(env.client, company).values) == 5 * 6
    assert env.only_report()["files"][0]["status"] == "success"


@pytest.mark.parametrize("level", ["device", "campaign", "company"])
def test_a_folder_inside_a_tree_is_ingested_without_data_root(
    env: Env, samples: Path, level: str
) -> None:
    """`powerview ingest <device folder>` (or a campaign or company folder) outside the
    configured data root: the tree's root is where the files' depth says it is."""
    company = env.company()
    target = env.root / company / TRI_SHORT
    target.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / TRI_SHORT, target)
    folder = {"device": target.parent, "campaign": target.parents[1], "company": target.parents[2]}
    assert ingest(folder[level]) == 0
    assert tree_files(env.root) == {
        outcome_path(f"{company}/{TRI_SHORT}", "parsed"): (
            samples / "acme" / TRI_SHORT
        ).read_bytes()
    }
    assert len(stored_points(env.client, company, "v003-tri").values) == 5 * 6


def test_exit_2_and_files_stay_when_influxdb_is_unreachable(
    env: Env, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One retry keeps this short; the library test covers several files with retries=0."""
    monkeypatch.setenv("INFLUXDB_URL", f"http://127.0.0.1:{stack.free_port()}")  # nobody there
    monkeypatch.setenv("POWERVIEW_INFLUXDB_RETRIES", "1")
    company = env.company()
    target = env.root / company / TRI_SHORT
    target.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / TRI_SHORT, target)
    before = tree_files(env.root)
    assert ingest(env.root, "--data-root", env.root) == 2
    assert tree_files(env.root) == before
    assert not any(p.name in ("parsed", "error") for p in env.root.rglob("*"))
    report = env.only_report()
    assert [f["status"] for f in report["files"]] == ["deferred"]
    assert "unreachable" in report["files"][0]["error"]
    assert report["meta_written"] is False


def test_exit_2_and_files_stay_with_a_wrong_token(
    env: Env, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFLUXDB_ADMIN_TOKEN", "wrong-token")
    company = env.company()
    shutil.copytree(samples / "acme" / "v003-tri", env.root / company / "v003-tri")
    before = tree_files(env.root)
    assert ingest(env.root, "--data-root", env.root) == 2
    assert tree_files(env.root) == before
    report = env.only_report()
    assert [f["status"] for f in report["files"]] == ["deferred"] * 3
    assert "401" in report["files"][0]["error"]
    assert not bucket_exists(env.client, company)


def test_two_quick_runs_leave_two_run_points(env: Env, samples: Path) -> None:
    company = env.company()
    for relative in (TRI_SHORT, "v003-tri/02000800/T302_260208_211459_UTC.tsv"):
        target = env.root / company / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples / "acme" / relative, target)
        assert ingest(target, "--data-root", env.root) == 0
    runs = _pivot(env.client, env.meta_bucket, "tsv_parser_run")
    assert len(runs) == 2
    assert sorted(r["nb_points_total"] for r in runs) == [5 * 6, 6 * 12]
    files = _pivot(env.client, env.meta_bucket, "tsv_parser_file")
    assert len(files) == 2


# -- parse --------------------------------------------------------------------------

_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def _parse_lp(text: str) -> list[tuple[str, dict[str, str], str, str, int]]:
    """(measurement, tags, field, value text, epoch) per line protocol line."""
    parsed = []
    for line in text.splitlines():
        series, field_part, stamp = _UNESCAPED_SPACE.split(line)
        measurement, *tag_parts = _UNESCAPED_COMMA.split(series)
        tags = {}
        for part in tag_parts:
            key, value = part.split("=", 1)
            tags[key] = value.replace("\\ ", " ")
        field_key, value = field_part.split("=", 1)
        parsed.append((measurement, tags, field_key, value, int(stamp)))
    return parsed


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No InfluxDB settings at all; returns a data root."""
    _clear_settings(monkeypatch, tmp_path / "work")
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def _place(samples: Path, root: Path, source: str, relative: str) -> Path:
    target = root / new_company() / relative
    target.parent.mkdir(parents=True)
    shutil.copy(samples / source / relative, target)
    return target


def parse(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.run(["parse", str(path), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("relative", [CAMPAIGN1, MONO])
def test_parse_lp_is_what_ingestion_writes(
    env: Env,
    influxdb: InfluxInstance,
    samples: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    relative: str,
) -> None:
    company = env.company()
    target = env.root / company / relative
    target.parent.mkdir(parents=True)
    shutil.copy(samples / "acme" / relative, target)
    campaign = relative.split("/")[0]
    for name in ("INFLUXDB_URL", "INFLUXDB_ORG", "INFLUXDB_ADMIN_TOKEN"):
        monkeypatch.delenv(name)  # parse needs no server
    status, out, _ = parse(target, capsys)
    assert status == 0
    lines = _parse_lp(out)
    export = read_export(target)
    assert export is not None
    assert len(lines) == len(export.valid_rows()) * export.width  # one line per point

    _set_influx(monkeypatch, influxdb, env.meta_bucket, env.reports)
    assert ingest(env.root, "--data-root", env.root, "--json") == 0
    written = json.loads(capsys.readouterr().out)["files"][0]
    assert written["counts"]["nb_points"] == len(lines)

    stored = stored_points(env.client, company)
    from_lp: dict[tuple[str, int], float] = {}
    tags_lp: dict[str, dict[str, str]] = {}
    for measurement, tags, field_key, value, epoch in lines:
        assert measurement == "electrical"
        from_lp[(field_key, epoch)] = float(value)  # a later line at the same time wins
        tags_lp[field_key] = tags
    assert from_lp == stored.values
    assert tags_lp == stored.tags == expected_tags([export], campaign)
    assert from_lp == expected_points([export], campaign)

    # The same file parsed from parsed/ after ingestion reads the same.
    status, again, _ = parse(Path(written["moved_to"]), capsys)
    assert status == 0
    assert again == out


def test_parse_json_one_record_per_row(
    bare: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _place(samples, bare, "acme", CAMPAIGN1)
    status, out, err = parse(target, capsys, "--to", "json")
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    export = read_export(target)
    assert export is not None
    assert len(records) == 143
    ids = [c.channel_id for c in export.channels("campaign1")]
    for record, (epoch, values) in zip(records, export.rows, strict=True):
        assert record["time"] == iso(epoch)
        assert record["values"] == dict(zip(ids, map(float, values), strict=True))
    assert records[0]["time"] == "2025-08-03T03:20:00Z"
    assert records[0]["values"]["M02001171_U1"] == 242.25
    assert "MV_T302_V002" in err


def test_parse_csv_time_and_channel_columns(
    bare: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _place(samples, bare, "faulty", T202)
    status, out, _ = parse(target, capsys, "--to", "csv")
    assert status == 0
    rows = list(csv.reader(io.StringIO(out)))
    export = read_export(target)
    assert export is not None
    ids = [c.channel_id for c in export.channels("campaign")]
    assert rows[0] == ["time", *ids]
    assert ids == [f"M02001283_U{i}" for i in (1, 2, 3)] + [f"M02001283_Ch{i}" for i in (1, 2, 3)]
    valid = export.valid_rows(EARLIEST_DEFAULT)
    assert len(rows) - 1 == len(valid) == 20  # the 2020 clock-reset row is left out
    for row, (epoch, values) in zip(rows[1:], valid, strict=True):
        assert row == [iso(epoch), *values]  # values as written, `-0.0` kept


def test_parse_of_a_file_without_rows_says_why(
    bare: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = parse(_place(samples, bare, "faulty", EMPTY), capsys)
    assert status == 1
    assert out == ""
    assert "empty file" in err
    status, out, _ = parse(_place(samples, bare, "faulty", HEADERS_ONLY), capsys, "--to", "csv")
    assert status == 0
    assert out.splitlines() == [
        "time,"
        + ",".join([f"M02001283_U{i}" for i in (1, 2, 3)] + [f"M02001283_Ch{i}" for i in (1, 2, 3)])
    ]
