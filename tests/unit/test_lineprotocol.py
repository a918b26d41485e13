"""Line protocol: escaping, tag order, and the batch encoder's two paths.

`parse_line` is the reader's side (InfluxDB 2.8's rules: a backslash escapes only
a following space, comma, equals sign or quote, and is a plain backslash before
anything else; quotes only matter in the field set), so escaping is checked by a
round trip as well as by exact text. The real server is the judge in
tests/integration/test_lineprotocol_roundtrip.py.
"""

from __future__ import annotations

import re

import pytest

from powerview.exceptions import FormatError
from powerview.formats import Column, Header, RowBatch
from powerview.lineprotocol import (
    BatchEncoder,
    escape_key,
    escape_measurement,
    loose_key,
    series_prefix,
    string_field,
)
from powerview.schema import Series, series_for

_ESCAPED = re.compile(r'\\([ ,="])')
_STRING_ESCAPED = re.compile(r'\\(["\\])')  # in a string field value


def _split(text: str, sep: str, quotes: bool, maxsplit: int = -1) -> list[str]:
    pieces: list[str] = []
    buf: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if quotes and ch == '"':
            quoted = not quoted
        if ch == sep and not quoted and (maxsplit < 0 or len(pieces) < maxsplit):
            pieces.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    pieces.append("".join(buf))
    return pieces


def unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text)


def string_value(raw: str) -> str:
    """A string field value as InfluxDB stores it."""
    assert len(raw) >= 2, raw
    assert raw[0] == raw[-1] == '"', raw
    return _STRING_ESCAPED.sub(r"\1", raw[1:-1])


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, str], int]:
    """(measurement, tags, raw field values, timestamp) of one line, escapes undone."""
    assert "\n" not in line
    head, rest = _split(line, " ", quotes=False, maxsplit=1)
    field_text, stamp = _split(rest, " ", quotes=True)
    measurement, *tag_texts = _split(head, ",", quotes=False)
    tags = {}
    for text in tag_texts:
        key, value = _split(text, "=", quotes=False)
        tags[unescape(key)] = unescape(value)
    fields = {}
    for text in _split(field_text, ",", quotes=True):
        key, value = _split(text, "=", quotes=True, maxsplit=1)
        fields[unescape(key)] = value
    assert re.fullmatch(r"-?\d+", stamp), stamp
    return unescape(measurement), tags, fields, int(stamp)


# -- escaping ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("Ph 1", r"Ph\ 1"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
        ("a\\b", r"a\b"),  # InfluxDB stores `a\\b` as two backslashes
        ("a b,c=d\\e", r"a\ b\,c\=d\e"),
        ('quo"te', 'quo"te'),
        ("Phase é", r"Phase\ é"),
    ],
)
def test_escape_key(raw: str, escaped: str) -> None:
    assert escape_key(raw) == escaped


def test_escape_measurement_leaves_equals_alone() -> None:
    assert escape_measurement("my meas,x=y\\z") == r"my\ meas\,x=y\z"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("trailing\\", "ends with a backslash"),
        ("line\nbreak", "line break"),
        ("cr\rhere", "line break"),
        ("a\\ b", "backslash before"),
        ("a\\,b", "backslash before"),
        ("a\\=b", "backslash before"),
        ('a\\"b', "backslash before"),
    ],
)
def test_names_line_protocol_cannot_carry_are_refused_by_name(raw: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason) as caught:
        escape_key(raw)
    assert repr(raw) in str(caught.value)
    (series,) = series_for(header([("02001171", f"{raw} W")]), "c1")
    for _ in range(2):  # prefixes are cached: a refusal never is
        with pytest.raises(FormatError, match="column 1"):
            series_prefix(series)


def test_loose_key_never_refuses_and_stays_one_line() -> None:
    assert loose_key("x.tsv\n") == r"x.tsv\ "
    assert loose_key("a\\ b\\") == r"a/\ b/"


def test_string_field_escapes_quotes_and_backslashes() -> None:
    assert string_field('say "hi" \\ now') == r'"say \"hi\" \\ now"'
    assert string_value(string_field('say "hi" \\ now')) == 'say "hi" \\ now'


def header(labels: list[tuple[str, str]], phase: str = "mono") -> Header:
    columns = []
    for index, (serial, label) in enumerate(labels, start=1):
        name, _, unit = label.rpartition(" ")
        columns.append(Column(index, serial, name, unit))
    return Header("MV_T302_V002", "plain", "02001171", phase, tuple(columns))  # type: ignore[arg-type]


def test_series_prefix_exact_text_sorted_tags() -> None:
    (series,) = series_for(header([("02001171", "L1, L2=x W")]), "c1")
    assert series_prefix(series) == (
        "electrical,campaign=c1,channel_id=M02001171_U1,channel_label=U1,"
        r"channel_name=L1\,\ L2\=x,channel_unit=W,device=MV2,device_master_sn=02001171,"
        "device_sn=02001171,device_subtype=mono,device_type=master M02001171_U1_W="
    )


