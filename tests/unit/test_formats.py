"""The MV format, row by row: what is kept, what is set aside and how it is counted.

Expected epochs come from `date -u -d '<time>' +%s` (and `TZ=Europe/Paris date`
for local times), never from the parser under test.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from powerview.exceptions import FormatError, IncompleteFileError
from powerview.formats import (
    FORMATS,
    BoundedLines,
    Header,
    ParseCounts,
    ParseOptions,
    PeekedLines,
    detect,
    open_device_file,
    open_stream,
)
from powerview.lineprotocol import BatchEncoder
from powerview.schema import series_for
from tests.factories import Export

MASTER = "02000001"
HEAD = f"{MASTER}\t{MASTER}\t{MASTER}\nMV_T302_V002\tPh 1 V\tVoie1 W\n"
T0 = 1_768_867_200  # 20/01/26 00:00:00 UTC
ROW0 = "20/01/26 00:00:00\t230.1\t10.0\n"
ROW1 = "20/01/26 00:10:00\t230.2\t10.5\n"
ROW2 = "20/01/26 00:20:00\t230.3\t11.0\n"
EARLIEST_DEFAULT = 1_609_459_200  # 2021-01-01T00:00:00Z


@dataclass
class Parsed:
    header: Header
    counts: ParseCounts
    warnings: list[str]
    rows: list[tuple[int, list[str | None]]] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def epochs(self) -> list[int]:
        return [epoch for epoch, _ in self.rows]

    def nonzero(self) -> dict[str, int]:
        return {key: value for key, value in self.counts.as_dict().items() if value}


def parse(
    tmp_path: Path,
    content: str | bytes,
    options: ParseOptions | None = None,
    batch_rows: int | None = None,
) -> Parsed:
    """Write `content` to a file and read it the way ingest does."""
    path = tmp_path / "export.tsv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with open_device_file(path, options or ParseOptions()) as device_file:
        parsed = Parsed(device_file.header, device_file.counts, device_file.warnings)
        for batch in device_file.batches(batch_rows):
            assert len(batch.values) == batch.width * len(batch.epochs)
            assert batch.clean == (None not in batch.values)
            parsed.batch_sizes.append(len(batch.epochs))
            parsed.rows.extend(zip(batch.epochs, batch.rows(), strict=True))
    return parsed


def block(rows: str, metadata: dict[str, object] | None = None, end: str = "END_DATA\n") -> str:
    meta = {"DataTimeSettings": "UTC", "FileVersion": 3, "MasterType": "Mono"}
    if metadata is not None:
        meta = metadata
    header = f"START_HEADER\n{json.dumps(meta)}\nEND_HEADER\nSTART_DATA\n"
    return header + HEAD.replace("MV_T302_V002", "MV_T302_V003") + rows + end


# -- timestamps ----------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "32/01/26 00:00:00",  # no 32nd
        "29/02/25 00:00:00",  # 2025 is not a leap year
        "00/01/26 00:00:00",
        "20/13/26 00:00:00",
        "20/01/26 25:00:00",
        "20/01/26 24:00:00",
        "20/01/26 00:60:00",
        "20/01/26 00:00:60",
        "garbage",
        "",
        "2026-01-20 00:00:00",
        "20/01/26",
        "20/01/26T00:00:00",
        "\u0662\u0660/01/26 00:00:00",  # Arabic-Indic digits: not the device's ASCII
    ],
)
def test_invalid_timestamp_rejects_the_row(tmp_path: Path, stamp: str) -> None:
    parsed = parse(tmp_path, HEAD + ROW0 + f"{stamp}\t231.0\t12.0\n" + ROW2)
    assert parsed.rows == [(T0, ["230.1", "10.0"]), (T0 + 1200, ["230.3", "11.0"])]
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 2, "nb_invalid_timestamps": 1}
    assert parsed.counts.nb_rejected_rows == 1


def test_leap_day_and_four_digit_year_are_valid(tmp_path: Path) -> None:
    # 2024-02-29T12:00:00Z = 1709208000; DD/MM/YYYY is accepted as well (mv.py docstring).
    parsed = parse(tmp_path, HEAD + "29/02/24 12:00:00\t1\t2\n" + "20/01/2026 00:10:00\t3\t4\n")
    assert parsed.rows == [(1_709_208_000, ["1", "2"]), (T0 + 600, ["3", "4"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2}


# -- values --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "N/A",
        "",
        " ",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e400",
        "-1e400",
        "abc",
        "12.5.1",
        "1,2,3",
        "--1",
        "0x10",
    ],
)
@pytest.mark.parametrize("position", [0, 1])
def test_invalid_value_is_skipped_and_counted_row_kept(
    tmp_path: Path, bad: str, position: int
) -> None:
    cells = ["230.1", "10.0"]
    cells[position] = bad
    parsed = parse(tmp_path, HEAD + "20/01/26 00:00:00\t" + "\t".join(cells) + "\n" + ROW1)
    expected: list[str | None] = ["230.1", "10.0"]
    expected[position] = None
    assert parsed.rows == [(T0, expected), (T0 + 600, ["230.2", "10.5"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2, "nb_invalid_values": 1}


@pytest.mark.parametrize(
    ("text", "kept"),
    [("-0.0", "-0.0"), ("-0", "-0"), ("0", "0"), ("242.25", "242.25"), ("-5.3", "-5.3")],
)
def test_plain_decimals_pass_through_as_written(tmp_path: Path, text: str, kept: str) -> None:
    parsed = parse(tmp_path, HEAD + f"20/01/26 00:00:00\t{text}\t1.0\n")
    assert parsed.rows == [(T0, [kept, "1.0"])]


def test_decimal_comma_is_accepted_and_counted(tmp_path: Path) -> None:
    parsed = parse(tmp_path, HEAD + "20/01/26 00:00:00\t12,5\t-0,75\n" + ROW1)
    assert parsed.rows == [(T0, ["12.5", "-0.75"]), (T0 + 600, ["230.2", "10.5"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2, "nb_decimal_comma": 2}


def test_non_ascii_digits_never_reach_the_line_protocol(tmp_path: Path) -> None:
    # Arabic-Indic 242.5: line protocol floats are ASCII; the value may be read as
    # 242.5 or dropped, but never passed through as written.
    parsed = parse(tmp_path, HEAD + "20/01/26 00:00:00\t\u0662\u0664\u0662.\u0665\t1.0\n")
    value = parsed.rows[0][1][0]
    assert value is None or (value.isascii() and float(value) == 242.5)


# -- row shape -----------------------------------------------------------------


def test_short_and_long_rows_mid_file_are_rejected(tmp_path: Path) -> None:
    short = "20/01/26 00:10:00\t230.2\n"
    long = "20/01/26 00:20:00\t230.3\t11.0\t99.9\n"
    last = "20/01/26 00:30:00\t230.4\t11.5\n"
    parsed = parse(tmp_path, HEAD + ROW0 + short + long + last)
    assert parsed.rows == [(T0, ["230.1", "10.0"]), (T0 + 1800, ["230.4", "11.5"])]
    assert parsed.nonzero() == {
        "nb_rows": 4,
        "nb_valid_rows": 2,
        "nb_short_rows": 1,
        "nb_long_rows": 1,
    }
    assert parsed.counts.nb_rejected_rows == 2


def test_last_line_without_newline_but_complete_is_kept(tmp_path: Path) -> None:
    # The real acme/big sample ends like this.
    parsed = parse(tmp_path, HEAD + ROW0 + "20/01/26 00:10:00\t230.2\t10.5")
    assert parsed.rows == [(T0, ["230.1", "10.0"]), (T0 + 600, ["230.2", "10.5"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2}


@pytest.mark.parametrize(
    "cut",
    [
        "20/01/26 00:10:00\t230.2",  # a column missing
        "20/01/26 00:10:00\t230.2\t",  # the last value missing
        "20/01/26 00:10:00",
        "20/01/26 00:1",  # cut inside the timestamp
    ],
)
def test_last_line_cut_short_is_counted_truncated(tmp_path: Path, cut: str) -> None:
    parsed = parse(tmp_path, HEAD + ROW0 + cut)
    assert parsed.rows == [(T0, ["230.1", "10.0"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 1, "nb_truncated_lines": 1}


def test_empty_last_value_mid_file_is_an_invalid_value_not_a_cut(tmp_path: Path) -> None:
    parsed = parse(tmp_path, HEAD + "20/01/26 00:00:00\t230.1\t\n" + ROW1)
    assert parsed.rows == [(T0, ["230.1", None]), (T0 + 600, ["230.2", "10.5"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2, "nb_invalid_values": 1}


def test_blank_lines_are_counted_apart_from_rows(tmp_path: Path) -> None:
    parsed = parse(tmp_path, HEAD + ROW0 + "\n   \n" + ROW1)
    assert parsed.epochs == [T0, T0 + 600]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2, "nb_blank_lines": 2}


# -- time order and window -----------------------------------------------------


def test_duplicate_timestamp_counted_and_later_row_still_emitted(tmp_path: Path) -> None:
    again = "20/01/26 00:00:00\t0\t0\n"
    parsed = parse(tmp_path, HEAD + ROW0 + again + ROW1)
    assert parsed.rows == [
        (T0, ["230.1", "10.0"]),
        (T0, ["0", "0"]),
        (T0 + 600, ["230.2", "10.5"]),
    ]
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 3, "nb_duplicate_timestamps": 1}


def test_out_of_order_counted_and_kept(tmp_path: Path) -> None:
    parsed = parse(tmp_path, HEAD + ROW1 + ROW0 + ROW2)
    assert parsed.epochs == [T0 + 600, T0, T0 + 1200]
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 3, "nb_out_of_order": 1}


def test_clock_reset_row_is_out_of_window_with_default_options(tmp_path: Path) -> None:
    reset = "01/01/20 01:00:02\t233.28\t1821.9\n"
    # The rejected row does not become "the row before": ROW1 is not out of order.
    parsed = parse(tmp_path, HEAD + ROW0 + reset + ROW1)
    assert parsed.epochs == [T0, T0 + 600]
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 2, "nb_out_of_window": 1}
    assert parsed.counts.nb_rejected_rows == 1


def test_default_window_starts_on_2021_01_01(tmp_path: Path) -> None:
    assert ParseOptions().earliest_epoch == EARLIEST_DEFAULT
    text = HEAD + "31/12/20 23:59:59\t1\t1\n" + "01/01/21 00:00:00\t2\t2\n"
    parsed = parse(tmp_path, text)
    assert parsed.rows == [(EARLIEST_DEFAULT, ["2", "2"])]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 1, "nb_out_of_window": 1}


def test_latest_epoch_rejects_future_rows(tmp_path: Path) -> None:
    options = ParseOptions(latest_epoch=T0 + 600)
    parsed = parse(tmp_path, HEAD + ROW0 + ROW1 + ROW2, options)
    assert parsed.epochs == [T0, T0 + 600]  # the bound itself is inside the window
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 2, "nb_out_of_window": 1}


def test_earliest_epoch_option_moves_the_window(tmp_path: Path) -> None:
    parsed = parse(tmp_path, HEAD + ROW0 + ROW1, ParseOptions(earliest_epoch=T0 + 1))
    assert parsed.epochs == [T0 + 600]
    assert parsed.counts.nb_out_of_window == 1


# -- encoding problems ---------------------------------------------------------


def test_non_utf8_byte_costs_its_row_only(tmp_path: Path) -> None:
    content = (HEAD + ROW0).encode() + b"20/01/26 00:10:00\t23\xe9.1\t10.5\n" + ROW2.encode()
    parsed = parse(tmp_path, content)
    assert parsed.epochs == [T0, T0 + 1200]
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 2, "nb_undecodable_lines": 1}
    assert parsed.counts.nb_rejected_rows == 1


def test_nul_bytes_far_into_a_file_cost_their_row(tmp_path: Path) -> None:
    # NUL bytes in the first 8 KiB reject the file as binary (see the golden
    # case binary_nul); further on only their row is lost.
    rows = [f"20/01/26 {h:02d}:{m:02d}:00\t230.1\t10.0\n" for h in range(24) for m in range(60)]
    head = HEAD + "".join(rows[:300])
    assert len(head) > 8192
    content = head.encode() + b"20/01/26 04:59:30\t\x00\x00\t1\n" + rows[300].encode()
    parsed = parse(tmp_path, content)
    assert parsed.nonzero() == {"nb_rows": 302, "nb_valid_rows": 301, "nb_undecodable_lines": 1}


def test_non_utf8_header_is_a_format_error(tmp_path: Path) -> None:
    content = f"{MASTER}\t{MASTER}\nMV_T302_V002\tTemp\xe9rature C\n".encode("latin-1")
    with pytest.raises(FormatError, match="non-UTF-8"):
        parse(tmp_path, content + ROW0.encode())


def test_nul_bytes_at_the_start_reject_the_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="binary content"):
        parse(tmp_path, b"\x00" + (HEAD + ROW0).encode())


def test_empty_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="empty file"):
        parse(tmp_path, b"")


# -- block layout --------------------------------------------------------------


def test_lines_after_end_data_are_counted_and_ignored(tmp_path: Path) -> None:
    # The file does not end with END_DATA, yet it is not cut: it has one.
    after = "20/01/26 01:00:00\t1.0\t2.0\nEND_DATA\njunk\n"
    parsed = parse(tmp_path, block(ROW0 + ROW1, end="END_DATA\n" + after))
    assert parsed.epochs == [T0, T0 + 600]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2, "nb_lines_after_end": 3}


def test_blank_lines_after_end_data_are_not_a_cut(tmp_path: Path) -> None:
    parsed = parse(tmp_path, block(ROW0, end="END_DATA\n\n\n"))
    assert parsed.epochs == [T0]
    assert parsed.header.layout == "block"


def test_block_without_end_data_fails_before_any_row(tmp_path: Path) -> None:
    path = tmp_path / "cut.tsv"
    path.write_text(block(ROW0 + ROW1, end=""))
    with (
        pytest.raises(IncompleteFileError, match="END_DATA"),
        open_device_file(path, ParseOptions()),
    ):
        pytest.fail("opened a file without END_DATA")


def test_block_without_end_data_on_a_stream_fails_after_its_rows() -> None:
    # A stream has no known tail: the rows come out, then the error.
    device_file = open_stream(io.StringIO(block(ROW0 + ROW1, end="")), ParseOptions())
    batches = device_file.batches()
    assert next(batches).epochs == [T0, T0 + 600]
    with pytest.raises(IncompleteFileError):
        next(batches)


def test_block_cut_in_the_middle_of_a_row(tmp_path: Path) -> None:
    with pytest.raises(IncompleteFileError):
        parse(tmp_path, block(ROW0 + "20/01/26 00:10:00\t23", end=""))


def test_start_header_without_end_header_is_incomplete(tmp_path: Path) -> None:
    with pytest.raises(IncompleteFileError, match="END_HEADER"):
        parse(tmp_path, 'START_HEADER\n{"DataTimeSettings":"UTC"}\n')


@pytest.mark.parametrize(
    ("json_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a", "b"]', "not a JSON object"),
        ("[" * 100_000, "not valid JSON"),  # deep nesting: a FormatError, not a crash
    ],
)
def test_bad_json_header_is_a_format_error(tmp_path: Path, json_line: str, message: str) -> None:
    text = f"START_HEADER\n{json_line}\nEND_HEADER\nSTART_DATA\n" + HEAD + ROW0 + "END_DATA\n"
    with pytest.raises(FormatError, match=message):
        parse(tmp_path, text)


def test_end_header_must_be_followed_by_start_data(tmp_path: Path) -> None:
    text = 'START_HEADER\n{"DataTimeSettings":"UTC"}\nEND_HEADER\n' + HEAD + ROW0 + "END_DATA\n"
    with pytest.raises(FormatError, match="START_DATA"):
        parse(tmp_path, text)


def test_block_header_metadata_and_layout(tmp_path: Path) -> None:
    meta = {"DataTimeSettings": "UTC", "FileVersion": 3, "MasterType": "Mono", "DataZoneCode": 3}
    parsed = parse(tmp_path, block(ROW0, meta))
    header = parsed.header
    assert (header.model_tag, header.layout, header.master_sn) == ("MV_T302_V003", "block", MASTER)
    assert header.metadata == meta
    assert header.time_zone == "UTC"
    assert parsed.warnings == []


def test_block_without_time_setting_reads_utc_with_a_warning(tmp_path: Path) -> None:
    parsed = parse(tmp_path, block(ROW0, {"MasterType": "Mono"}))
    assert parsed.epochs == [T0]
    assert any("DataTimeSettings" in warning for warning in parsed.warnings)


# -- local time ----------------------------------------------------------------

PARIS = {"DataTimeSettings": "Local", "TimeZoneName": "Europe/Paris", "MasterType": "Mono"}


def paris(rows: list[str], setting: str = "Local") -> str:
    return block(
        "".join(f"{when}\t1.0\t2.0\n" for when in rows), PARIS | {"DataTimeSettings": setting}
    )


@pytest.mark.parametrize("setting", ["Local", "local", "Heure locale", "CET"])
def test_local_time_is_converted_to_utc(tmp_path: Path, setting: str) -> None:
    # 12:00 in Paris: 11:00Z in winter (CET, +1), 10:00Z in summer (CEST, +2).
    parsed = parse(tmp_path, paris(["15/01/26 12:00:00", "15/07/26 12:00:00"], setting))
    assert parsed.header.time_zone == "Europe/Paris"
    assert parsed.epochs == [1_768_474_800, 1_784_109_600]
    assert parsed.nonzero() == {"nb_rows": 2, "nb_valid_rows": 2}


@pytest.mark.parametrize("setting", ["UTC", "utc", "GMT"])
def test_utc_settings_are_not_converted(tmp_path: Path, setting: str) -> None:
    parsed = parse(tmp_path, paris(["15/01/26 12:00:00"], setting))
    assert parsed.header.time_zone == "UTC"
    assert parsed.epochs == [1_768_478_400]


def test_spring_forward_gap_is_counted_and_read_with_the_offset_before(tmp_path: Path) -> None:
    # 29/03/26 02:00 CET → 03:00 CEST. 01:30 CET = 1774744200; 02:30 does not exist,
    # read at +01:00 it is 01:30Z = 1774747800; 04:00 CEST = 02:00Z = 1774749600.
    parsed = parse(tmp_path, paris(["29/03/26 01:30:00", "29/03/26 02:30:00", "29/03/26 04:00:00"]))
    assert parsed.epochs == [1_774_744_200, 1_774_747_800, 1_774_749_600]
    assert parsed.nonzero() == {"nb_rows": 3, "nb_valid_rows": 3, "nb_dst_gap": 1}


def test_fall_back_repeated_hour_is_counted_and_kept_in_order(tmp_path: Path) -> None:
    # 25/10/26 03:00 CEST → 02:00 CET: 02:00-02:59 happen twice.
    rows = [
        "25/10/26 01:30:00",  # CEST, 23:30Z: 1792884600
        "25/10/26 02:30:00",  # first pass, CEST: 1792888200
        "25/10/26 02:45:00",  # first pass, CEST: 1792889100
        "25/10/26 02:30:00",  # second pass, CET: 1792891800, one hour after the first
        "25/10/26 02:45:00",  # second pass, CET: 1792892700
        "25/10/26 03:30:00",  # CET: 1792895400
    ]
    parsed = parse(tmp_path, paris(rows))
    assert parsed.epochs == [
        1_792_884_600,
        1_792_888_200,
        1_792_889_100,
        1_792_891_800,
        1_792_892_700,
        1_792_895_400,
    ]
    assert parsed.epochs[3] - parsed.epochs[1] == 3600
    assert parsed.nonzero() == {"nb_rows": 6, "nb_valid_rows": 6, "nb_dst_ambiguous": 4}


def test_repeated_local_time_right_after_itself_is_a_duplicate(tmp_path: Path) -> None:
    # mv.py: "a time that exists twice is given the earliest reading not before the
    # previous row": the first 02:30 (00:30Z) is not before itself, so it is kept.
    parsed = parse(tmp_path, paris(["25/10/26 02:30:00", "25/10/26 02:30:00"]))
    assert parsed.epochs == [1_792_888_200, 1_792_888_200]
    assert parsed.counts.nb_dst_ambiguous == 2
    assert parsed.counts.nb_duplicate_timestamps == 1


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons", "Europe", "../../etc/passwd", None])
def test_local_time_without_usable_zone_is_a_format_error(tmp_path: Path, zone: str | None) -> None:
    meta: dict[str, object] = {"DataTimeSettings": "Local", "MasterType": "Mono"}
    if zone is not None:
        meta["TimeZoneName"] = zone
    with pytest.raises(FormatError, match="TimeZoneName"):
        parse(tmp_path, block(ROW0, meta))


def test_plain_files_use_the_headerless_time_zone_option(tmp_path: Path) -> None:
    text = HEAD + "15/01/26 12:00:00\t1\t2\n"
    assert parse(tmp_path, text).epochs == [1_768_478_400]  # UTC by default
    options = ParseOptions(headerless_time_zone="Europe/Paris")
    parsed = parse(tmp_path, text, options)
    assert parsed.header.time_zone == "Europe/Paris"
    assert parsed.epochs == [1_768_474_800]


# -- header: phase, columns, tags ----------------------------------------------


def header_text(labels: list[str], serials: list[str] | None = None, master: str = MASTER) -> str:
    serials = serials or [master] * len(labels)
    return "\t".join([master, *serials]) + "\n" + "\t".join(["MV_T302_V002", *labels]) + "\n"


@pytest.mark.parametrize(
    ("labels", "phase"),
    [
        (["Ph 1 V", "Ph 2 V", "Ph 3 V", "Voie1 W"], "tri"),
        (["Voie1 W", "Ph 3 V", "Ph 2 V", "Ph 1 V"], "tri"),
        (["Ph 1 V", "Voie1 W", "Voie2 W", "Voie3 W"], "mono"),
        (["Ph 1 V", "Ph 2 V", "Voie1 W"], "mono"),
    ],
)
def test_labels_decide_the_phase_without_master_type(
    tmp_path: Path, labels: list[str], phase: str
) -> None:
    parsed = parse(tmp_path, header_text(labels))
    assert parsed.header.phase == phase
    assert parsed.warnings == []


def test_phase_labels_on_a_slave_do_not_make_the_master_three_phase(tmp_path: Path) -> None:
    labels = ["Ph 1 V", "Ph 1 V", "Ph 2 V", "Ph 3 V"]
    serials = [MASTER, "04000466", "04000466", "04000466"]
    assert parse(tmp_path, header_text(labels, serials)).header.phase == "mono"


@pytest.mark.parametrize(
    ("master_type", "labels", "phase", "warned"),
    [
        ("Tri", ["Ph 1 V", "Ph 2 V", "Ph 3 V"], "tri", False),
        ("Mono", ["Ph 1 V", "Voie1 W", "Voie2 W"], "mono", False),
        ("Mono", ["Ph 1 V", "Ph 2 V", "Ph 3 V"], "mono", True),  # MasterType wins
        ("Tri", ["Ph 1 V", "Voie1 W", "Voie2 W"], "tri", True),
    ],
)
def test_master_type_decides_the_phase(
    tmp_path: Path, master_type: str, labels: list[str], phase: str, warned: bool
) -> None:
    meta = {"DataTimeSettings": "UTC", "MasterType": master_type}
    rows = "20/01/26 00:00:00\t1\t2\t3\n"
    text = f"START_HEADER\n{json.dumps(meta)}\nEND_HEADER\nSTART_DATA\n"
    text += header_text(labels) + rows + "END_DATA\n"
    parsed = parse(tmp_path, text)
    assert parsed.header.phase == phase
    assert any("MasterType" in w for w in parsed.warnings) == warned


def test_unknown_master_type_falls_back_to_labels_with_a_warning(tmp_path: Path) -> None:
    meta = {"DataTimeSettings": "UTC", "MasterType": "Bi"}
    text = f"START_HEADER\n{json.dumps(meta)}\nEND_HEADER\nSTART_DATA\n"
    text += header_text(["Ph 1 V", "Ph 2 V", "Ph 3 V"]) + "END_DATA\n"
    parsed = parse(tmp_path, text)
    assert parsed.header.phase == "tri"
    assert any("'Bi'" in w for w in parsed.warnings)


def test_columns_split_labels_at_the_last_space(tmp_path: Path) -> None:
    labels = ["Ph 1 V", "Voie 3 kWh", "minipince W"]
    serials = [MASTER, MASTER, "04001002"]
    header = parse(tmp_path, header_text(labels, serials)).header
    assert [(c.index, c.serial, c.name, c.unit) for c in header.columns] == [
        (1, MASTER, "Ph 1", "V"),
        (2, MASTER, "Voie 3", "kWh"),
        (3, "04001002", "minipince", "W"),
    ]
    assert header.master_sn == MASTER
    assert header.layout == "plain"


@pytest.mark.parametrize("tag", ["MV_T302_V002", "MV_T302_V003", "MV_T202_V002", "MV_T202_V003"])
def test_known_model_tags(tmp_path: Path, tag: str) -> None:
    parsed = parse(tmp_path, HEAD.replace("MV_T302_V002", tag) + ROW0)
    assert parsed.header.model_tag == tag
    assert parsed.epochs == [T0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{MASTER}\t{MASTER}\nMV_T999_V001\tPh 1 V\n", "MV_T999_V001"),
        (f"{MASTER}\t{MASTER}\t{MASTER}\nMV_T302_V002\tPh 1 V\n", "header width mismatch"),
        (f"{MASTER}\t{MASTER}\nMV_T302_V002\tVoie1\n", "'Voie1'"),
        (f"{MASTER}\t0200-001\nMV_T302_V002\tPh 1 V\n", "invalid module serial"),
        (f"{MASTER}\t\nMV_T302_V002\tPh 1 V\n", "invalid module serial"),
        ("START_HEADER\n{}\nEND_HEADER\nSTART_DATA\n" + f"{MASTER}\t{MASTER}\n", "cut short"),
        ("hello\tworld\nnot a tag\tat all\n", "not a known device export"),
        ("just one line\n", "not a known device export"),
    ],
)
def test_bad_headers_are_format_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse(tmp_path, text)


def head_of(text: str) -> tuple[PeekedLines, BoundedLines]:
    """The head detect() sniffs, and the bounded reader under it (to see how far it read)."""
    lines = BoundedLines(io.StringIO(text), ParseOptions())
    return PeekedLines(lines), lines


def block_head(tag: str, json_lines: str = "{}\n") -> str:
    return f"START_HEADER\n{json_lines}END_HEADER\nSTART_DATA\n{MASTER}\t{MASTER}\n{tag}\tPh 1 V\n"


def test_detect_names_the_first_line_of_an_unknown_file() -> None:
    head, _ = head_of("time,value\n1,2\n")
    with pytest.raises(FormatError, match=r"not a known device export .first line: 'time,value'"):
        detect(head)


def test_detect_reads_a_plain_file_up_to_its_tag_line_only() -> None:
    head, lines = head_of(HEAD + ROW0 + ROW1)
    assert detect(head) is FORMATS["mv"]
    assert lines.line_number == 2  # no data row was read to sniff


@pytest.mark.parametrize("json_lines", ["{}\n", '{\n"FileVersion": 3,\n"MasterType": "Tri"\n}\n'])
def test_detect_finds_the_tag_inside_a_block(json_lines: str) -> None:
    head, lines = head_of(block_head("MV_T302_V003", json_lines) + ROW0 + "END_DATA\n")
    assert detect(head) is FORMATS["mv"]
    assert lines.line_number == json_lines.count("\n") + 5  # through the label line


def test_a_block_file_is_mv_only_when_its_tag_is() -> None:
    # Before: any file starting with START_HEADER was taken for MV.
    head, _ = head_of(block_head("XY_T100_V001"))
    assert FORMATS["mv"].sniff(head) is False
    with pytest.raises(FormatError, match="unknown format tag 'XY_T100_V001' \\(known: MV_"):
        detect(head)


def test_a_block_file_without_a_tag_where_tags_stand_is_not_a_device_export() -> None:
    head, _ = head_of(block_head("hello"))
    with pytest.raises(FormatError, match=r"not a known device export .first line: 'START_HEADER'"):
        detect(head)


def test_a_plain_file_with_a_tag_shaped_unknown_tag_is_named_by_its_tag() -> None:
    head, _ = head_of(HEAD.replace("MV_T302_V002", "MV_T999_V001"))
    with pytest.raises(FormatError, match="unknown format tag 'MV_T999_V001'"):
        detect(head)


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("START_HEADER\n", IncompleteFileError, "START_HEADER without END_HEADER"),
        ('START_HEADER\n{"FileVersion": 3,\n', IncompleteFileError, "without END_HEADER"),
        ("START_HEADER\n" + "{}\n" * 101, FormatError, "in the first 100 lines"),
        ("START_HEADER\n{}\nEND_HEADER\nhello\n", FormatError, "not followed by START_DATA"),
        ("START_HEADER\n{}\nEND_HEADER\nSTART_DATA\n", FormatError, "cut short"),
    ],
)
def test_a_block_broken_before_its_tag_gets_the_block_error(
    text: str, error: type[FormatError], message: str
) -> None:
    # A block cut before its tag is still an upload in progress, not an unknown file.
    head, _ = head_of(text)
    with pytest.raises(error, match=message) as raised:
        detect(head)
    assert type(raised.value) is error


def test_the_sniffed_lines_are_counted_once_against_the_header_budget() -> None:
    row = "20/01/26 00:00:00\t230.1\n"
    text = block_head("MV_T302_V003") + row + "END_DATA\n"
    header_bytes = len(text) - len(row) - len("END_DATA\n")
    options = ParseOptions(max_header_bytes=header_bytes)
    device_file = open_stream(io.StringIO(text), options)
    assert device_file.header.model_tag == "MV_T302_V003"
    assert [len(batch.epochs) for batch in device_file.batches()] == [1]
    with pytest.raises(FormatError, match="POWERVIEW_MAX_HEADER_BYTES"):
        open_stream(io.StringIO(text), ParseOptions(max_header_bytes=header_bytes - 1))


def test_headers_only_parses_to_no_batches(tmp_path: Path) -> None:
    parsed = parse(tmp_path, HEAD)
    assert parsed.batch_sizes == []
    assert parsed.nonzero() == {}
    assert len(parsed.header.columns) == 2


# -- streaming -----------------------------------------------------------------


def test_batches_are_bounded_and_in_order(tmp_path: Path) -> None:
    export = Export(rows=10, block=False, tag="MV_T302_V002", step_s=60)
    parsed = parse(tmp_path, export.text(), batch_rows=3)
    assert parsed.batch_sizes == [3, 3, 3, 1]
    start = 1_768_867_200  # the factory's 20/01/26 00:00:00
    assert parsed.epochs == [start + 60 * i for i in range(10)]
    assert parsed.nonzero() == {"nb_rows": 10, "nb_valid_rows": 10}


def test_batch_size_defaults_to_the_options(tmp_path: Path) -> None:
    export = Export(rows=10, block=True, step_s=60)
    parsed = parse(tmp_path, export.text(), ParseOptions(batch_rows=4))
    assert parsed.batch_sizes == [4, 4, 2]


def test_fast_and_careful_rows_keep_their_order_across_batches(tmp_path: Path) -> None:
    rows = [
        "20/01/26 00:00:00\t1\t2\n",
        "20/01/26 00:01:00\t3,5\t4\n",  # decimal comma: the careful path
        "20/01/26 00:02:00\t5\t6\n",
        "20/01/26 00:03:00\tN/A\t8\n",
        "20/01/26 00:04:00\t9\t10\n",
    ]
    parsed = parse(tmp_path, HEAD + "".join(rows), batch_rows=2)
    assert parsed.batch_sizes == [2, 2, 1]
    assert parsed.rows == [
        (T0, ["1", "2"]),
        (T0 + 60, ["3.5", "4"]),
        (T0 + 120, ["5", "6"]),
        (T0 + 180, [None, "8"]),
        (T0 + 240, ["9", "10"]),
    ]


def test_open_stream_reads_a_text_stream() -> None:
    device_file = open_stream(io.StringIO(HEAD + ROW0 + ROW1), ParseOptions())
    assert device_file.header.model_tag == "MV_T302_V002"
    assert [b.epochs for b in device_file.batches()] == [[T0, T0 + 600]]


# -- the real samples ----------------------------------------------------------


@dataclass(frozen=True)
class SampleFacts:
    path: str
    model_tag: str
    layout: str
    phase: str
    master_sn: str
    width: int
    counts: dict[str, int]  # the non-zero ParseCounts
    first: int | None = None  # first and last epoch emitted
    last: int | None = None


# Counted with awk and `date -u -d`, and from the samples README.
SAMPLE_FACTS = [
    SampleFacts(
        "acme/campaign1/02001084/T302_251012_031720.tsv",
        "MV_T302_V002",
        "plain",
        "tri",
        "02001171",
        30,
        {"nb_rows": 143, "nb_valid_rows": 143},
        1_754_191_200,
        1_754_276_400,  # 03/08/25 03:20:00 .. 04/08/25 03:00:00
    ),
    SampleFacts(
        "acme/v003-mono/02001311/T302_260122_162658_UTC.tsv",
        "MV_T302_V003",
        "block",
        "mono",
        "02001311",
        6,
        {"nb_rows": 134, "nb_valid_rows": 134, "nb_duplicate_timestamps": 2, "nb_out_of_order": 16},
        1_768_983_324,
        1_769_094_600,
    ),
    SampleFacts(
        "acme/v003-tri/02000800/T302_260128_162130_UTC.tsv",
        "MV_T302_V003",
        "block",
        "tri",
        "02000800",
        6,
        {"nb_rows": 631, "nb_valid_rows": 631, "nb_duplicate_timestamps": 4, "nb_out_of_order": 2},
        1_768_922_611,
        1_769_613_000,
    ),
    SampleFacts(
        "acme/v003-tri/02000800/T302_260128_171459_UTC.tsv",
        "MV_T302_V003",
        "block",
        "tri",
        "02000800",
        6,
        {"nb_rows": 5, "nb_valid_rows": 5},
        1_769_613_600,
        1_769_616_000,
    ),
    SampleFacts(
        "acme/v003-tri/02000800/T302_260208_211459_UTC.tsv",
        "MV_T302_V003",
        "block",
        "tri",
        "02000800",
        12,
        {"nb_rows": 6, "nb_valid_rows": 6},
        1_770_577_800,
        1_770_580_800,
    ),
    SampleFacts(
        "acme/v002-header/02001315/T302_260909_031459_UTC.tsv",
        "MV_T302_V002",
        "block",
        "tri",
        "02001315",
        24,
        {"nb_rows": 62, "nb_valid_rows": 62},
        1_788_879_000,
        1_788_915_600,  # 08/09/26 14:50:00 .. 09/09/26 01:00:00
    ),
    SampleFacts(
        "acme/big/02001283/T302_02001283_T302_260108_214031.tsv",
        "MV_T302_V002",
        "plain",
        "mono",
        "02001283",
        6,
        {
            "nb_rows": 11293,
            "nb_valid_rows": 11293,
            "nb_duplicate_timestamps": 7,
            "nb_out_of_order": 1,
        },
        1_761_135_600,
        1_767_907_800,
    ),
    SampleFacts(
        "faulty/campaign/02001283/T202_251022_121951.tsv",
        "MV_T202_V002",
        "plain",
        "tri",
        "02001283",
        6,
        {"nb_rows": 21, "nb_valid_rows": 20, "nb_out_of_window": 1, "nb_duplicate_timestamps": 2},
        1_753_787_592,
        1_761_135_480,  # 29/07/25 11:13:12 .. 22/10/25 12:18:00
    ),
    SampleFacts(
        "faulty/campaign/02001283/T302_260109_133915.tsv",
        "MV_T302_V002",
        "plain",
        "tri",
        "02001283",
        6,
        {},
    ),
]


@pytest.mark.parametrize("facts", SAMPLE_FACTS, ids=lambda f: f.path.rsplit("/", 1)[-1])
def test_real_sample(samples: Path, facts: SampleFacts) -> None:
    path = samples / facts.path
    with open_device_file(path, ParseOptions()) as device_file:
        header = device_file.header
        encoder = BatchEncoder(series_for(header, "c1"))
        epochs: list[int] = []
        for batch in device_file.batches():
            encoder.encode(batch)
            epochs.extend(batch.epochs)
    assert header.model_tag == facts.model_tag
    assert header.layout == facts.layout
    assert header.phase == facts.phase
    assert header.master_sn == facts.master_sn
    assert len(header.columns) == facts.width
    counts = device_file.counts
    assert {k: v for k, v in counts.as_dict().items() if v} == facts.counts
    assert counts.nb_rows == counts.nb_valid_rows + counts.nb_rejected_rows
    assert encoder.points == facts.counts.get("nb_valid_rows", 0) * facts.width
    if facts.first is not None:
        assert (epochs[0], epochs[-1]) == (facts.first, facts.last)


def test_sample_v002_header_has_1488_points(samples: Path) -> None:
    path = samples / "acme/v002-header/02001315/T302_260909_031459_UTC.tsv"
    with open_device_file(path, ParseOptions()) as device_file:
        encoder = BatchEncoder(series_for(device_file.header, "c1"))
        text = "".join(encoder.encode(b) for b in device_file.batches())
        assert device_file.header.metadata["FileVersion"] == 2
        assert device_file.header.metadata["TimeZone"] == "CET-1CEST,M3.5.0,M10.5.0/3"
    assert encoder.points == 1488 == text.count("\n")
    assert "-0.0 " in text  # the file's -0.0 values are kept as written


def test_sample_slave_serials(samples: Path) -> None:
    path = samples / "acme/v003-tri/02000800/T302_260208_211459_UTC.tsv"
    with open_device_file(path, ParseOptions()) as device_file:
        columns = device_file.header.columns
    assert [c.serial for c in columns] == ["02000800"] * 6 + ["04001002"] * 6
    assert [c.name for c in columns[6:]] == [
        "minipince",
        "Voie2",
        "Voie3",
        "minipinc2",
        "Voie5",
        "Voie6",
    ]


def test_sample_empty_file_is_a_format_error(samples: Path) -> None:
    path = samples / "faulty/campaign/02001283/T302_260109_120045.tsv"
    assert path.stat().st_size == 0
    with pytest.raises(FormatError, match="empty"), open_device_file(path, ParseOptions()):
        pytest.fail("opened an empty file")


# -- counts ----------------------------------------------------------------------

REJECTING = {
    "nb_short_rows",
    "nb_long_rows",
    "nb_truncated_lines",
    "nb_out_of_window",
    "nb_undecodable_lines",
    "nb_invalid_timestamps",
}


@pytest.mark.parametrize("name", list(ParseCounts().as_dict()))
def test_rejected_rows_sum_exactly_the_rejecting_counters(name: str) -> None:
    # nb_rows == nb_valid_rows + nb_rejected_rows needs every way a counted row is
    # dropped in here, and nothing that keeps the row (invalid values, duplicates...).
    counts = ParseCounts(**{name: 1})
    assert counts.nb_rejected_rows == (1 if name in REJECTING else 0)


# -- bounded reading (issue 10): limits enforced while reading, never after -----------


class CountingBytes(io.BytesIO):
    """A binary stream that remembers the longest read it served."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.longest_read = 0

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        chunk = super().readline(size)
        self.longest_read = max(self.longest_read, len(chunk))
        return chunk


