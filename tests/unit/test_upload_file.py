"""Opening an upload once without following links, and moving it by descriptor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from powerview.exceptions import NameRuleError, UnsafeUploadError
from powerview.influx import NullWriter
from powerview.ingest import IngestOptions, ingest_file
from powerview.queue import JobQueue, job_key, key_subject
from powerview.upload_file import display, name_problem, open_upload
from tests.factories import Export

SN = "02009999"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Two companies: acme with one device folder, globex with a file of its own."""
    data = tmp_path / "data"
    (data / "acme" / "c1" / SN).mkdir(parents=True)
    Export(rows=3).write(data / "globex" / "g1" / SN / "secret.tsv")
    return data


def secret(root: Path) -> Path:
    return root / "globex" / "g1" / SN / "secret.tsv"


def test_display_escapes_undecodable_bytes_and_control_characters() -> None:
    assert display(b"caf\xe9\n\t.tsv") == "caf\\xe9\\n\\t.tsv"
    assert display(os.fsdecode(b"\xff\xfe.tsv")) == "\\xff\\xfe.tsv"
    assert display("café.tsv") == "café.tsv"
    assert display("\x1b[31mred") == "\\x1b[31mred"


@pytest.mark.parametrize(
    ("name", "problem"),
    [(b"\xff.tsv", "not valid UTF-8"), (b"a\nb.tsv", "control"), (b"a\tb.tsv", "control")],
)
def test_name_problem(name: bytes, problem: str) -> None:
    assert problem in (name_problem(name) or "")
    assert name_problem("café.tsv".encode()) is None


def test_names_come_from_the_walk_and_content_from_the_descriptor(root: Path) -> None:
    path = Export(rows=2).write(root / "acme" / "c1" / SN / "a.tsv")
    with open_upload(root, path) as upload:
        assert upload.checked_names() == ("acme", "c1", SN)
        os.unlink(path)  # the name goes; what was opened is still read
        with upload.binary() as raw:
            assert raw.read().startswith(b"START_HEADER")


@pytest.mark.parametrize("level", [1, 2, 3])
def test_a_symlinked_folder_at_any_level_is_refused(root: Path, level: int) -> None:
    target = root / "globex" / "g1" / SN
    parts = ["acme", "c1", SN]
    link = root.joinpath(*parts[:level])
    if level == 1:
        os.rename(link, root / "acme-old")
        os.symlink("globex", link)
    else:
        os.rename(link, link.with_name("moved"))
        os.symlink(os.path.relpath(target.parents[3 - level], link.parent), link)
    with pytest.raises(UnsafeUploadError, match="symbolic link"):
        open_upload(root, root.joinpath(*parts, "secret.tsv"))


def test_a_symlinked_file_is_refused(root: Path) -> None:
    link = root / "acme" / "c1" / SN / "x.tsv"
    os.symlink(os.path.relpath(secret(root), link.parent), link)
    with pytest.raises(UnsafeUploadError, match="symbolic link"):
        open_upload(root, link)


def test_a_fifo_is_refused_without_blocking(root: Path) -> None:
    fifo = root / "acme" / "c1" / SN / "x.tsv"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeUploadError, match="not a regular file"):
        open_upload(root, fifo)


def test_a_path_at_the_wrong_depth_is_a_name_rule_error(root: Path) -> None:
    with pytest.raises(NameRuleError):
        open_upload(root, root / "acme" / "c1" / "x.tsv")


