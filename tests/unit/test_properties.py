"""Properties of the parser over generated exports, valid and damaged.

Valid exports (tests/factories.py, random shapes) parse completely. Damaged ones
(byte flips, cuts, lines inserted or deleted, junk values) either fail with a
FormatError or parse with counts that add up; nothing else ever escapes.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerview.exceptions import FormatError
from powerview.formats import ParseCounts, ParseOptions, open_device_file
from powerview.formats.mv import MODEL_TAGS
from powerview.ingest import encode_file
from tests.factories import Export

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties") / "export.tsv"


@dataclass
class Generated:
    export: Export
    crlf: bool
    bom: bool
    local: bool

    def content(self) -> bytes:
        end = "\r\n" if self.crlf else "\n"
        text = end.join(self.export.lines()) + end
        return ("\ufeff" if self.bom else "").encode() + text.encode()


@st.composite
def exports(draw: st.DrawFn) -> Generated:
    master = draw(st.from_regex(r"020[0-9]{5}", fullmatch=True))
    slaves = draw(st.lists(st.from_regex(r"040[0-9]{5}", fullmatch=True), max_size=3, unique=True))
    block = draw(st.booleans())
    export = Export(
        master_sn=master,
        slaves=tuple(slaves),
        slave_channels=draw(st.integers(1, 6)),
        phase=draw(st.sampled_from(["mono", "tri"])),
        master_channels=draw(st.integers(0, 5)),
        tag=draw(st.sampled_from(sorted(MODEL_TAGS))),
        block=block,
        rows=draw(st.integers(0, 40)),
        # From a day after the earliest valid time (2021-01-01T00:00Z): a local
        # time on 2021-01-01 in a zone east of UTC falls before it, out of window.
        start=draw(st.datetimes(dt.datetime(2021, 1, 2), dt.datetime(2090, 12, 31))).replace(
            microsecond=0
        ),
        step_s=draw(st.integers(1, 86_400)),
        seed=draw(st.integers(0, 2**32)),
    )
    local = block and draw(st.booleans())
    if local:
        export.metadata["DataTimeSettings"] = "Local"
    return Generated(export, draw(st.booleans()), draw(st.booleans()), local)


@dataclass
class ParsedFile:
    counts: ParseCounts
    epochs: list[int]
    values: int  # non-None values emitted
    points: int
    phase: str
    width: int


def parse(path: Path, content: bytes, batch_rows: int) -> ParsedFile:
    path.write_bytes(content)
    with open_device_file(path, ParseOptions()) as device_file:
        header = device_file.header
        encoded = encode_file(device_file, "c1", batch_rows)
        epochs: list[int] = []
        values = 0
        for batch, text in encoded:
            assert 0 < len(batch.epochs) <= batch_rows
            assert batch.width == len(header.columns)
            assert len(batch.values) == batch.width * len(batch.epochs)
            assert batch.clean == (None not in batch.values)
            present = [v for v in batch.values if v is not None]
            for value in present:
                # What reaches the line protocol is an ASCII, finite decimal.
                assert value.isascii(), value
                assert value.strip() == value, value
                assert math.isfinite(float(value)), value
            assert text.count("\n") == len(present)
            epochs.extend(batch.epochs)
            values += len(present)
    return ParsedFile(
        device_file.counts, epochs, values, encoded.points, header.phase, len(header.columns)
    )


def assert_counts_add_up(outcome: ParsedFile) -> None:
    counts = outcome.counts
    assert counts.nb_rows == counts.nb_valid_rows + counts.nb_rejected_rows
    assert len(outcome.epochs) == counts.nb_valid_rows
    assert outcome.points == outcome.values
    assert all(value >= 0 for value in counts.as_dict().values())


@SETTINGS
@given(generated=exports(), batch_rows=st.integers(1, 50))
def test_valid_exports_parse_completely(work: Path, generated: Generated, batch_rows: int) -> None:
    export = generated.export
    outcome = parse(work, generated.content(), batch_rows)
    assert outcome.phase == export.phase
    assert outcome.width == export.width
    assert outcome.counts.nb_rows == outcome.counts.nb_valid_rows == export.rows
    assert outcome.counts.nb_rejected_rows == 0
    assert outcome.counts.nb_invalid_values == 0
    assert outcome.points == outcome.values == export.rows * export.width
    if not generated.local:
        start = calendar.timegm(export.start.timetuple())
        assert outcome.epochs == [start + i * export.step_s for i in range(export.rows)]


# -- damaged exports -------------------------------------------------------------

JUNK_LINES = [
    "",
    "   ",
    "END_DATA",
    "START_HEADER",
    "START_DATA",
    "\t\t\t",
    "garbage",
    "20/01/26 00:00:00",
    "20/01/26 00:00:00\t1",
    "31/12/9999 23:59:59\t1\t2\t3",
    "01/01/0001 00:00:00\t1\t2\t3",
    "29/02/2100 00:00:00\t1",
    "01/01/20 00:00:00\t0\t0\t0\t0\t0\t0",
    "25/10/26 02:30:00\t1\t2\t3\t4",
    "29/03/26 02:30:00\t1\t2\t3\t4",
]
JUNK_VALUES = [
    "N/A",
    "",
    " ",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "12,5",
    "-0,0",
    "1,2,3",
    "-0.0",
    "\u0663",
    "\uff11\uff12",
    "1_000",
    "0x1p3",
    "\u00a012",
    "1e5",
    "+1",
    ".5",
    "5.",
]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = draw(exports()).content()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "value"]))
        if kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind in ("insert", "delete", "value"):
            lines = data.split(b"\n")
            at = draw(st.integers(0, len(lines) - 1))
            if kind == "insert":
                junk = draw(st.one_of(st.sampled_from(JUNK_LINES), st.text(max_size=40)))
                lines.insert(at, junk.encode("utf-8", "surrogatepass"))
            elif kind == "delete":
                del lines[at]
            else:
                # A junk value goes into a data row when there is one (not the header).
                rows = [i for i, line in enumerate(lines) if line[2:3] == b"/"]
                if rows:
                    at = rows[draw(st.integers(0, len(rows) - 1))]
                cells = lines[at].split(b"\t")
                cell = draw(st.integers(0, len(cells) - 1))
                junk = draw(st.one_of(st.sampled_from(JUNK_VALUES), st.text(max_size=8)))
                cells[cell] = junk.encode("utf-8", "surrogatepass")
                lines[at] = b"\t".join(cells)
            data = b"\n".join(lines)
    return data


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=damaged(), batch_rows=st.integers(1, 50))
def test_damaged_exports_fail_cleanly_or_add_up(work: Path, data: bytes, batch_rows: int) -> None:
    try:
        outcome = parse(work, data, batch_rows)
    except FormatError:
        return
    assert_counts_add_up(outcome)


@SETTINGS
@given(
    generated=exports(),
    bad_rows=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(["short", "long", "reset", "junk"])),
        max_size=6,
    ),
)
def test_rejected_rows_are_counted_by_kind(
    work: Path, generated: Generated, bad_rows: list[tuple[int, str]]
) -> None:
    """Known bad rows dropped into a valid export land in their own counters."""
    export = generated.export
    lines = list(export.lines())
    first_row = 6 if export.block else 2
    last_row = len(lines) - (1 if export.block else 0)
    stamp = "20/01/26 00:00:00"
    made = {
        "short": stamp + "\t1" * (export.width - 1),
        "long": stamp + "\t1" * (export.width + 1),
        "reset": "01/01/20 00:00:00" + "\t1" * export.width,
        "junk": "x" + "\t1" * export.width,
    }
    for position, kind in bad_rows:
        at = first_row + position % (last_row - first_row + 1)
        lines.insert(at, made[kind])
        last_row += 1
    outcome = parse(work, ("\n".join(lines) + "\n").encode(), 7)
    counts = outcome.counts
    kinds = [kind for _, kind in bad_rows]
    assert counts.nb_short_rows == kinds.count("short")
    assert counts.nb_long_rows == kinds.count("long")
    assert counts.nb_out_of_window == kinds.count("reset")
    assert counts.nb_invalid_timestamps == kinds.count("junk")
    assert counts.nb_valid_rows == export.rows
    assert counts.nb_rows == export.rows + len(bad_rows)
    assert outcome.points == export.rows * export.width
    assert_counts_add_up(outcome)