def lines_of(data: bytes, **limits: int) -> list[str]:
    from powerview.formats import BoundedLines

    return list(BoundedLines(io.BytesIO(data), ParseOptions(**limits)))


def test_a_line_at_the_limit_is_read_and_one_byte_more_is_refused() -> None:
    assert lines_of(b"a" * 9 + b"\n", max_line_bytes=10) == ["a" * 9 + "\n"]
    with pytest.raises(FormatError) as error:
        lines_of(b"ok\n" + b"a" * 10 + b"\n", max_line_bytes=10)
    assert str(error.value) == "line 2 is longer than 10 bytes (POWERVIEW_MAX_LINE_BYTES)"


def test_a_huge_line_is_refused_after_reading_only_the_limit() -> None:
    from powerview.formats import BoundedLines

    stream = CountingBytes(b"\x00" * 5_000_000 + b"\n")
    with pytest.raises(FormatError, match="line 1 is longer than 1000 bytes"):
        list(BoundedLines(stream, ParseOptions(max_line_bytes=1000)))
    assert stream.longest_read == 1001
    assert stream.tell() == 1001


def test_the_header_lines_share_one_budget_and_rows_do_not_count_in_it() -> None:
    from powerview.formats import BoundedLines

    reader = BoundedLines(io.BytesIO(b"12345\n12345\n" + b"9" * 50 + b"\n"), ParseOptions(
        max_header_bytes=12, max_line_bytes=100))  # fmt: skip
    assert [reader.readline(), reader.readline()] == ["12345\n", "12345\n"]
    assert list(reader) == ["9" * 50 + "\n"]
    reader = BoundedLines(io.BytesIO(b"12345\n123456\n"), ParseOptions(max_header_bytes=12))
    assert reader.readline() == "12345\n"
    with pytest.raises(FormatError) as error:
        reader.readline()
    assert str(error.value) == (
        "the header is longer than 12 bytes at line 2 (POWERVIEW_MAX_HEADER_BYTES)"
    )


