"""Golden cases, one folder each under testdata/formats/<format>/ (as Telegraf's parser tests).

`<format>` is a name in `FORMATS`, or `none` for files no format reads. Each
`<case>/` holds `input.tsv` and either
- `expected.lp`: the exact line protocol `powerview parse` prints for it (campaign
  `c1`, default ParseOptions), plus `expected.counts.json`: the non-zero ParseCounts;
- or `expected.err`: a substring of the FormatError message.

A new case needs no code: add a folder. Expected outputs are written by hand from
ARCHITECTURE.md (schema, tag order, epochs from `date -u -d ... +%s`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powerview.exceptions import FormatError
from powerview.formats import FORMATS, ParseOptions, open_device_file
from powerview.ingest import encode_file

TESTDATA = Path(__file__).parent / "testdata" / "formats"
NO_FORMAT = "none"
CASES = sorted(case for group in TESTDATA.iterdir() if group.is_dir() for case in group.iterdir())


def case_id(case: Path) -> str:
    return f"{case.parent.name}/{case.name}"


def parse_to_lp(path: Path) -> tuple[str, dict[str, int], int, str]:
    """What `powerview parse --to lp` prints and `ingest` writes (one `encode_file` for
    all three): the text, the non-zero counts, the points, and the model tag read."""
    with open_device_file(path, ParseOptions()) as device_file:
        encoded = encode_file(device_file, "c1")
        text = "".join(lines for _batch, lines in encoded)
    counts = {key: value for key, value in device_file.counts.as_dict().items() if value}
    return text, counts, encoded.points, device_file.header.model_tag


def test_cases_are_grouped_by_a_registered_format() -> None:
    groups = {p.name for p in TESTDATA.iterdir() if p.is_dir()}
    assert groups == set(FORMATS) | {NO_FORMAT}  # every format has its cases
    assert len(CASES) >= 16
    for case in CASES:
        assert case.is_dir(), case_id(case)


def test_every_case_has_one_expectation() -> None:
    for case in CASES:
        assert (case / "input.tsv").is_file(), case_id(case)
        has_lp = (case / "expected.lp").is_file()
        has_err = (case / "expected.err").is_file()
        assert has_lp != has_err, f"{case_id(case)}: needs expected.lp or expected.err, not both"
        if has_lp:
            assert case.parent.name != NO_FORMAT, f"{case_id(case)}: no format, no output"
            assert (case / "expected.counts.json").is_file(), case_id(case)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_golden(case: Path) -> None:
    source = case / "input.tsv"
    if (case / "expected.err").is_file():
        expected_error = (case / "expected.err").read_text().rstrip("\n")
        assert expected_error
        with pytest.raises(FormatError) as raised:
            parse_to_lp(source)
        assert expected_error in str(raised.value)
        return
    text, counts, points, tag = parse_to_lp(source)
    assert tag in FORMATS[case.parent.name].model_tags  # read by the format it is filed under
    assert text == (case / "expected.lp").read_text()
    assert counts == json.loads((case / "expected.counts.json").read_text())
    assert points == text.count("\n")


def test_crlf_and_bom_give_the_same_output_as_lf() -> None:
    crlf = TESTDATA / "mv" / "crlf_bom" / "input.tsv"
    lf = TESTDATA / "mv" / "v003_block_mono" / "input.tsv"
    assert crlf.read_bytes().startswith(b"\xef\xbb\xbfSTART_HEADER\r\n")
    assert crlf.read_bytes() == b"\xef\xbb\xbf" + lf.read_bytes().replace(b"\n", b"\r\n")
    assert parse_to_lp(crlf) == parse_to_lp(lf)