def test_slave_prefix_has_no_subtype() -> None:
    _, slave = series_for(header([("02001171", "Ph 1 V"), ("04000466", "Voie1 W")]), "c1")
    assert series_prefix(slave) == (
        "electrical,campaign=c1,channel_id=M02001171_S04000466_Ch1,channel_label=Ch1,"
        "channel_name=Voie1,channel_unit=W,device=MV2,device_master_sn=02001171,"
        "device_sn=04000466,device_type=slave M02001171_S04000466_Ch1_W="
    )


def test_tag_keys_and_field_key_are_escaped_and_empty_tags_dropped() -> None:
    column = Column(1, "02001171", "x", "W")
    series = Series(
        column=column,
        channel_id="id",
        label="U1",
        field="f k,=",
        tags={"z key": "v,1", "a=k": "v=2", "empty": ""},
    )
    assert series_prefix(series) == r"electrical,a\=k=v\=2,z\ key=v\,1 f\ k\,\=="
    assert series_prefix(series, measurement="m 2") == r"m\ 2,a\=k=v\=2,z\ key=v\,1 f\ k\,\=="


@pytest.mark.parametrize(
    "name",
    ["Ph 1", "a,b=c d", "back\\slash", "two\\\\x", 'quo"te', "é 1,2", "=", ",", " "],
)
def test_tags_round_trip_through_a_reader(name: str) -> None:
    (series,) = series_for(header([("02001171", f"{name} W")]), "c-1")
    line = series_prefix(series) + "1.5 100"
    measurement, tags, fields, stamp = parse_line(line)
    assert measurement == "electrical"
    assert tags == series.tags
    assert tags["channel_name"] == name
    assert list(tags) == sorted(tags)
    assert fields == {"M02001171_U1_W": "1.5"}
    assert stamp == 100


# -- BatchEncoder --------------------------------------------------------------

U1 = (
    "electrical,campaign=c1,channel_id=M02001171_U1,channel_label=U1,channel_name=Ph\\ 1,"
    "channel_unit=V,device=MV2,device_master_sn=02001171,device_sn=02001171,"
    "device_subtype=mono,device_type=master M02001171_U1_V="
)
SLAVE = (
    "electrical,campaign=c1,channel_id=M02001171_S04000466_Ch1,channel_label=Ch1,"
    "channel_name=Voie1,channel_unit=W,device=MV2,device_master_sn=02001171,"
    "device_sn=04000466,device_type=slave M02001171_S04000466_Ch1_W="
)


@pytest.fixture
def two_series() -> tuple[Series, ...]:
    return series_for(header([("02001171", "Ph 1 V"), ("04000466", "Voie1 W")]), "c1")


def test_clean_batch(two_series: tuple[Series, ...]) -> None:
    encoder = BatchEncoder(two_series)
    batch = RowBatch(epochs=[100, 160], values=["1.5", "-0.0", "2", "3"], width=2, clean=True)
    assert encoder.encode(batch) == (f"{U1}1.5 100\n{SLAVE}-0.0 100\n{U1}2 160\n{SLAVE}3 160\n")
    assert encoder.points == 4


def test_unclean_batch_skips_missing_values(two_series: tuple[Series, ...]) -> None:
    encoder = BatchEncoder(two_series)
    batch = RowBatch(epochs=[100, 160], values=["1.5", None, None, "3"], width=2, clean=False)
    assert encoder.encode(batch) == f"{U1}1.5 100\n{SLAVE}3 160\n"
    assert encoder.points == 2
    empty = RowBatch(epochs=[220], values=[None, None], width=2, clean=False)
    assert encoder.encode(empty) == ""
    assert encoder.points == 2


def test_width_mismatch_is_refused(two_series: tuple[Series, ...]) -> None:
    with pytest.raises(ValueError, match="width"):
        BatchEncoder(two_series).encode(RowBatch([1], ["1", "2", "3"], 3, True))


def reference(prefixes: list[str], batch: RowBatch) -> str:
    """The obvious, slow encoding."""
    lines = []
    for i, epoch in enumerate(batch.epochs):
        for j, prefix in enumerate(prefixes):
            value = batch.values[i * batch.width + j]
            if value is not None:
                lines.append(f"{prefix}{value} {epoch}\n")
    return "".join(lines)


def test_buffer_reuse_across_batch_sizes(two_series: tuple[Series, ...]) -> None:
    prefixes = [U1, SLAVE]
    encoder = BatchEncoder(two_series)
    plan = [(3, True), (1, True), (3, True), (2, False), (3, True), (3, False), (5, True)]
    epoch, counter, points = 1_000, 0, 0
    for rows, clean in plan:
        values: list[str | None] = []
        for _ in range(rows * 2):
            counter += 1
            values.append(None if not clean and counter % 3 == 0 else f"{counter}.5")
        epochs = [epoch + 10 * i for i in range(rows)]
        epoch += 10 * rows
        batch = RowBatch(epochs, values, 2, None not in values)
        text = encoder.encode(batch)
        assert text == reference(prefixes, batch)
        points += sum(v is not None for v in values)
        assert encoder.points == points
    # 20 rows of 2 values; missing: values 15 and 18, then 27 and 30 (the unclean batches)
    assert points == 2 * 20 - 4