def test_the_reader_stops_at_the_file_limit_even_when_the_file_grew() -> None:
    # The size checked before reading said the file was small; it is not any more.
    with pytest.raises(FormatError) as error:
        lines_of(b"0123456789\n" * 10, max_file_bytes=50)
    assert str(error.value) == (
        "the file grew past 50 bytes while being read (POWERVIEW_MAX_FILE_BYTES)"
    )
    assert lines_of(b"0123456789\n" * 5, max_file_bytes=55) == ["0123456789\n"] * 5


def test_line_ends_are_normalised_and_a_leading_bom_dropped() -> None:
    data = b"\xef\xbb\xbfone\r\ntwo\rthree\nfour"
    assert lines_of(data) == ["one\n", "two\n", "three\n", "four"]


def test_undecodable_bytes_survive_as_surrogates() -> None:
    assert lines_of(b"caf\xe9\n") == ["caf\udce9\n"]


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    content = block(ROW0 + ROW1)
    with pytest.raises(FormatError) as error:
        parse(tmp_path, content, ParseOptions(max_file_bytes=len(content) - 1))
    assert str(error.value) == (
        f"the file is {len(content)} bytes, more than {len(content) - 1} (POWERVIEW_MAX_FILE_BYTES)"
    )
    assert parse(tmp_path, content, ParseOptions(max_file_bytes=len(content))).epochs == [
        T0,
        T0 + 600,
    ]


