"""The campaign dashboard: one per campaign, built in Python, deterministic.

Panels show the campaign's voltages (V), currents (A) and powers (W) per
channel with Flux queries on the `electrical` schema (see schema.py), from the
raw bucket or, for longer time ranges, from its downsampled `_1h`, `_1d` or
`_1w` bucket (chosen in the query from the time range). The
variables `device` and `channel` are filled from the bucket's tag values;
`campaign` is a constant, since a dashboard shows one campaign. The same
inputs always give the same JSON, so a re-run can tell "no change".
"""

from __future__ import annotations

import hashlib
from typing import Any

from powerview.layout import check_name
from powerview.schema import MEASUREMENT

UID_MAX = 40  # Grafana's limit for dashboard and folder uids
SCHEMA_VERSION = 39

UNIT_PANELS = (
    # (unit in the data, panel title, Grafana unit id)
    ("V", "Voltages", "volt"),
    ("A", "Currents", "amp"),
    ("W", "Power", "watt"),
)


def uid_for(kind: str, *names: str) -> str:
    """A readable uid of at most 40 characters, an injective function of (kind, names).

    `pv-<kind>-` then the names joined by `-`, every name but the last preceded
    by its length (`pv-dash-1-a-b-c` is ("a", "b-c"), `pv-dash-3-a-b-c` is
    ("a-b", "c")): names may contain `-` and Grafana uids allow no other
    separator, so the lengths are what keeps two pairs apart. A kind takes a
    fixed number of names, so the last one is the rest. Longer than 39
    characters, the uid is its first 23 characters and a SHA-256 prefix of the
    whole, exactly 40 long: a long uid never equals a short one.
    """
    if not kind.isalpha():
        raise ValueError(f"uid kind {kind!r} must be letters only")
    *heads, last = names
    full = "-".join(["pv", kind, *(f"{len(name)}-{name}" for name in heads), last])
    if len(full) < UID_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:16]
    return f"{full[: UID_MAX - 17]}-{digest}"


def dashboard_uid(company: str, campaign: str) -> str:
    return uid_for("dash", check_name("company", company), check_name("campaign", campaign))


def flat_uid(*parts: str) -> str:
    """PowerView's first uid rule, `pv-<parts joined by ->`, kept where it is unambiguous.

    Folder and datasource uids (`pv-folder-<company>`, `pv-ds-<company>`) have
    one free name, so they keep this rule and existing folders stay where they
    are; they never equal a `pv-dash-` uid. For (company, campaign) the rule
    was not injective (`a`/`b-c` and `a-b`/`c` shared a uid): provisioning uses
    it only to find a campaign's dashboard made before `uid_for`.
    """
    joined = "-".join(parts)
    uid = f"pv-{joined}"
    if len(uid) <= UID_MAX:
        return uid
    digest = hashlib.sha256(joined.encode()).hexdigest()[:10]
    return f"pv-{joined[: UID_MAX - 3 - 11]}-{digest}"


def legacy_dashboard_uid(company: str, campaign: str) -> str:
    return flat_uid(check_name("company", company), check_name("campaign", campaign))


# The bucket a panel reads, by the length of its time range: raw points up to
# 3 days (432 points per series), hourly means up to 31 days (744), daily up to
# 400 days (400), weekly beyond. Each level's `mean` field (provision/downsample.py).
BUCKET_BY_SPAN = (("3d", ""), ("31d", "_1h"), ("400d", "_1d"))
COARSEST_SUFFIX = "_1w"


def _bucket_choice() -> list[str]:
    """Flux picking the bucket suffix from Grafana's time range at query time."""
    choice = f'"{COARSEST_SUFFIX}"'
    for span, suffix in reversed(BUCKET_BY_SPAN):
        choice = f'if span <= int(v: {span}) then "{suffix}" else {choice}'
    return [
        "span = int(v: v.timeRangeStop) - int(v: v.timeRangeStart)",
        f"level = {choice}",
        # A regex, not `level == "" or ...`: InfluxDB pushes `r._field =~ fields` down
        # to storage, not a predicate on another variable (a year of raw points:
        # 0.5 s vs 12 s, bench/README.md).
        'fields = if level == "" then /.*/ else /^mean$/',
    ]


