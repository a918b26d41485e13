"""The ingest pipeline against the real InfluxDB: every sample file's outcome,
what lands in the bucket (values, tags, timestamps), re-ingestion, and
infrastructure failures that must leave files where they are.

Expected values come from the files themselves (tests/integration/helpers_ingest.py
reads them the naive way) and from ARCHITECTURE.md, plus a few literal spot
checks worked out by hand from the sample files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview import layout, stack
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, ingest_paths
from powerview.report import FileReport, RunReport
from tests.conftest import InfluxInstance
from tests.integration.helpers_ingest import (
    count_points,
    drop_buckets,
    epoch_of,
    expected_points,
    expected_tags,
    new_company,
    read_export,
    stored_points,
    tree_files,
    value_at,
    without_reasons,
)

CAMPAIGN1 = "campaign1/02001084/T302_251012_031720.tsv"
MONO = "v003-mono/02001311/T302_260122_162658_UTC.tsv"
V002_HEADER = "v002-header/02001315/T302_260909_031459_UTC.tsv"
BIG = "big/02001283/T302_02001283_T302_260108_214031.tsv"
TRI = (
    "v003-tri/02000800/T302_260128_162130_UTC.tsv",
    "v003-tri/02000800/T302_260128_171459_UTC.tsv",
    "v003-tri/02000800/T302_260208_211459_UTC.tsv",
)
GOOD = (CAMPAIGN1, MONO, V002_HEADER, BIG, *TRI)
T202 = "campaign/02001283/T202_251022_121951.tsv"
EMPTY = "campaign/02001283/T302_260109_120045.tsv"
HEADERS_ONLY = "campaign/02001283/T302_260109_133915.tsv"


def open_target(influxdb: InfluxInstance, retries: int = 4, token: str | None = None):
    client = make_client(influxdb.url, token or influxdb.token, influxdb.org, 30, retries)
    return InfluxTarget(client, influxdb.org)


def ingest_tree(root: Path, target: InfluxTarget, paths: list[Path] | None = None) -> RunReport:
    try:
        return ingest_paths(layout.find_files(paths or [root]), target, IngestOptions(root))
    finally:
        target.close()


@dataclass
class Ingested:
    root: Path
    acme: str
    faulty: str
    run: RunReport
    client: InfluxDBClient

    def report(self, company: str, relative: str) -> FileReport:
        path = str(self.root / company / relative)
        (found,) = [f for f in self.run.files if f.path == path]
        return found


@pytest.fixture(scope="module")
def ingested(
    influxdb: InfluxInstance, samples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ingested]:
    """The whole sample tree (acme and faulty, each as its own company) ingested once."""
    root = tmp_path_factory.mktemp("samples") / "data"
    acme, faulty = new_company(), new_company()
    shutil.copytree(samples / "acme", root / acme)
    shutil.copytree(samples / "faulty", root / faulty)
    client = influxdb.client()
    try:
        run = ingest_tree(root, open_target(influxdb))
        yield Ingested(root, acme, faulty, run, client)
    finally:
        drop_buckets(client, [acme, faulty])
        client.close()


@pytest.fixture
def company_root(tmp_path: Path, influxdb: InfluxInstance) -> Iterator[tuple[Path, str]]:
    """A data root and a company name of this test's own; its bucket is dropped after."""
    company = new_company()
    yield tmp_path / "data", company
    with influxdb.client() as client:
        drop_buckets(client, [company])


# -- outcomes -------------------------------------------------------------------


def test_every_sample_file_ends_in_the_right_folder(ingested: Ingested, samples: Path) -> None:
    files = without_reasons(tree_files(ingested.root))
    expected = {}
    for company, source, relatives, outcome in (
        (ingested.acme, "acme", GOOD, "parsed"),
        (ingested.faulty, "faulty", (T202,), "parsed"),
        (ingested.faulty, "faulty", (EMPTY, HEADERS_ONLY), "error"),
    ):
        for relative in relatives:
            folder, name = relative.rsplit("/", 1)
            content = (samples / source / relative).read_bytes()
            expected[f"{company}/{folder}/{outcome}/{name}"] = content
    assert files == expected  # nothing left behind, nothing renamed, contents intact
    assert ingested.run.totals()["nb_files_total"] == 10