def test_a_long_data_line_fails_the_file_with_its_number(tmp_path: Path) -> None:
    content = block(ROW0 + "20/01/26 00:10:00\t" + "1" * 200 + "\t2\n" + ROW2)
    with pytest.raises(FormatError) as error:
        parse(tmp_path, content, ParseOptions(max_line_bytes=100))
    # START_HEADER, JSON, END_HEADER, START_DATA, serials, labels, ROW0, then the long one.
    assert str(error.value) == "line 8 is longer than 100 bytes (POWERVIEW_MAX_LINE_BYTES)"


def test_a_huge_json_header_is_refused_at_the_header_limit(tmp_path: Path) -> None:
    metadata = {f"k{n}": n for n in range(100_000)}
    content = block(ROW0, metadata=metadata)
    with pytest.raises(FormatError, match=r"the header is longer than 65536 bytes at line 2 "):
        parse(tmp_path, content, ParseOptions(max_header_bytes=65536))


def test_too_many_columns_are_refused_from_the_serial_line(tmp_path: Path) -> None:
    def wide(columns: int) -> str:
        serials = "\t".join([MASTER] * (columns + 1))
        labels = "\t".join(["MV_T302_V002"] + [f"C{n} W" for n in range(columns)])
        return f"{serials}\n{labels}\n20/01/26 00:00:00" + "\t1" * columns + "\n"

    assert len(parse(tmp_path, wide(40), ParseOptions(max_columns=40)).header.columns) == 40
    with pytest.raises(FormatError) as error:
        parse(tmp_path, wide(41), ParseOptions(max_columns=40))
    assert str(error.value) == "the header has 41 columns, more than 40 (POWERVIEW_MAX_COLUMNS)"