def flux_for_unit(bucket: str, unit: str) -> str:
    """The Flux of one panel; `${...}` are Grafana variables, `v.*` Grafana's time range
    (which Grafana's Flux mode substitutes as times before sending the query)."""
    return "\n".join(
        [
            *_bucket_choice(),
            f'from(bucket: "{bucket}" + level)',
            "  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)",
            f'  |> filter(fn: (r) => r._measurement == "{MEASUREMENT}"'
            ' and r.campaign == "${campaign}")',
            "  |> filter(fn: (r) => r._field =~ fields)",
            f'  |> filter(fn: (r) => r.channel_unit == "{unit}")',
            "  |> filter(fn: (r) => r.device_master_sn =~ /^${device:regex}$/)",
            "  |> filter(fn: (r) => r.channel_id =~ /^${channel:regex}$/)",
            "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
            '  |> keep(columns: ["_time", "_value", "channel_id"])',
            '  |> rename(columns: {_value: "value"})',
            '  |> group(columns: ["channel_id"])',
        ]
    )


def _tag_values_flux(bucket: str, tag: str, extra: str = "") -> str:
    predicate = f'r._measurement == "{MEASUREMENT}" and r.campaign == "${{campaign}}"{extra}'
    return (
        'import "influxdata/influxdb/schema"\n'
        f'schema.tagValues(bucket: "{bucket}", tag: "{tag}", '
        f"predicate: (r) => {predicate}, start: -10y)"
    )


def device_variable_flux(bucket: str) -> str:
    return _tag_values_flux(bucket, "device_master_sn")


def channel_variable_flux(bucket: str) -> str:
    return _tag_values_flux(bucket, "channel_id", " and r.device_master_sn =~ /^${device:regex}$/")


def build_dashboard(
    company: str, campaign: str, datasource_uid: str, datasource_type: str
) -> dict[str, Any]:
    """The dashboard JSON (without `id` and `version`, which Grafana owns)."""
    bucket = check_name("company", company)
    check_name("campaign", campaign)
    datasource = {"type": datasource_type, "uid": datasource_uid}
    panels = []
    for index, (unit, title, grafana_unit) in enumerate(UNIT_PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": f"{title} ({unit})",
                "datasource": datasource,
                "gridPos": {"h": 9, "w": 24, "x": 0, "y": index * 9},
                "fieldConfig": {
                    "defaults": {"unit": grafana_unit, "custom": {"lineWidth": 1}},
                    "overrides": [],
                },
                "options": {
                    "legend": {
                        "displayMode": "table",
                        "placement": "right",
                        "calcs": ["mean", "max"],
                    },
                    "tooltip": {"mode": "multi"},
                },
                "targets": [
                    {"refId": "A", "datasource": datasource, "query": flux_for_unit(bucket, unit)}
                ],
            }
        )
    return {
        "uid": dashboard_uid(company, campaign),
        "title": campaign,
        "tags": ["powerview", f"company:{company}", f"campaign:{campaign}"],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "editable": False,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "5m",
        "templating": {
            "list": [
                {
                    "name": "campaign",
                    "type": "constant",
                    "label": "Campaign",
                    "query": campaign,
                    "hide": 2,
                },
                _query_variable("device", "Device", datasource, device_variable_flux(bucket)),
                _query_variable("channel", "Channel", datasource, channel_variable_flux(bucket)),
            ]
        },
        "panels": panels,
    }


def _query_variable(name: str, label: str, datasource: dict[str, str], flux: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": datasource,
        "query": flux,
        "definition": flux,
        "refresh": 2,  # on time range change
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }
