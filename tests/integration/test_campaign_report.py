"""The campaign report's figures against values computed here, independently, from the
sample exports' raw rows.

The samples go through the real pipeline (`ingest_file`) into the real InfluxDB; the
expected values come from the files read with `csv` in this module (not PowerView's
parser), their channel ids from ARCHITECTURE.md section 5. The product integrates by
the rectangle rule: each logged value is the mean power of one logging interval, so the
energy of a set of rows is sum(values) x interval; the tests compute exactly that.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
import json
import math
import os
import shutil
import statistics
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from influxdb_client import InfluxDBClient

from powerview import cli
from powerview import settings as config
from powerview.campaign_report import run
from powerview.campaign_report.csv_output import TABLES, write_csv
from powerview.campaign_report.figures import ReportOptions, build_report
from powerview.campaign_report.flux import InfluxFlux
from powerview.campaign_report.model import CampaignReport, PowerFigures
from powerview.campaign_report.provenance import ledger_sources
from powerview.exceptions import ReportError
from powerview.influx import InfluxTarget
from powerview.ingest import IngestOptions, ingest_file
from powerview.ledger import Ledger, LedgerRow
from powerview.provision.downsample import backfill, bucket_names, ensure_downsampling
from tests.conftest import InfluxInstance
from tests.integration.helpers_ingest import drop_buckets

PARIS = "Europe/Paris"
BIG = "acme/big/02001283/T302_02001283_T302_260108_214031.tsv"  # mono, 78 days, 10 min
TRI = "acme/campaign1/02001084/T302_251012_031720.tsv"  # three-phase + 4 slaves, 1 day
CUT = range(50, 60)  # data rows cut out of TRI for the campaign "gapped"
WH_PER_KWH = 1000.0


# -- the independent reading ----------------------------------------------------------


@dataclass
class Column:
    channel_id: str
    unit: str
    values: dict[dt.datetime, float]  # UTC time -> value, a later row overwriting


def read_columns(path: Path) -> dict[str, Column]:
    """A plain V002 export (the two samples used here), by csv: serials, labels, rows."""
    with path.open(newline="", encoding="ascii") as handle:
        lines = list(csv.reader(handle, delimiter="\t"))
    serials, labels, rows = lines[0], lines[1], lines[2:]
    master = serials[0]
    names = [label.rsplit(" ", 1)[0] for label in labels[1:]]
    three_phase = {"Ph 1", "Ph 2", "Ph 3"} <= {
        name for serial, name in zip(serials[1:], names, strict=True) if serial == master
    }
    voltages = 3 if three_phase else 1
    counts: dict[str, int] = {}
    columns: dict[str, Column] = {}
    for index, (serial, label) in enumerate(zip(serials[1:], labels[1:], strict=True), 1):
        counts[serial] = counts.get(serial, 0) + 1
        number = counts[serial]
        if serial == master:
            short = f"U{number}" if number <= voltages else f"Ch{number - voltages}"
            channel_id = f"M{master}_{short}"
        else:
            channel_id = f"M{master}_S{serial}_Ch{number}"
        values = {}
        for row in rows:
            moment = dt.datetime.strptime(row[0], "%d/%m/%y %H:%M:%S").replace(tzinfo=dt.UTC)
            values[moment] = float(row[index])
        columns[channel_id] = Column(
            channel_id, label.rsplit(" ", 1)[1], dict(sorted(values.items()))
        )
    return columns


def median_spacing(column: Column) -> float:
    times = list(column.values)
    return statistics.median((b - a).total_seconds() for a, b in itertools.pairwise(times))


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def local(moment: dt.datetime, zone: str) -> dt.datetime:
    return moment.astimezone(ZoneInfo(zone))


# -- the campaigns ---------------------------------------------------------------------


@dataclass
class Company:
    name: str
    client: InfluxDBClient
    columns: dict[str, dict[str, Column]]  # campaign -> channel id -> column

    def report(self, campaign: str, **options: object) -> CampaignReport:
        return build_report(
            InfluxFlux(self.client), self.name, campaign, options=ReportOptions(**options)
        )


def _copy(samples: Path, relative: str, root: Path, company: str, campaign: str) -> Path:
    destination = root / company / campaign / Path(relative).parent.name / Path(relative).name
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(samples / relative, destination))


@pytest.fixture(scope="module")
def company(
    influxdb: InfluxInstance, samples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Company]:
    """`big`, `tri` and `gapped` (TRI with rows 50-59 cut out), ingested for real."""
    name = f"rep_{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp("report") / "data"
    files = {
        "big": _copy(samples, BIG, root, name, "big"),
        "tri": _copy(samples, TRI, root, name, "tri"),
        "gapped": _copy(samples, TRI, root, name, "gapped"),
    }
    lines = files["gapped"].read_text(encoding="ascii").splitlines(keepends=True)
    files["gapped"].write_text(
        "".join(line for n, line in enumerate(lines) if n - 2 not in CUT), encoding="ascii"
    )
    columns = {campaign: read_columns(path) for campaign, path in files.items()}
    client = influxdb.client()
    target = InfluxTarget(client, influxdb.org)
    for path in files.values():
        outcome = ingest_file(path, target, IngestOptions(data_root=root))
        assert outcome.status == "success", outcome.error
    yield Company(name, client, columns)
    drop_buckets(client, bucket_names(name))
    for task in client.tasks_api().find_tasks():
        if task.name.startswith(f"powerview_downsample_{name}_"):
            client.tasks_api().delete_task(str(task.id))
    client.close()


def power_of(report: CampaignReport, channel_id: str) -> PowerFigures:
    return next(p for p in report.power if p.channel == channel_id)


# -- energy ----------------------------------------------------------------------------


def test_energy_of_one_day_is_the_rectangle_rule_over_that_days_rows(company: Company) -> None:
    column = company.columns["big"]["M02001283_Ch1"]
    interval = median_spacing(column)
    report = company.report("big", timezone=PARIS)
    figures = power_of(report, "M02001283_Ch1")

    day = dt.date(2025, 11, 20)  # a Thursday in the middle of the file
    rows = [v for t, v in column.values.items() if local(t, PARIS).date() == day]
    [daily] = [d for d in figures.daily if d.day == day]
    assert interval == 600
    assert column.unit == "W"
    assert len(rows) > 100
    assert daily.received_intervals == len(rows)
    assert daily.kwh == pytest.approx(sum(rows) * interval / 3600 / WH_PER_KWH, rel=1e-9)
    total = sum(column.values.values()) * interval / 3600 / WH_PER_KWH
    assert figures.energy_kwh == pytest.approx(total, rel=1e-9)
    assert sum(d.kwh for d in figures.daily) == pytest.approx(total, rel=1e-9)


def test_day_night_and_weekend_splits_follow_local_hours(company: Company) -> None:
    column = company.columns["big"]["M02001283_Ch2"]
    report = company.report("big", timezone=PARIS, day_hours=(7, 19))
    figures = power_of(report, "M02001283_Ch2")

    def kwh(rows: list[float]) -> float:
        return sum(rows) * 600 / 3600 / WH_PER_KWH

    times = {t: local(t, PARIS) for t in column.values}
    day = [v for t, v in column.values.items() if 7 <= times[t].hour < 19]
    night = [v for t, v in column.values.items() if not 7 <= times[t].hour < 19]
    weekend = [v for t, v in column.values.items() if times[t].weekday() >= 5]
    assert figures.day_kwh == pytest.approx(kwh(day), rel=1e-9)
    assert figures.night_kwh == pytest.approx(kwh(night), rel=1e-9)
    assert figures.weekend_kwh == pytest.approx(kwh(weekend), rel=1e-9)
    assert figures.weekday_kwh + figures.weekend_kwh == pytest.approx(figures.energy_kwh)
    # The typical day: the mean of the weekday rows logged in the 14:00 hour.
    afternoon = [
        v for t, v in column.values.items() if times[t].hour == 14 and times[t].weekday() < 5
    ]
    [point] = [p for p in figures.profile if p.minute_of_day == 14 * 60]
    assert point.weekday_kw == pytest.approx(statistics.fmean(afternoon) / WH_PER_KWH, rel=1e-9)


def test_peak_is_the_highest_interval_and_base_load_a_night_percentile(company: Company) -> None:
    column = company.columns["big"]["M02001283_Ch3"]
    report = company.report("big", timezone=PARIS, base_load_percentile=10)
    figures = power_of(report, "M02001283_Ch3")

    peak = max(column.values.values())
    assert figures.peak_kw == pytest.approx(peak / WH_PER_KWH, rel=1e-12)
    assert column.values[figures.peak_at] == peak
    night = [v for t, v in column.values.items() if not 6 <= local(t, PARIS).hour < 22]
    assert figures.base_load_kw == pytest.approx(nearest_rank(night, 10) / WH_PER_KWH, rel=1e-12)
    assert any("10th percentile (nearest rank)" in note for note in report.notes)


# -- completeness and gaps -------------------------------------------------------------


def test_a_file_with_rows_cut_out_has_one_gap_and_its_energy_estimated(company: Company) -> None:
    full = company.columns["tri"]["M02001171_S04000466_Ch2"]
    cut = company.columns["gapped"]["M02001171_S04000466_Ch2"]
    times = list(full.values)
    report = company.report("gapped")  # UTC days

    [completeness] = report.completeness
    assert completeness.interval_s == 600
    assert completeness.received_intervals == len(times) - len(CUT)
    assert completeness.expected_intervals == len(times)
    [gap] = completeness.gaps
    assert (gap.start, gap.end) == (times[CUT.start - 1], times[CUT.stop])
    assert gap.missing_intervals == len(CUT)
    figures = power_of(report, cut.channel_id)
    assert figures.energy_kwh == pytest.approx(
        sum(cut.values.values()) * 600 / 3600 / WH_PER_KWH, rel=1e-9
    )  # never bridged: the cut rows add nothing
    day = times[CUT.start].date()
    same_day = [v for t, v in cut.values.items() if t.date() == day]
    estimate = len(CUT) * statistics.fmean(same_day) * 600 / 3600 / WH_PER_KWH
    assert figures.gap_kwh_estimate == pytest.approx(estimate, rel=1e-9)
    [daily] = [d for d in figures.daily if d.day == day]
    assert daily.expected_intervals - daily.received_intervals == len(CUT)


def test_the_uncut_file_is_complete(company: Company) -> None:
    report = company.report("tri")
    [completeness] = report.completeness
    assert completeness.gaps == []
    assert completeness.ratio == 1.0
    assert all(p.gap_kwh_estimate == 0 for p in report.power)


# -- voltage ---------------------------------------------------------------------------


def test_voltage_statistics_and_time_outside_the_band(company: Company) -> None:
    column = company.columns["tri"]["M02001171_U2"]
    low, high = 241.0, 243.5  # a band the real voltage leaves now and then
    report = company.report("tri", voltage_band=(low, high))
    [figures] = [v for v in report.voltage if v.channel == "M02001171_U2"]

    values = list(column.values.values())
    outside = [v for v in values if not low <= v <= high]
    assert column.unit == "V"
    assert (figures.min_v, figures.max_v) == (min(values), max(values))
    assert figures.mean_v == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert 0 < len(outside) < len(values)
    assert figures.outside_band_s == len(outside) * 600
    assert {v.channel for v in report.voltage} == {f"M02001171_U{n}" for n in (1, 2, 3)}


def test_phase_imbalance_of_a_three_phase_master(company: Company) -> None:
    phases = [company.columns["tri"][f"M02001171_U{n}"].values for n in (1, 2, 3)]
    deviations = {}
    for moment in phases[0]:
        volts = [phase[moment] for phase in phases]
        mean = sum(volts) / 3
        deviations[moment] = max(abs(v - mean) for v in volts) / mean * 100
    [imbalance] = company.report("tri").imbalance

    assert imbalance.quantity == "voltage"
    assert imbalance.mean_pct == pytest.approx(statistics.fmean(deviations.values()), rel=1e-9)
    assert imbalance.max_pct == pytest.approx(max(deviations.values()), rel=1e-9)
    assert deviations[imbalance.max_at] == pytest.approx(imbalance.max_pct, rel=1e-9)
    assert company.report("big").imbalance == []  # a single-phase master has none


# -- the hourly aggregates' source -----------------------------------------------------


def test_the_1h_bucket_gives_the_same_figures_once_it_holds_every_point(
    company: Company, influxdb: InfluxInstance
) -> None:
    raw = company.report("big", timezone=PARIS)
    settings = config.load(
        influxdb_url=influxdb.url, influxdb_org=influxdb.org, influxdb_admin_token=influxdb.token
    )
    ensure_downsampling(company.client, settings, company.name)
    for _ in backfill(company.client, company.name):
        pass
    aggregated = company.report("big", timezone=PARIS)

    assert "aggregateWindow" in raw.source
    assert f"{company.name}_1h" in aggregated.source
    for before, after in zip(raw.power, aggregated.power, strict=True):
        assert after.energy_kwh == pytest.approx(before.energy_kwh, rel=1e-9)
        assert [d.kwh for d in after.daily] == pytest.approx([d.kwh for d in before.daily])
        assert after.day_kwh == pytest.approx(before.day_kwh, rel=1e-9)
        assert [p.time for p in after.load_curve] == [p.time for p in before.load_curve]
        assert [p.mean_kw for p in after.load_curve] == pytest.approx(
            [p.mean_kw for p in before.load_curve], rel=1e-9
        )
        assert [p.max_kw for p in after.load_curve] == [p.max_kw for p in before.load_curve]


# -- period, errors, outputs -----------------------------------------------------------


def test_a_period_limits_every_figure(company: Company) -> None:
    column = company.columns["big"]["M02001283_Ch1"]
    start = dt.datetime(2025, 11, 10, tzinfo=dt.UTC)
    end = dt.datetime(2025, 11, 17, tzinfo=dt.UTC)
    report = build_report(InfluxFlux(company.client), company.name, "big", start, end)

    inside = [v for t, v in column.values.items() if start <= t < end]
    figures = power_of(report, "M02001283_Ch1")
    assert (report.period.start, report.period.end) == (start, end)
    assert figures.energy_kwh == pytest.approx(sum(inside) * 600 / 3600 / WH_PER_KWH, rel=1e-9)
    assert [d.day for d in figures.daily] == [
        dt.date(2025, 11, 10) + dt.timedelta(n) for n in range(7)
    ]
    assert figures.peak_kw == pytest.approx(max(inside) / WH_PER_KWH)


def test_no_data_and_bad_options_are_clear_errors(company: Company) -> None:
    source = InfluxFlux(company.client)
    with pytest.raises(ReportError, match="no data for campaign 'nothing'"):
        build_report(source, company.name, "nothing")
    with pytest.raises(ReportError, match="time zone"):
        ReportOptions(timezone="Europe/Pariss")
    with pytest.raises(ReportError, match="day hours"):
        ReportOptions(day_hours=(22, 6))


def test_the_csv_tables_read_back_to_the_report(company: Company, tmp_path: Path) -> None:
    report = company.report("gapped", timezone=PARIS)
    write_csv(report, tmp_path / "out")

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{t}.csv" for t in TABLES
    )

    def table(name: str) -> list[dict[str, str]]:
        with (tmp_path / "out" / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    energy = {row["channel"]: row for row in table("energy")}
    assert len(energy) == len(report.power)
    for figures in report.power:
        row = energy[figures.channel]
        assert float(row["energy_kwh"]) == figures.energy_kwh
        assert float(row["peak_kw"]) == figures.peak_kw
        assert dt.datetime.fromisoformat(row["peak_at"]) == figures.peak_at
        assert row["peak_at"].endswith("+02:00")  # Paris summer time
    daily = table("daily_energy")
    assert len(daily) == sum(len(p.daily) for p in report.power)
    [gap] = table("gaps")
    assert int(gap["missing_intervals"]) == len(CUT)
    [completeness] = table("completeness")
    assert int(completeness["expected_intervals"]) - int(completeness["received_intervals"]) == 10
    assert len(table("load_curve")) == sum(len(p.load_curve) for p in report.power)
    assert [row["note"] for row in table("notes")] == report.notes


def test_provenance_lists_the_ledgers_files_of_the_period(tmp_path: Path) -> None:
    def row(name: str, first: str, last: str) -> LedgerRow:
        return LedgerRow(
            company="acme", campaign="c1", device="02001171", device_folder="02001084",
            file_name=name, upload_name=name, sha256=name * 4, size=1000,
            upload_time="2025-08-04T05:00:00Z", ingest_time="2025-08-04T05:01:00Z",
            first_time=first, last_time=last, rows=143, values_read=4433,
            rejected_values=0, rejected_rows=0, points_written=4433, points_expected=4433,
            points_verified=4433, verified_at="2025-08-04T05:01:01Z", status="verified",
        )  # fmt: skip

    state = tmp_path / "state"
    assert ledger_sources(state, "acme", "c1", dt.datetime.min, dt.datetime.max) is None
    state.mkdir(mode=0o700)
    with Ledger.in_state_dir(state) as ledger:
        ledger.record(row("a.tsv", "2025-08-01T00:00:00Z", "2025-08-02T00:00:00Z"))
        ledger.record(row("b.tsv", "2025-08-03T00:00:00Z", "2025-08-04T00:00:00Z"))
    start = dt.datetime(2025, 8, 3, tzinfo=dt.UTC)
    end = dt.datetime(2025, 8, 5, tzinfo=dt.UTC)

    sources = ledger_sources(state, "acme", "c1", start, end)

    assert sources is not None
    assert [s.file_name for s in sources] == ["b.tsv"]
    assert sources[0].sha256 == "b.tsv" * 4
    assert sources[0].points_verified == 4433


def _only_this_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, influxdb: InfluxInstance, **more: str
) -> None:
    """The CLI run from `tmp_path` against the test InfluxDB, with no other PowerView
    setting of the environment, a private state folder, and `more`."""
    for name in list(os.environ):
        if name.startswith(("POWERVIEW_", "INFLUXDB_", "TSV_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    settings = {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
    }
    for key, value in (settings | more).items():
        monkeypatch.setenv(key, value)


def test_the_report_command_writes_csv_and_prints_the_model(
    company: Company,
    influxdb: InfluxInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _only_this_env(monkeypatch, tmp_path, influxdb, POWERVIEW_REPORT_TIMEZONE=PARIS)

    status = cli.run(["report", company.name, "tri", "--format", "csv", "--json"])
    document = json.loads(capsys.readouterr().out)

    assert status == 0
    folder = tmp_path / f"{company.name}-tri-csv"
    assert document["file"] == str(folder.name)
    assert (folder / "energy.csv").is_file()
    assert document["report"]["period"]["timezone"] == PARIS
    assert document["report"]["completeness"][0]["ratio"] == 1.0
    assert any("No ingestion ledger" in note for note in document["report"]["notes"])

    status = cli.run(["report", company.name, "../tri", "--format", "csv"])
    assert status == 2
    assert "campaign name '../tri' is not allowed" in capsys.readouterr().err

    with pytest.raises(ReportError, match=r"no odt writer in this installation \(available: .*csv"):
        run.make_report(
            config.load(), company.name, "tri", start=None, end=None,
            options=ReportOptions(), fmt="odt", out=None,
        )  # fmt: skip


def test_sources_are_the_ledgers_entries_of_the_files_ingested(
    influxdb: InfluxInstance,
    samples: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _only_this_env(
        monkeypatch,
        tmp_path,
        influxdb,
        TSV_META_BUCKET=f"meta_{uuid.uuid4().hex[:10]}",
        TSV_REPORT_DIR=str(tmp_path / "reports"),
    )
    name = f"rep_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "data"
    path = _copy(samples, TRI, root, name, "c1")
    content = path.read_bytes()
    values = sum(len(c.values) for c in read_columns(path).values())
    try:
        assert cli.run(["ingest", str(path), "--data-root", str(root)]) == 0
        capsys.readouterr()
        status = cli.run(["report", name, "c1", "--format", "csv", "--json"])
        document = json.loads(capsys.readouterr().out)
    finally:
        with influxdb.client() as client:
            drop_buckets(client, [name, os.environ["TSV_META_BUCKET"]])

    assert status == 0
    [source] = document["report"]["sources"]
    assert source["file_name"] == path.name
    assert source["sha256"] == hashlib.sha256(content).hexdigest()
    assert source["size"] == len(content)
    assert source["points_written"] == source["points_verified"] == values
    assert source["device"] == "02001171"  # the file's master serial, not its folder's
    with (tmp_path / f"{name}-c1-csv" / "sources.csv").open(newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["sha256"] == source["sha256"]
