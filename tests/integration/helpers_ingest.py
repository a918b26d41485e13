"""Helpers for the ingestion tests: an independent reading of device exports and
queries of what landed in InfluxDB.

The reader here is deliberately naive (split on tabs, `strptime`, `float`) and
written from ARCHITECTURE.md sections 4 and 5, not from `powerview.formats`, so
that the expected values of the tests do not come from the code under test.
It only understands what the samples and tests/factories.py produce: UTC times,
well-formed rows.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from influxdb_client import InfluxDBClient

EARLIEST_DEFAULT = calendar.timegm((2021, 1, 1, 0, 0, 0))  # ARCHITECTURE: clock resets → 2020
MEASUREMENT = "electrical"
_RECORD_COLUMNS = {"result", "table"}


def new_company() -> str:
    """A company (bucket) name of its own for one test."""
    return f"co_{uuid.uuid4().hex[:10]}"


def epoch_of(stamp: str) -> int:
    """`DD/MM/YY HH:MM:SS` (UTC) → seconds since 1970."""
    moment = dt.datetime.strptime(stamp, "%d/%m/%y %H:%M:%S")
    return calendar.timegm(moment.timetuple())


def iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Channel:
    """Where one column of a file should land, per ARCHITECTURE.md section 5."""

    index: int  # 0-based position among the value columns
    channel_id: str
    field: str
    tags: dict[str, str]


@dataclass
class Export:
    """A device file read the simple way."""

    path: Path
    layout: str  # plain | block
    metadata: dict[str, object]
    serials: list[str]  # one per value column
    labels: list[str]  # one per value column
    master_sn: str
    model_tag: str
    rows: list[tuple[int, list[str]]] = field(default_factory=list)  # every data row

    @property
    def width(self) -> int:
        return len(self.labels)

    @property
    def phase(self) -> str:
        master_type = str(self.metadata.get("MasterType", "")).lower()
        if master_type in ("mono", "tri"):
            return master_type
        names = {
            label.rsplit(" ", 1)[0]
            for serial, label in zip(self.serials, self.labels, strict=True)
            if serial == self.master_sn
        }
        return "tri" if {"Ph 1", "Ph 2", "Ph 3"} <= names else "mono"

    def valid_rows(self, earliest: int = EARLIEST_DEFAULT) -> list[tuple[int, list[str]]]:
        return [(epoch, values) for epoch, values in self.rows if epoch >= earliest]

    def channels(self, campaign: str) -> list[Channel]:
        voltages = 3 if self.phase == "tri" else 1
        master_count = 0
        slave_counts: dict[str, int] = {}
        result = []
        for index, (serial, label) in enumerate(zip(self.serials, self.labels, strict=True)):
            name, unit = label.rsplit(" ", 1)
            tags = {"campaign": campaign, "device": "MV2", "device_master_sn": self.master_sn}
            if serial == self.master_sn:
                master_count += 1
                short = (
                    f"U{master_count}"
                    if master_count <= voltages
                    else f"Ch{master_count - voltages}"
                )
                channel_id = f"M{self.master_sn}_{short}"
                tags |= {"device_type": "master", "device_subtype": self.phase}
            else:
                slave_counts[serial] = slave_counts.get(serial, 0) + 1
                short = f"Ch{slave_counts[serial]}"
                channel_id = f"M{self.master_sn}_S{serial}_{short}"
                tags["device_type"] = "slave"
            tags |= {
                "channel_id": channel_id,
                "channel_unit": unit,
                "channel_label": short,
                "channel_name": name,
                "device_sn": serial,
            }
            result.append(Channel(index, channel_id, f"{channel_id}_{unit}", tags))
        return result

    def column(self, index: int, earliest: int = EARLIEST_DEFAULT) -> list[float]:
        return [float(values[index]) for _, values in self.valid_rows(earliest)]


def read_export(path: Path) -> Export | None:
    """The file's header and rows, or None for a file without both header lines."""
    lines = path.read_text(encoding="utf-8").splitlines()
    metadata: dict[str, object] = {}
    layout = "plain"
    if lines and lines[0] == "START_HEADER":
        layout = "block"
        end = lines.index("END_HEADER")
        metadata = json.loads("\n".join(lines[1:end]))
        assert lines[end + 1] == "START_DATA"
        assert metadata.get("DataTimeSettings", "UTC") == "UTC", "this reader knows UTC only"
        body = lines[end + 2 : lines.index("END_DATA")]
    else:
        body = lines
    if len(body) < 2:
        return None
    serials = body[0].split("\t")
    labels = body[1].split("\t")
    export = Export(
        path=path,
        layout=layout,
        metadata=metadata,
        serials=serials[1:],
        labels=labels[1:],
        master_sn=serials[0],
        model_tag=labels[0],
    )
    for line in body[2:]:
        stamp, *values = line.split("\t")
        assert len(values) == export.width, f"{path}: unexpected row {line!r}"
        export.rows.append((epoch_of(stamp), values))
    return export


