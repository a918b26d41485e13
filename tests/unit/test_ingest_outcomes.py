"""Outcome decisions of the ingest pipeline that need no server (dry runs, NullWriter)."""

from __future__ import annotations

import shutil
from pathlib import Path

from powerview.influx import NullWriter
from powerview.ingest import IngestOptions, ingest_file
from powerview.lineprotocol import string_field


def test_a_file_already_in_parsed_is_skipped_and_left_alone(samples: Path, tmp_path: Path) -> None:
    parsed = tmp_path / "acme" / "c1" / "02000800" / "parsed"
    parsed.mkdir(parents=True)
    path = parsed / "T302_260128_171459_UTC.tsv"
    shutil.copy(samples / "acme/v003-tri/02000800/T302_260128_171459_UTC.tsv", path)

    report = ingest_file(path, NullWriter(), IngestOptions(data_root=tmp_path))

    assert report.status == "skipped"
    assert "already processed" in (report.error or "")
    assert path.exists()
    assert not (parsed / "parsed").exists()


def test_a_temporary_upload_name_is_skipped(samples: Path, tmp_path: Path) -> None:
    device = tmp_path / "acme" / "c1" / "02000800"
    device.mkdir(parents=True)
    path = device / "T302_260128_171459_UTC.tsv.filepart"
    shutil.copy(samples / "acme/v003-tri/02000800/T302_260128_171459_UTC.tsv", path)

    report = ingest_file(path, NullWriter(), IngestOptions(data_root=tmp_path))

    assert report.status == "skipped"
    assert path.exists()


def test_string_fields_carry_no_line_break() -> None:
    assert string_field('bad "file"\nsecond line') == '"bad \\"file\\" second line"'