def test_move_links_the_opened_file_even_if_its_name_was_swapped(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    path = device / "a.tsv"
    path.write_bytes(b"acme's own data\n")
    with open_upload(root, path) as upload:
        os.rename(path, device / "aside.tsv")
        os.symlink(os.path.relpath(secret(root), device), path)  # the swap, after the open
        moved = upload.move_to("parsed")
    assert moved == device / "parsed" / "a.tsv"
    assert moved.read_bytes() == b"acme's own data\n"
    assert not moved.is_symlink()
    assert path.is_symlink()  # the client's link is left, not unlinked as if it were the file


@pytest.mark.parametrize("outcome", ["parsed", "error"])
def test_a_symlinked_outcome_folder_is_refused_and_nothing_lands_there(
    root: Path, outcome: str
) -> None:
    device = root / "acme" / "c1" / SN
    elsewhere = root / "globex" / "g1" / SN
    os.symlink(os.path.relpath(elsewhere, device), device / outcome)
    before = sorted(os.listdir(elsewhere))
    path = Export(rows=2).write(device / "a.tsv")
    with open_upload(root, path) as upload, pytest.raises(UnsafeUploadError):
        upload.move_to(outcome)  # type: ignore[arg-type]
    assert sorted(os.listdir(elsewhere)) == before
    assert path.exists()


def test_a_symlinked_parsed_folder_sends_the_file_to_error_before_any_write(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    os.symlink(os.path.relpath(root / "globex" / "g1" / SN, device), device / "parsed")
    path = Export(rows=2).write(device / "a.tsv")
    writer = NullWriter()
    report = ingest_file(path, writer, IngestOptions(data_root=root))
    assert report.status == "error"
    assert "parsed/" in (report.error or "")
    assert "symbolic link" in (report.error or "")
    assert writer.bytes == 0
    assert (device / "error" / "a.tsv").exists()


def test_a_hard_linked_upload_is_refused_and_the_other_name_is_untouched(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    other = Export(rows=2).write(device / "other.tsv")
    path = device / "a.tsv"
    os.link(other, path)
    content = other.read_bytes()
    report = ingest_file(path, NullWriter(), IngestOptions(data_root=root))
    assert report.status == "error"
    assert "hard-linked" in (report.error or "")
    assert (device / "error" / "a.tsv").exists()
    assert other.read_bytes() == content


def test_an_interrupted_move_is_still_finished_not_taken_for_a_hard_link(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    path = Export(rows=2).write(device / "a.tsv")
    (device / "parsed").mkdir()
    os.link(path, device / "parsed" / "a.tsv")  # the crash came between link and unlink
    report = ingest_file(path, NullWriter(), IngestOptions(data_root=root))
    assert report.status == "success"
    assert "interrupted" in report.warnings[0]
    assert not path.exists()


def test_a_file_name_that_is_not_utf8_is_set_aside_with_the_reason(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    raw = os.path.join(os.fsencode(device), b"\xff\xfe.tsv")
    Export(rows=2).write(Path(os.fsdecode(raw)))
    report = ingest_file(Path(os.fsdecode(raw)), NullWriter(), IngestOptions(data_root=root))
    assert report.status == "error"
    assert report.error == "file name is not valid UTF-8"
    assert report.file_name == "\\xff\\xfe.tsv"
    assert os.path.exists(os.path.join(os.fsencode(device), b"error", b"\xff\xfe.tsv"))
    report.path.encode("utf-8")  # printable in reports, logs and InfluxDB


def test_queue_keys_carry_any_bytes_losslessly(tmp_path: Path) -> None:
    odd = os.fsdecode(b"/data/acme/c1/02009999/\xff\n.tsv")
    assert job_key("ingest", odd) != job_key("ingest", "/data/acme/c1/02009999/\\xff\\n.tsv")
    assert key_subject(job_key("ingest", odd)) == "/data/acme/c1/02009999/\\xff\n.tsv"
    queue = JobQueue(tmp_path / "q.sqlite3")
    try:
        assert queue.enqueue("ingest", odd, {"path": odd}, source=os.fsdecode(b"sftpgo:\xff"))
        job = queue.get("ingest", odd)
        assert job is not None
        assert job.payload["path"] == odd
        assert "\\xff" in job.subject
    finally:
        queue.close()


def test_a_255_byte_name_taken_in_parsed_gets_a_shortened_free_name(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    name = "x" * 251 + ".tsv"
    (device / "parsed").mkdir()
    (device / "parsed" / name).write_bytes(b"an earlier file\n")
    path = Export(rows=2).write(device / name)
    with open_upload(root, path) as upload:
        moved = upload.move_to("parsed")
    assert len(moved.name) == 255
    assert moved.name.endswith(".1.tsv")
    assert (device / "parsed" / name).read_bytes() == b"an earlier file\n"


def test_an_interrupted_move_of_an_odd_name_to_error_is_finished_once(root: Path) -> None:
    device = root / "acme" / "c1" / SN
    name = os.fsdecode(b"\xff.tsv")
    path = Export(rows=2).write(device / name)
    (device / "error").mkdir()
    os.link(path, device / "error" / name)  # the crash came between link and unlink
    report = ingest_file(path, NullWriter(), IngestOptions(data_root=root))
    assert report.status == "error"
    assert os.listdir(os.fsencode(device / "error")) == [b"\xff.tsv"]
    assert not os.path.lexists(path)