def expected_points(
    exports: Iterable[Export], campaign: str, earliest: int = EARLIEST_DEFAULT
) -> dict[tuple[str, int], float]:
    """{(field, epoch): value} as InfluxDB must hold it: a later row at the same
    time overwrites an earlier one (same series, same timestamp)."""
    points: dict[tuple[str, int], float] = {}
    for export in exports:
        channels = export.channels(campaign)
        for epoch, values in export.valid_rows(earliest):
            for channel in channels:
                points[(channel.field, epoch)] = float(values[channel.index])
    return points


def expected_tags(exports: Iterable[Export], campaign: str) -> dict[str, dict[str, str]]:
    """{field: tags} for every channel of `exports`."""
    return {c.field: c.tags for e in exports for c in e.channels(campaign)}


# -- InfluxDB -------------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What a bucket holds: values by (field, epoch), tags by field."""

    values: dict[tuple[str, int], float]
    tags: dict[str, dict[str, str]]
    measurements: set[str]
    sub_second: int  # points whose time is not a whole second


def flux_filter(campaign: str | None) -> str:
    text = f'|> filter(fn: (r) => r._measurement == "{MEASUREMENT}")'
    if campaign is not None:
        text += f' |> filter(fn: (r) => r.campaign == "{campaign}")'
    return text


def stored_points(client: InfluxDBClient, bucket: str, campaign: str | None = None) -> Stored:
    """Every point of `bucket` (optionally one campaign), read back with Flux."""
    query = f'from(bucket: "{bucket}") |> range(start: 0) {flux_filter(campaign)}'
    values: dict[tuple[str, int], float] = {}
    tags: dict[str, dict[str, str]] = {}
    measurements: set[str] = set()
    sub_second = 0
    for table in client.query_api().query(query):
        for record in table.records:
            when = record.get_time()
            if when.microsecond:
                sub_second += 1
            key = (record.get_field(), calendar.timegm(when.utctimetuple()))
            assert key not in values, f"two points for {key}"
            values[key] = record.get_value()
            measurements.add(record.get_measurement())
            tags[record.get_field()] = {
                k: v
                for k, v in record.values.items()
                if not k.startswith("_") and k not in _RECORD_COLUMNS
            }
    return Stored(values, tags, measurements, sub_second)


def count_points(client: InfluxDBClient, bucket: str, campaign: str | None = None) -> int:
    """How many points `bucket` holds (optionally in one campaign), counted by the server."""
    query = (
        f'from(bucket: "{bucket}") |> range(start: 0) {flux_filter(campaign)} |> group() |> count()'
    )
    tables = client.query_api().query(query)
    return sum(record.get_value() for table in tables for record in table.records)


def value_at(client: InfluxDBClient, bucket: str, field_name: str, epoch: int) -> list[float]:
    """The values of `field_name` stored at exactly `epoch` (normally one)."""
    query = (
        f'from(bucket: "{bucket}") |> range(start: {epoch}, stop: {epoch + 1}) '
        f'|> filter(fn: (r) => r._field == "{field_name}")'
    )
    return [r.get_value() for t in client.query_api().query(query) for r in t.records]


def drop_buckets(client: InfluxDBClient, names: Iterable[str]) -> None:
    """Delete the buckets that exist among `names`."""
    api = client.buckets_api()
    for name in names:
        found = api.find_bucket_by_name(name)
        if found is not None:
            api.delete_bucket(found)


def bucket_exists(client: InfluxDBClient, name: str) -> bool:
    return client.buckets_api().find_bucket_by_name(name) is not None


# -- data trees -----------------------------------------------------------------


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` by its relative path, with its content."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def without_reasons(files: dict[str, bytes], every_one: bool = True) -> dict[str, bytes]:
    """`files` (of `tree_files`) without the reason files beside rejected ones.

    Each reason file must sit beside a rejected file; with `every_one`, each
    rejected file must have one (a run killed between the two may leave none).
    """
    reasons = {p for p in files if p.endswith(".reason.txt")}
    rejected = {p for p in files if "/error/" in p and p not in reasons}
    expected = {f"{p}.reason.txt" for p in rejected}
    assert reasons == expected if every_one else reasons <= expected, sorted(reasons ^ expected)
    return {p: c for p, c in files.items() if p not in reasons}


def outcome_path(relative: str, outcome: str) -> str:
    """`co/camp/sn/x.tsv` → `co/camp/sn/<outcome>/x.tsv`."""
    folder, _, name = relative.rpartition("/")
    return f"{folder}/{outcome}/{name}"
