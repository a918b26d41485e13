"""Outcome decisions of the ingest pipeline that need no server (dry runs, NullWriter)."""

from __future__ import annotations

import os
import shutil
import time
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


def _cut_upload(samples: Path, tmp_path: Path) -> Path:
    """A real V003 block export cut in the middle of a row: no END_DATA."""
    device = tmp_path / "acme" / "c1" / "02000800"
    device.mkdir(parents=True)
    whole = (samples / "acme/v003-tri/02000800/T302_260128_171459_UTC.tsv").read_bytes()
    path = device / "cut.tsv"
    path.write_bytes(whole[: whole.index(b"END_DATA") - 5])  # inside the last row
    return path


def test_a_cut_block_file_waits_its_grace_period_in_place(samples: Path, tmp_path: Path) -> None:
    path = _cut_upload(samples, tmp_path)
    options = IngestOptions(data_root=tmp_path, incomplete_grace_s=600)

    report = ingest_file(path, NullWriter(), options)

    assert (report.status, report.deferred_by) == ("deferred", "incomplete")
    assert "incomplete file" in (report.error or "")
    assert "TSV_INCOMPLETE_GRACE_S=600" in (report.error or "")
    assert report.moved_to is None
    assert sorted(p.name for p in path.parent.iterdir()) == ["cut.tsv"]


def test_a_cut_block_file_unchanged_for_its_grace_period_goes_to_error_with_a_reason(
    samples: Path, tmp_path: Path
) -> None:
    path = _cut_upload(samples, tmp_path)
    long_ago = time.time() - 601
    os.utime(path, (long_ago, long_ago))
    options = IngestOptions(data_root=tmp_path, incomplete_grace_s=600)

    report = ingest_file(path, NullWriter(), options)

    assert report.status == "error"
    assert "unchanged for 600 s (TSV_INCOMPLETE_GRACE_S)" in (report.error or "")
    assert report.moved_to == str(path.parent / "error" / "cut.tsv")
    note = path.parent / "error" / "cut.tsv.reason.txt"
    assert report.reason_file == str(note)
    assert "Upload the whole file again" in note.read_text()


def test_without_a_grace_period_a_cut_block_file_goes_to_error_at_once(
    samples: Path, tmp_path: Path
) -> None:
    path = _cut_upload(samples, tmp_path)
    report = ingest_file(path, NullWriter(), IngestOptions(data_root=tmp_path))
    assert report.status == "error"
    assert "incomplete file" in (report.error or "")
