"""Every campaign-dashboard query, substituted as Grafana would, returns the campaign's
series from a real InfluxDB holding an ingested and downsampled campaign, at every
time range (each range reads its own bucket: raw, 1h, 1d or 1w)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview import settings as config
from powerview.influx import InfluxTarget
from powerview.ingest import IngestOptions, ingest_file
from powerview.provision.dashboard import build_dashboard
from powerview.provision.downsample import backfill, bucket_names, ensure_downsampling
from tests.conftest import InfluxInstance
from tests.integration.helpers_ingest import drop_buckets, read_export
from tests.integration.test_downsample import window_of

CAMPAIGN = "campaign1"
# Grafana gives Flux its time range and interval as the record `v`.
V_RECORD = "v = {timeRangeStart: 2020-01-01T00:00:00Z, timeRangeStop: now(), windowPeriod: 10m}\n"
SAMPLE = "acme/campaign1/02001084/T302_251012_031720.tsv"  # 2025-08-03 03:20 to 08-04 03:00
CURRENT_FILE = (
    "02007777\t02007777\t02007777\t02007777\n"
    "MV_T302_V002\tPh 1 V\tI1 A\tVoie1 W\n"
    "01/03/26 10:00:00\t230.1\t4.5\t1035.0\n"
    "01/03/26 10:10:00\t231.2\t4.7\t1080.5\n"
)


def substitute(query: str, variables: dict[str, list[str] | str]) -> str:
    """Grafana's interpolation: `${name}` as text, `${name:regex}` as an escaped alternation."""

    def regex(match: re.Match[str]) -> str:
        value = variables[match[1]]
        if value == "$__all":
            return ".*"
        values = [value] if isinstance(value, str) else value
        return "(" + "|".join(re.escape(v) for v in values) + ")"

    query = re.sub(r"\$\{(\w+):regex\}", regex, query)
    return re.sub(r"\$\{(\w+)\}", lambda m: str(variables[m[1]]), query)


@pytest.fixture
def company(
    influxdb: InfluxInstance, influx_client: InfluxDBClient, samples: Path, tmp_path: Path
) -> Iterator[str]:
    name = f"co_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "data"
    device = root / name / CAMPAIGN / "02001084"
    device.mkdir(parents=True)
    shutil.copy(samples / SAMPLE, device)
    other = root / name / CAMPAIGN / "02007777"
    other.mkdir(parents=True)
    (other / "T302_260301_101000.tsv").write_text(CURRENT_FILE)
    target = InfluxTarget(influx_client, influx_client.org)
    options = IngestOptions(data_root=root)
    for path in sorted(root.rglob("*.tsv")):
        assert ingest_file(path, target, options).status == "success"
    settings = config.load(
        influxdb_url=influxdb.url, influxdb_org=influxdb.org, influxdb_admin_token=influxdb.token
    )
    ensure_downsampling(influx_client, settings, name)
    assert list(backfill(influx_client, name))
    yield name
    drop_buckets(influx_client, bucket_names(name))
    api = influx_client.tasks_api()
    for task in api.find_tasks():
        if task.name.startswith(f"powerview_downsample_{name}_"):
            api.delete_task(str(task.id))


def run(client: InfluxDBClient, flux: str, v_record: str = V_RECORD) -> list[dict[str, object]]:
    # Grafana passes `v` as an extern, which Flux sees after the imports.
    lines = flux.splitlines(keepends=True)
    imports = [line for line in lines if line.startswith("import ")]
    body = [line for line in lines if not line.startswith("import ")]
    tables = client.query_api().query("".join(imports) + v_record + "".join(body))
    return [record.values for table in tables for record in table.records]


def test_variable_queries_list_the_campaigns_devices_and_channels(
    influx_client: InfluxDBClient, company: str
) -> None:
    dashboard = build_dashboard(company, CAMPAIGN, "ds-uid", "influxdb-adecwatts-datasource")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["campaign"]["query"] == CAMPAIGN

    devices = run(influx_client, substitute(variables["device"]["query"], {"campaign": CAMPAIGN}))
    assert sorted(r["_value"] for r in devices) == ["02001171", "02007777"]

    channels = run(
        influx_client,
        substitute(variables["channel"]["query"], {"campaign": CAMPAIGN, "device": ["02007777"]}),
    )
    assert sorted(r["_value"] for r in channels) == [
        "M02007777_Ch1",
        "M02007777_Ch2",
        "M02007777_U1",
    ]