def test_good_files_report_success_and_bad_ones_their_reason(ingested: Ingested) -> None:
    for relative in GOOD:
        report = ingested.report(ingested.acme, relative)
        assert (report.status, report.error) == ("success", None), relative
        assert report.moved_to == str(
            ingested.root / ingested.acme / relative.replace("/T", "/parsed/T")
        )
    empty = ingested.report(ingested.faulty, EMPTY)
    assert empty.status == "error"
    assert "empty" in (empty.error or "")
    headers_only = ingested.report(ingested.faulty, HEADERS_ONLY)
    assert headers_only.status == "error"
    assert "no valid data rows" in (headers_only.error or "")
    assert headers_only.counts["nb_rows"] == 0
    assert headers_only.counts["nb_points"] == 0


def test_t202_file_rejects_its_clock_reset_row_and_counts_duplicates(
    ingested: Ingested, samples: Path
) -> None:
    export = read_export(samples / "faulty" / T202)
    assert export is not None
    assert len(export.rows) == 21
    report = ingested.report(ingested.faulty, T202)
    assert report.status == "success"
    assert report.partial  # one row set aside
    assert report.format is not None
    assert report.format["model_tag"] == "MV_T202_V002"
    counts = report.counts
    assert counts["nb_rows"] == 21
    assert counts["nb_out_of_window"] == 1  # 01/01/20 01:00:02
    assert counts["nb_valid_rows"] == 20
    # 29/07/25 11:13:46 and 29/07/25 11:19:37 each appear twice in a row.
    assert counts["nb_duplicate_timestamps"] == 2
    assert counts["nb_points"] == 20 * 6
    assert report.time_range == {"first": "2025-07-29T11:13:12Z", "last": "2025-10-22T12:18:00Z"}

    client, bucket = ingested.client, ingested.faulty
    # 20 rows at 18 distinct times: the duplicates overwrite, they do not add points.
    assert count_points(client, bucket) == 18 * 6
    clock_reset = (
        'from(bucket: "%s") |> range(start: 2019-01-01T00:00:00Z, stop: 2021-01-01T00:00:00Z)'
    )
    assert list(client.query_api().query(clock_reset % bucket)) == []
    # At a duplicated time, the later row wins: `0` first, then `231.95`.
    assert value_at(client, bucket, "M02001283_U1_V", epoch_of("29/07/25 11:13:46")) == [231.95]
    assert value_at(client, bucket, "M02001283_U1_V", epoch_of("29/07/25 11:19:37")) == [232.09]


@pytest.mark.parametrize(
    ("company_key", "campaign", "relatives"),
    [
        ("acme", "campaign1", (CAMPAIGN1,)),
        ("acme", "v003-mono", (MONO,)),
        ("acme", "v002-header", (V002_HEADER,)),
        ("acme", "v003-tri", TRI),
        ("faulty", "campaign", (T202,)),
    ],
)
def test_bucket_holds_exactly_the_file_values_and_tags(
    ingested: Ingested, samples: Path, company_key: str, campaign: str, relatives: tuple[str, ...]
) -> None:
    company = getattr(ingested, company_key)
    exports = [read_export(samples / company_key / r) for r in relatives]
    assert all(e is not None for e in exports)
    stored = stored_points(ingested.client, company, campaign)
    assert stored.measurements == {"electrical"}
    assert stored.sub_second == 0
    assert stored.values == expected_points(exports, campaign)  # type: ignore[arg-type]
    assert stored.tags == expected_tags(exports, campaign)  # type: ignore[arg-type]


def test_exact_point_counts(ingested: Ingested) -> None:
    client, acme = ingested.client, ingested.acme
    assert count_points(client, acme, "campaign1") == 143 * 30  # 4,290
    assert count_points(client, acme, "v002-header") == 62 * 24  # 1,488
    # v003-mono: 134 rows, 21/01/26 15:06:56 and 17:40:00 each twice → 132 times x 6.
    assert count_points(client, acme, "v003-mono") == 132 * 6
    for relative, rows, width in ((CAMPAIGN1, 143, 30), (V002_HEADER, 62, 24), (MONO, 134, 6)):
        counts = ingested.report(acme, relative).counts
        assert (counts["nb_rows"], counts["nb_channels"]) == (rows, width)
        assert counts["nb_points"] == rows * width


