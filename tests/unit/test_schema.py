"""Columns → InfluxDB series, as ARCHITECTURE.md section 5 lays them out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from powerview.exceptions import FormatError
from powerview.formats import (
    FORMATS,
    Channel,
    Column,
    Head,
    Header,
    LineSource,
    ParseCounts,
    ParseOptions,
    RowBatch,
    format_for_tag,
    open_device_file,
    registry,
)
from powerview.formats.block import is_block_start, read_header_lines
from powerview.lineprotocol import BatchEncoder
from powerview.schema import MEASUREMENT, series_for

MASTER = "02001171"
SLAVE_A = "04000466"
SLAVE_B = "04000477"
TAG_KEYS_MASTER = {
    "campaign",
    "channel_id",
    "channel_unit",
    "channel_label",
    "channel_name",
    "device",
    "device_type",
    "device_subtype",
    "device_master_sn",
    "device_sn",
}
TAG_KEYS_SLAVE = TAG_KEYS_MASTER - {"device_subtype"}


def make_header(columns: list[tuple[str, str]], phase: str, master: str = MASTER) -> Header:
    """`columns`: (serial, label) pairs in file order."""
    cols = []
    for index, (serial, label) in enumerate(columns, start=1):
        name, _, unit = label.rpartition(" ")
        cols.append(Column(index=index, serial=serial, name=name, unit=unit))
    return Header(
        model_tag="MV_T302_V002",
        layout="plain",
        master_sn=master,
        phase=phase,  # type: ignore[arg-type]
        columns=tuple(cols),
    )


def test_constants() -> None:
    assert MEASUREMENT == "electrical"
    assert FORMATS["mv"].device == "MV2"


def test_three_phase_master_then_slaves() -> None:
    header = make_header(
        [
            (MASTER, "Ph 1 V"),
            (MASTER, "Ph 2 V"),
            (MASTER, "Ph 3 V"),
            (MASTER, "Voie1 W"),
            (MASTER, "Voie2 W"),
            (SLAVE_A, "Voie1 W"),
            (SLAVE_A, "Voie2 W"),
            (SLAVE_B, "Voie1 W"),
        ],
        phase="tri",
    )
    series = series_for(header, "c1")
    assert [s.label for s in series] == ["U1", "U2", "U3", "Ch1", "Ch2", "Ch1", "Ch2", "Ch1"]
    assert [s.channel_id for s in series] == [
        "M02001171_U1",
        "M02001171_U2",
        "M02001171_U3",
        "M02001171_Ch1",
        "M02001171_Ch2",
        "M02001171_S04000466_Ch1",
        "M02001171_S04000466_Ch2",
        "M02001171_S04000477_Ch1",
    ]
    assert [s.field for s in series] == [
        "M02001171_U1_V",
        "M02001171_U2_V",
        "M02001171_U3_V",
        "M02001171_Ch1_W",
        "M02001171_Ch2_W",
        "M02001171_S04000466_Ch1_W",
        "M02001171_S04000466_Ch2_W",
        "M02001171_S04000477_Ch1_W",
    ]
    assert [s.column for s in series] == list(header.columns)


def test_single_phase_master() -> None:
    header = make_header(
        [(MASTER, "Ph 1 V"), (MASTER, "Voie1 W"), (MASTER, "Voie2 W"), (SLAVE_A, "Voie1 W")],
        phase="mono",
    )
    series = series_for(header, "c1")
    assert [s.channel_id for s in series] == [
        "M02001171_U1",
        "M02001171_Ch1",
        "M02001171_Ch2",
        "M02001171_S04000466_Ch1",
    ]


def test_phase_not_labels_decides_the_voltage_count() -> None:
    # A Tri MasterType over a mono-looking header: the first three master columns
    # are U1..U3 whatever their names (the format module already chose the phase).
    header = make_header(
        [(MASTER, "Ph 1 V"), (MASTER, "Voie1 W"), (MASTER, "Voie2 W"), (MASTER, "Voie3 W")],
        phase="tri",
    )
    assert [s.label for s in series_for(header, "c1")] == ["U1", "U2", "U3", "Ch1"]


def test_slave_channels_are_counted_per_slave_even_interleaved() -> None:
    header = make_header(
        [
            (MASTER, "Ph 1 V"),
            (SLAVE_A, "Voie1 W"),
            (SLAVE_B, "Voie1 W"),
            (SLAVE_A, "Voie2 W"),
            (MASTER, "Voie1 W"),
            (SLAVE_B, "Voie2 W"),
        ],
        phase="mono",
    )
    assert [s.channel_id for s in series_for(header, "c1")] == [
        "M02001171_U1",
        "M02001171_S04000466_Ch1",
        "M02001171_S04000477_Ch1",
        "M02001171_S04000466_Ch2",
        "M02001171_Ch1",
        "M02001171_S04000477_Ch2",
    ]


def test_exact_tags_of_a_master_and_a_slave_column() -> None:
    header = make_header([(MASTER, "Ph 1 V"), (SLAVE_A, "Voie1 W")], phase="mono")
    master, slave = series_for(header, "campaign-7")
    assert master.tags == {
        "campaign": "campaign-7",
        "channel_id": "M02001171_U1",
        "channel_unit": "V",
        "channel_label": "U1",
        "channel_name": "Ph 1",
        "device": "MV2",
        "device_type": "master",
        "device_subtype": "mono",
        "device_master_sn": MASTER,
        "device_sn": MASTER,
    }
    assert slave.tags == {
        "campaign": "campaign-7",
        "channel_id": "M02001171_S04000466_Ch1",
        "channel_unit": "W",
        "channel_label": "Ch1",
        "channel_name": "Voie1",
        "device": "MV2",
        "device_type": "slave",
        "device_master_sn": MASTER,
        "device_sn": SLAVE_A,
    }


def test_tags_do_not_depend_on_the_file() -> None:
    # No file name tag: two files of the same device give the very same series.
    one = make_header([(MASTER, "Ph 1 V"), (SLAVE_A, "Voie1 W")], phase="mono")
    two = Header(
        model_tag="MV_T302_V003",
        layout="block",
        master_sn=MASTER,
        phase="mono",
        columns=one.columns,
        metadata={"FileVersion": 3},
    )
    assert [s.tags for s in series_for(one, "c1")] == [s.tags for s in series_for(two, "c1")]


def test_campaign1_sample(samples: Path) -> None:
    """The real three-phase master 02001171 with four six-channel slaves."""
    path = samples / "acme/campaign1/02001084/T302_251012_031720.tsv"
    with open_device_file(path, ParseOptions()) as device_file:
        header = device_file.header
    series = series_for(header, "campaign1")
    assert len(series) == 30
    slaves = ["04000466", "04000477", "04001293", "04001344"]
    expected_ids = [f"M02001171_{label}" for label in ("U1", "U2", "U3", "Ch1", "Ch2", "Ch3")]
    for slave in slaves:
        expected_ids += [f"M02001171_S{slave}_Ch{i}" for i in range(1, 7)]
    assert [s.channel_id for s in series] == expected_ids
    units = ["V"] * 3 + ["W"] * 27
    assert [s.field for s in series] == [
        f"{i}_{u}" for i, u in zip(expected_ids, units, strict=True)
    ]
    names = ["Ph 1", "Ph 2", "Ph 3", "Voie1", "Voie2", "Voie3"] + [
        f"Voie{i}" for i in range(1, 7)
    ] * 4
    assert [s.tags["channel_name"] for s in series] == names
    for s in series:
        # The master's serial from line 1, not the folder name 02001084.
        assert s.tags["device_master_sn"] == "02001171"
        assert s.tags["campaign"] == "campaign1"
        assert s.tags["device"] == "MV2"
        assert s.tags["channel_id"] == s.channel_id
        assert s.tags["channel_label"] == s.label
        assert s.tags["channel_unit"] == s.column.unit
    masters, rest = series[:6], series[6:]
    for s in masters:
        assert set(s.tags) == TAG_KEYS_MASTER
        assert (s.tags["device_type"], s.tags["device_subtype"]) == ("master", "tri")
        assert s.tags["device_sn"] == "02001171"
    for s in rest:
        assert set(s.tags) == TAG_KEYS_SLAVE
        assert s.tags["device_type"] == "slave"
    assert [s.tags["device_sn"] for s in rest] == [slave for slave in slaves for _ in range(6)]


def test_v003_mono_sample(samples: Path) -> None:
    path = samples / "acme/v003-mono/02001311/T302_260122_162658_UTC.tsv"
    with open_device_file(path, ParseOptions()) as device_file:
        series = series_for(device_file.header, "c1")
    assert [s.label for s in series] == ["U1", "Ch1", "Ch2", "Ch3", "Ch4", "Ch5"]
    for s in series:
        assert set(s.tags) == TAG_KEYS_MASTER  # nothing about the file itself
        assert s.tags["device_subtype"] == "mono"
        assert s.tags["device_sn"] == s.tags["device_master_sn"] == "02001311"


# -- a second device family ----------------------------------------------------
# A made-up family, defined here and registered in a copy of the registry only:
# a block file whose data part starts with `XY_T100_V001<TAB><serial>`, then rows
# of `<epoch seconds><TAB><x><TAB><y>`. Nothing in schema.py knows of it.

XY_TAG = "XY_T100_V001"
XY_SERIAL = "07000001"
XY_FILE = (
    'START_HEADER\n{"FileVersion": 1}\nEND_HEADER\nSTART_DATA\n'
    f"{XY_TAG}\t{XY_SERIAL}\n1768867200\t1.5\t2.5\n1768867260\t-3\t4.25\nEND_DATA\n"
)


class XYFile:
    def __init__(self, stream: LineSource) -> None:
        self.counts = ParseCounts()
        self.warnings: list[str] = []
        self._stream = stream
        assert is_block_start(self._line() or "")
        read_header_lines(self._line)
        tag, serial = (self._line() or "").split("\t")
        columns = (Column(1, serial, "X", "m"), Column(2, serial, "Y", "m"))
        # `phase` is an MV notion; this family's channels() give no subtype.
        self.header = Header(tag, "block", serial, "mono", columns)

    def _line(self) -> str | None:
        line = self._stream.readline()
        return line.rstrip("\n") if line else None

    def batches(self, batch_rows: int | None = None) -> Iterator[RowBatch]:
        epochs: list[int] = []
        values: list[str | None] = []
        for line in self._stream:
            if line.strip() == "END_DATA":
                break
            epoch, x, y = line.rstrip("\n").split("\t")
            epochs.append(int(epoch))
            values += [x, y]
            self.counts.nb_rows += 1
            self.counts.nb_valid_rows += 1
        yield RowBatch(epochs, values, 2, clean=True)


class XYFormat:
    name = "xy"
    device = "XY1"
    model_tags = frozenset({XY_TAG})

    def sniff(self, head: Head) -> bool:
        first = head.line(0)
        if first is None or not is_block_start(first):
            return False
        for index in range(1, 10):
            if head.line(index) == "START_DATA":
                tag_line = head.line(index + 1) or ""
                return tag_line.split("\t", 1)[0] == XY_TAG
        return False

    def open(self, stream: LineSource, options: ParseOptions, tail: str | None = None) -> XYFile:
        return XYFile(stream)

    def channels(self, header: Header) -> tuple[Channel, ...]:
        return tuple(Channel(column.name, "master") for column in header.columns)


def test_a_second_family_needs_no_change_in_the_schema(tmp_path: Path) -> None:
    formats = registry(*FORMATS.values(), XYFormat())  # MV first: it must not claim the file
    assert "xy" not in FORMATS
    path = tmp_path / "xy.tsv"
    path.write_text(XY_FILE)
    with open_device_file(path, ParseOptions(), formats) as device_file:
        family = format_for_tag(device_file.header.model_tag, formats)
        assert family is formats["xy"]
        series = series_for(device_file.header, "c1", family)
        encoder = BatchEncoder(series)
        text = "".join(encoder.encode(batch) for batch in device_file.batches())
    tags = "campaign=c1,channel_id=M07000001_{0},channel_label={0},channel_name={0},"
    tags += "channel_unit=m,device=XY1,device_master_sn=07000001,device_sn=07000001"
    tags += ",device_type=master"
    x, y = tags.format("X"), tags.format("Y")
    assert text == (
        f"electrical,{x} M07000001_X_m=1.5 1768867200\n"
        f"electrical,{y} M07000001_Y_m=2.5 1768867200\n"
        f"electrical,{x} M07000001_X_m=-3 1768867260\n"
        f"electrical,{y} M07000001_Y_m=4.25 1768867260\n"
    )
    assert [s.tags.get("device_subtype") for s in series] == [None, None]


def test_the_second_family_is_unknown_to_the_real_registry(tmp_path: Path) -> None:
    # The block layout alone does not make a file MV's: its tag must be an MV tag.
    path = tmp_path / "xy.tsv"
    path.write_text(XY_FILE)
    with (
        pytest.raises(FormatError, match="not a known device export"),
        open_device_file(path, ParseOptions()),
    ):
        pass


def test_mv_files_read_the_same_through_a_registry_with_another_family(samples: Path) -> None:
    formats = registry(XYFormat(), *FORMATS.values())  # XY first: it must not claim MV files
    path = samples / "acme/v003-mono/02001311/T302_260122_162658_UTC.tsv"
    outputs = []
    for registered in (FORMATS, formats):
        with open_device_file(path, ParseOptions(), registered) as device_file:
            encoder = BatchEncoder(series_for(device_file.header, "c1"))
            outputs.append("".join(encoder.encode(b) for b in device_file.batches()))
    assert outputs[0] == outputs[1] != ""