def test_the_default_limits_hold_the_widest_real_file_with_room(samples: Path) -> None:
    # tests/samples/README.md: the widest real export has 31 columns (30 channels).
    path = samples / "acme/campaign1/02001084/T302_251012_031720.tsv"
    longest = max(len(line) for line in path.read_bytes().splitlines(keepends=True))
    defaults = ParseOptions()
    with open_device_file(path, defaults) as device_file:
        assert len(device_file.header.columns) == 30
        assert sum(len(b.epochs) for b in device_file.batches()) > 0
    assert longest * 16 < defaults.max_line_bytes
    assert defaults.max_columns > 30 * 16


def test_the_limits_come_from_the_settings_and_bad_ones_are_refused() -> None:
    from powerview import settings as config
    from powerview.exceptions import ConfigError
    from powerview.ingest import parse_options

    settings = config.load(
        max_line_bytes=2048, max_header_bytes=4096, max_columns=64, max_file_bytes=1_000_000
    )
    options = parse_options(settings)
    limits = (
        options.max_line_bytes,
        options.max_header_bytes,
        options.max_columns,
        options.max_file_bytes,
    )
    assert limits == (2048, 4096, 64, 1_000_000)
    with pytest.raises(ConfigError, match="POWERVIEW_MAX_COLUMNS"):
        config.load(max_columns=0)
    with pytest.raises(ConfigError, match="POWERVIEW_MAX_LINE_BYTES"):
        config.load(max_line_bytes=10)