def test_big_file_point_count(ingested: Ingested, samples: Path) -> None:
    export = read_export(samples / "acme" / BIG)
    assert export is not None
    assert len(export.rows) == 11293  # the last line has no line end and still counts
    distinct = len({epoch for epoch, _ in export.rows})
    assert count_points(ingested.client, ingested.acme, "big") == distinct * 6
    report = ingested.report(ingested.acme, BIG)
    assert report.counts["nb_points"] == 11293 * 6
    assert report.format is not None
    assert report.format["phase"] == "mono"
    # Single-phase header: Ph 1 → U1, then the five `Voie` columns are Ch1..Ch5.
    last = epoch_of("08/01/26 21:30:00")
    assert value_at(ingested.client, ingested.acme, "M02001283_U1_V", last) == [245.42]
    assert value_at(ingested.client, ingested.acme, "M02001283_Ch1_W", last) == [241.48]
    assert value_at(ingested.client, ingested.acme, "M02001283_Ch3_W", last) == [21.7]


def test_spot_checks_campaign1(ingested: Ingested) -> None:
    """Worked out by hand from the first data row `03/08/25 03:20:00` of the file."""
    stored = stored_points(ingested.client, ingested.acme, "campaign1")
    first = epoch_of("03/08/25 03:20:00")
    assert first == 1754191200  # 2025-08-03T03:20:00Z
    assert stored.values[("M02001171_U1_V", first)] == 242.25
    assert stored.values[("M02001171_U3_V", first)] == 242.01
    assert stored.values[("M02001171_Ch1_W", first)] == 31.5  # Voie1 of the master
    assert stored.values[("M02001171_S04000466_Ch1_W", first)] == 163.8
    assert stored.values[("M02001171_S04001344_Ch6_W", first)] == 0.0
    minus_zero = stored.values[("M02001171_S04001344_Ch5_W", first)]  # `-0.0` in the file
    assert isinstance(minus_zero, float)
    assert minus_zero == 0.0
    # The master serial comes from the file (02001171), not the folder (02001084).
    assert stored.tags["M02001171_U1_V"] == {
        "campaign": "campaign1",
        "channel_id": "M02001171_U1",
        "channel_unit": "V",
        "channel_label": "U1",
        "channel_name": "Ph 1",
        "device": "MV2",
        "device_type": "master",
        "device_subtype": "tri",
        "device_master_sn": "02001171",
        "device_sn": "02001171",
    }
    assert stored.tags["M02001171_S04000477_Ch4_W"] == {
        "campaign": "campaign1",
        "channel_id": "M02001171_S04000477_Ch4",
        "channel_unit": "W",
        "channel_label": "Ch4",
        "channel_name": "Voie4",
        "device": "MV2",
        "device_type": "slave",
        "device_master_sn": "02001171",
        "device_sn": "04000477",
    }
    fields = {f for f, _ in stored.values}
    assert len(fields) == 30
    assert not any("02001084" in f for f in fields)
    report = ingested.report(ingested.acme, CAMPAIGN1)
    assert any("02001084" in w and "02001171" in w for w in report.warnings)


def test_spot_checks_mono_and_v002_header(ingested: Ingested) -> None:
    mono = stored_points(ingested.client, ingested.acme, "v003-mono")
    start = epoch_of("21/01/26 08:15:24")
    assert mono.values[("M02001311_U1_V", start)] == 236.14
    assert {f for f, _ in mono.values} == {"M02001311_U1_V"} | {
        f"M02001311_Ch{i}_W" for i in range(1, 6)
    }
    assert mono.tags["M02001311_Ch5_W"]["device_subtype"] == "mono"
    assert mono.tags["M02001311_Ch5_W"]["channel_name"] == "Voie5"

    header = stored_points(ingested.client, ingested.acme, "v002-header")
    first = epoch_of("08/09/26 14:50:00")
    assert header.values[("M02001315_U2_V", first)] == 242.57
    assert header.values[("M02001315_Ch1_W", first)] == 347.3  # D36
    assert header.values[("M02001315_Ch2_W", first)] == 0.0  # -0.0 in the file
    assert header.values[("M02001315_S04001486_Ch1_W", first)] == 16.6  # D39L1
    assert header.tags["M02001315_S04001488_Ch6_W"]["channel_name"] == "D44L3"
    assert "device_subtype" not in header.tags["M02001315_S04001488_Ch6_W"]
    report = ingested.report(ingested.acme, V002_HEADER)
    assert report.format is not None
    assert (report.format["model_tag"], report.format["layout"], report.format["phase"]) == (
        "MV_T302_V002",
        "block",
        "tri",
    )
    assert report.metadata["FileVersion"] == 2


