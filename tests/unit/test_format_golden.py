"""Golden cases, one folder each under testdata/formats/ (as Telegraf's parser tests).

Each `<case>/` holds `input.tsv` and either
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
from powerview.formats import ParseOptions, open_device_file
from powerview.ingest import encode_file

TESTDATA = Path(__file__).parent / "testdata" / "formats"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())


def parse_to_lp(path: Path) -> tuple[str, dict[str, int], int]:
    """What `powerview parse --to lp` prints and `ingest` writes: the text, the non-zero
    counts, the points (one `encode_file` for all three)."""
    with open_device_file(path, ParseOptions()) as device_file:
        encoded = encode_file(device_file, "c1")
        text = "".join(lines for _batch, lines in encoded)
    counts = {key: value for key, value in device_file.counts.as_dict().items() if value}
    return text, counts, encoded.points


def test_every_case_has_one_expectation() -> None:
    assert len(CASES) >= 15
    for case in CASES:
        assert (case / "input.tsv").is_file(), case.name
        has_lp = (case / "expected.lp").is_file()
        has_err = (case / "expected.err").is_file()
        assert has_lp != has_err, f"{case.name}: needs expected.lp or expected.err, not both"
        if has_lp:
            assert (case / "expected.counts.json").is_file(), case.name


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden(case: Path) -> None:
    source = case / "input.tsv"
    if (case / "expected.err").is_file():
        expected_error = (case / "expected.err").read_text().rstrip("\n")
        assert expected_error
        with pytest.raises(FormatError) as raised:
            parse_to_lp(source)
        assert expected_error in str(raised.value)
        return
    text, counts, points = parse_to_lp(source)
    assert text == (case / "expected.lp").read_text()
    assert counts == json.loads((case / "expected.counts.json").read_text())
    assert points == text.count("\n")


def test_crlf_and_bom_give_the_same_output_as_lf() -> None:
    crlf = TESTDATA / "crlf_bom" / "input.tsv"
    lf = TESTDATA / "v003_block_mono" / "input.tsv"
    assert crlf.read_bytes().startswith(b"\xef\xbb\xbfSTART_HEADER\r\n")
    assert crlf.read_bytes() == b"\xef\xbb\xbf" + lf.read_bytes().replace(b"\n", b"\r\n")
    assert parse_to_lp(crlf) == parse_to_lp(lf)
