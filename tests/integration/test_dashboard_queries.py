"""Every campaign-dashboard query, substituted as Grafana would, returns the campaign's
series from a real InfluxDB holding an ingested campaign."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview.influx import InfluxTarget
from powerview.ingest import IngestOptions, ingest_file
from powerview.provision.dashboard import build_dashboard

CAMPAIGN = "campaign1"
# Grafana gives Flux its time range and interval as the record `v`.
V_RECORD = "v = {timeRangeStart: 2020-01-01T00:00:00Z, timeRangeStop: now(), windowPeriod: 10m}\n"
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
def company(influx_client: InfluxDBClient, samples: Path, tmp_path: Path) -> Iterator[str]:
    name = f"co_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "data"
    device = root / name / CAMPAIGN / "02001084"
    device.mkdir(parents=True)
    shutil.copy(samples / "acme/campaign1/02001084/T302_251012_031720.tsv", device)
    other = root / name / CAMPAIGN / "02007777"
    other.mkdir(parents=True)
    (other / "T302_260301_101000.tsv").write_text(CURRENT_FILE)
    target = InfluxTarget(influx_client, influx_client.org)
    options = IngestOptions(data_root=root)
    for path in sorted(root.rglob("*.tsv")):
        assert ingest_file(path, target, options).status == "success"
    yield name
    api = influx_client.buckets_api()
    api.delete_bucket(api.find_bucket_by_name(name))


def run(client: InfluxDBClient, flux: str) -> list[dict[str, object]]:
    # Grafana passes `v` as an extern, which Flux sees after the imports.
    lines = flux.splitlines(keepends=True)
    imports = [line for line in lines if line.startswith("import ")]
    body = [line for line in lines if not line.startswith("import ")]
    tables = client.query_api().query("".join(imports) + V_RECORD + "".join(body))
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