@pytest.mark.parametrize(
    ("unit", "selection", "expected"),
    [
        # 3-phase master of acme/campaign1 + the single-phase test device.
        ("V", "$__all", {"M02001171_U1", "M02001171_U2", "M02001171_U3", "M02007777_U1"}),
        ("A", "$__all", {"M02007777_Ch1"}),
        ("W", ["02007777"], {"M02007777_Ch2"}),
    ],
)
def test_each_panel_returns_the_campaigns_series_for_its_unit(
    influx_client: InfluxDBClient,
    company: str,
    unit: str,
    selection: list[str] | str,
    expected: set[str],
) -> None:
    dashboard = build_dashboard(company, CAMPAIGN, "ds-uid", "influxdb-adecwatts-datasource")
    panel = next(p for p in dashboard["panels"] if p["title"].endswith(f"({unit})"))
    query = panel["targets"][0]["query"]
    rows = run(
        influx_client,
        substitute(query, {"campaign": CAMPAIGN, "device": selection, "channel": "$__all"}),
    )
    assert {r["channel_id"] for r in rows} == expected
    assert all(isinstance(r["value"], float) for r in rows)


def test_all_power_channels_of_the_sample_campaign_are_shown(
    influx_client: InfluxDBClient, company: str
) -> None:
    dashboard = build_dashboard(company, CAMPAIGN, "ds-uid", "influxdb-adecwatts-datasource")
    panel = next(p for p in dashboard["panels"] if p["title"].endswith("(W)"))
    rows = run(
        influx_client,
        substitute(
            panel["targets"][0]["query"],
            {"campaign": CAMPAIGN, "device": ["02001171"], "channel": "$__all"},
        ),
    )
    # 3 master channels + 4 slaves x 6 channels, all in watts.
    channel_ids = {r["channel_id"] for r in rows}
    assert len(channel_ids) == 27
    assert "M02001171_S04001344_Ch6" in channel_ids


def test_a_campaign_filter_keeps_other_campaigns_out(
    influx_client: InfluxDBClient, company: str
) -> None:
    dashboard = build_dashboard(company, "other", "ds-uid", "influxdb-adecwatts-datasource")
    panel = dashboard["panels"][0]
    rows = run(
        influx_client,
        substitute(
            panel["targets"][0]["query"],
            {"campaign": "other", "device": "$__all", "channel": "$__all"},
        ),
    )
    assert rows == []


@pytest.mark.parametrize(
    ("stop", "span", "level"),
    [
        (dt.datetime(2025, 8, 3, 12, tzinfo=dt.UTC), dt.timedelta(hours=6), ""),
        (dt.datetime(2025, 8, 6, tzinfo=dt.UTC), dt.timedelta(days=7), "_1h"),
        (dt.datetime(2025, 9, 1, tzinfo=dt.UTC), dt.timedelta(days=90), "_1d"),
        (dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.timedelta(days=730), "_1w"),
    ],
    ids=["6h", "7d", "90d", "2y"],
)
def test_every_time_range_returns_one_point_per_window_of_its_level(
    influx_client: InfluxDBClient,
    company: str,
    samples: Path,
    stop: dt.datetime,
    span: dt.timedelta,
    level: str,
) -> None:
    start = stop - span
    v_record = (
        f"v = {{timeRangeStart: {start:%Y-%m-%dT%H:%M:%SZ}, "
        f"timeRangeStop: {stop:%Y-%m-%dT%H:%M:%SZ}, windowPeriod: 10m}}\n"
    )
    dashboard = build_dashboard(company, CAMPAIGN, "ds-uid", "influxdb-adecwatts-datasource")
    panel = next(p for p in dashboard["panels"] if p["title"].endswith("(W)"))
    query = substitute(
        panel["targets"][0]["query"],
        {"campaign": CAMPAIGN, "device": ["02001171"], "channel": "$__all"},
    )
    rows = run(influx_client, query, v_record)

    # Independently: the windows of this level holding rows of the file in the range.
    export = read_export(samples / SAMPLE)
    assert export is not None
    begin, end = start.timestamp(), stop.timestamp()
    epochs = [epoch for epoch, _ in export.valid_rows() if begin <= epoch < end]
    windows = {window_of(level, e) for e in epochs} if level else set(epochs)
    if level:  # a window is shown when its start is in the range
        windows = {w for w in windows if begin <= w < end}
    assert windows
    # aggregateWindow(every: 10m) stamps each level point at its window start + 10 min.
    shown = {dt.datetime.fromtimestamp(w + 600, dt.UTC) for w in windows}
    times: dict[object, set[dt.datetime]] = {}
    for row in rows:
        times.setdefault(row["channel_id"], set()).add(row["_time"])
    assert len(times) == 27  # every power channel of the device
    assert all(found == shown for found in times.values())
    assert len(rows) == 27 * len(windows)