# -- re-ingestion -----------------------------------------------------------------


def test_reingesting_a_file_doubles_nothing(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    samples: Path,
    company_root: tuple[Path, str],
) -> None:
    root, company = company_root
    device = root / company / "campaign1" / "02001084"
    device.mkdir(parents=True)
    source = samples / "acme" / CAMPAIGN1
    shutil.copy(source, device)
    first = ingest_tree(root, open_target(influxdb))
    assert [f.status for f in first.files] == ["success"]
    before = stored_points(influx_client, company)
    assert len(before.values) == 4290
    assert count_points(influx_client, company) == 4290

    shutil.copy(source, device)  # the client uploads the same file again
    second = ingest_tree(root, open_target(influxdb))
    assert [f.status for f in second.files] == ["success"]
    assert second.files[0].nb_points == 4290  # written again ...
    after = stored_points(influx_client, company)
    assert count_points(influx_client, company) == 4290  # ... and overwritten, not added
    assert after == before
    name = source.name
    assert tree_files(device) == {
        f"parsed/{name}": source.read_bytes(),
        f"parsed/{name.removesuffix('.tsv')}.1.tsv": source.read_bytes(),
    }
    assert second.files[0].moved_to == str(device / "parsed" / "T302_251012_031720.1.tsv")


def test_a_move_interrupted_by_a_crash_is_finished_without_rewriting(
    influxdb: InfluxInstance,
    influx_client: InfluxDBClient,
    samples: Path,
    company_root: tuple[Path, str],
) -> None:
    """A kill between the link into parsed/ and the unlink leaves the file in both
    places; the next run drops the device-folder name and makes no `.1` copy."""
    root, company = company_root
    device = root / company / "v003-tri" / "02000800"
    device.mkdir(parents=True)
    path = device / Path(TRI[1]).name
    shutil.copy(samples / "acme" / TRI[1], path)
    (device / "parsed").mkdir()
    os.link(path, device / "parsed" / path.name)

    run = ingest_tree(root, open_target(influxdb))
    (report,) = run.files
    assert report.status == "success"
    assert report.moved_to == str(device / "parsed" / path.name)
    assert tree_files(device) == {f"parsed/{path.name}": (samples / "acme" / TRI[1]).read_bytes()}


# -- infrastructure failures --------------------------------------------------------


def _copy_tri(samples: Path, root: Path, company: str) -> dict[str, bytes]:
    shutil.copytree(samples / "acme" / "v003-tri", root / company / "v003-tri")
    return tree_files(root)


def test_unreachable_influxdb_defers_every_file_and_moves_nothing(
    influxdb: InfluxInstance, samples: Path, company_root: tuple[Path, str]
) -> None:
    root, company = company_root
    before = _copy_tri(samples, root, company)
    port = stack.free_port()  # nothing listens there
    client = make_client(f"http://127.0.0.1:{port}", influxdb.token, influxdb.org, 5, retries=0)
    run = ingest_tree(root, InfluxTarget(client, influxdb.org))
    assert [f.status for f in run.files] == ["deferred"] * 3
    assert all("unreachable" in (f.error or "") for f in run.files)
    assert all(f.moved_to is None for f in run.files)
    assert tree_files(root) == before  # no parsed/, no error/, nothing touched
    assert not any(p.name in ("parsed", "error") for p in root.rglob("*"))
    assert run.totals()["nb_files_deferred"] == 3

    # A later run with InfluxDB back picks every file up.
    again = ingest_tree(root, open_target(influxdb))
    assert [f.status for f in again.files] == ["success"] * 3
    exports = [read_export(samples / "acme" / relative) for relative in TRI]
    with influxdb.client() as query_client:
        stored = stored_points(query_client, company)
    assert stored.values == expected_points(exports, "v003-tri")  # type: ignore[arg-type]


def test_wrong_token_defers_instead_of_rejecting(
    influxdb: InfluxInstance, samples: Path, company_root: tuple[Path, str]
) -> None:
    root, company = company_root
    before = _copy_tri(samples, root, company)
    run = ingest_tree(root, open_target(influxdb, retries=0, token="not-the-token"))
    assert [f.status for f in run.files] == ["deferred"] * 3
    assert "401" in (run.files[0].error or "")
    assert tree_files(root) == before
    with influxdb.client() as client:
        assert client.buckets_api().find_bucket_by_name(company) is None
