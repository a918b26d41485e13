"""What a client sees of its uploads' outcomes: `parsed/` and `error/` readable by the
device folder's group and writable by PowerView only, a reason file beside each
rejected file (written without following anything a client planted), and an
upload a crashed run had already moved found again for its report.

Run as root (as the whole suite is): the device folder gets a group PowerView's
process is not in, as a company's folder has under OpenSSH.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from powerview.client_notes import advice, reason_note
from powerview.influx import NullWriter
from powerview.ingest import IngestOptions, ingest_file
from powerview.upload_file import find_moved, open_upload
from tests.factories import Export

SN = "02009999"
CLIENT_UID, CLIENT_GID = 54_321, 54_322  # a company's upload user, not ours


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """acme/c1/<SN>, owned by the client's uid and group, as its sftp mkdir leaves it."""
    folder = tmp_path / "data" / "acme" / "c1" / SN
    folder.mkdir(parents=True)
    os.chown(folder, CLIENT_UID, CLIENT_GID)
    return folder


def data_root(device: Path) -> Path:
    return device.parents[2]


def mode_of(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def reject(device: Path, name: str = "bad.tsv", content: bytes = b"not an export\n") -> Path:
    """Where `content` uploaded as `name` was set aside."""
    (device / name).write_bytes(content)
    report = ingest_file(device / name, NullWriter(), IngestOptions(data_root=data_root(device)))
    assert report.status == "error", report
    assert report.moved_to is not None
    return Path(report.moved_to)


def test_outcome_folders_are_ours_in_the_device_folder_s_group_mode_0750(device: Path) -> None:
    Export(rows=2).write(device / "good.tsv")
    options = IngestOptions(data_root=data_root(device))
    assert ingest_file(device / "good.tsv", NullWriter(), options).status == "success"
    reject(device)
    for outcome in ("parsed", "error"):
        assert mode_of(device / outcome) == (os.geteuid(), CLIENT_GID, 0o750), outcome


def test_an_older_group_writable_outcome_folder_is_brought_to_the_new_mode(device: Path) -> None:
    old = device / "error"
    old.mkdir(mode=0o770)  # what the unit's umask 0007 made of 0o777 before
    os.chmod(old, 0o770)  # noqa: S103 (the old, too open mode under test)
    reject(device)
    assert mode_of(old) == (os.geteuid(), CLIENT_GID, 0o750)


def test_an_outcome_folder_the_client_made_first_is_taken_over(device: Path) -> None:
    made = device / "error"
    made.mkdir(mode=0o777)
    os.chown(made, CLIENT_UID, CLIENT_GID)
    os.chmod(made, 0o777)  # noqa: S103 (a client's folder, open to all)
    reject(device)
    assert mode_of(made) == (os.geteuid(), CLIENT_GID, 0o750)


def test_a_reason_file_beside_the_rejected_file_readable_by_the_client(device: Path) -> None:
    (device / "bad.tsv").write_bytes(b"not an export\n")
    report = ingest_file(
        device / "bad.tsv", NullWriter(), IngestOptions(data_root=data_root(device))
    )
    note = device / "error" / "bad.tsv.reason.txt"
    assert report.reason_file == str(note)
    assert mode_of(note) == (os.geteuid(), CLIENT_GID, 0o640)
    text = note.read_text()
    assert text.startswith("PowerView did not ingest bad.tsv (")
    assert f"Why: {report.error}\n" in text
    assert "What to do: " in text
    assert sorted(os.listdir(device / "error")) == ["bad.tsv", "bad.tsv.reason.txt"]


def test_a_link_planted_as_the_reason_file_is_replaced_not_written_through(
    device: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    (device / "error").mkdir()
    os.symlink(victim, device / "error" / "bad.tsv.reason.txt")
    reject(device)
    assert victim.read_text() == "untouched\n"
    note = device / "error" / "bad.tsv.reason.txt"
    assert not note.is_symlink()
    assert note.read_text().startswith("PowerView did not ingest bad.tsv")


def test_a_numbered_rejected_file_gets_its_own_reason_file(device: Path) -> None:
    reject(device)
    second = device / "bad.tsv"
    second.write_bytes(b"\x00\x01 binary")
    report = ingest_file(second, NullWriter(), IngestOptions(data_root=data_root(device)))
    assert report.moved_to == str(device / "error" / "bad.1.tsv")
    assert report.reason_file == str(device / "error" / "bad.1.tsv.reason.txt")
    assert sorted(os.listdir(device / "error")) == [
        "bad.1.tsv",
        "bad.1.tsv.reason.txt",
        "bad.tsv",
        "bad.tsv.reason.txt",
    ]


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("incomplete file: no END_DATA at its end", "whole file again"),
        ("file name is not valid UTF-8", "Rename the file"),
        ("line 3 is longer than 65536 bytes (POWERVIEW_MAX_LINE_BYTES)", "Split it"),
        ("unknown format tag 'XX'", "unmodified export"),
    ],
)
def test_the_advice_fits_the_reason(reason: str, words: str) -> None:
    assert words in advice(reason)
    assert words in reason_note("x.tsv", reason)


def test_find_moved_finds_the_file_a_crashed_run_moved_after_it_was_queued(device: Path) -> None:
    root = data_root(device)
    queued_at = time.time() - 1.0
    Export(rows=2).write(device / "a.tsv")
    with open_upload(root, device / "a.tsv") as upload:
        upload.move_to("parsed")
    moved = find_moved(root, device / "a.tsv", since=queued_at)
    assert moved is not None
    assert (moved.outcome, moved.path, moved.names) == (
        "parsed",
        device / "parsed" / "a.tsv",
        ("acme", "c1", SN),
    )
    assert moved.note is None


def test_find_moved_ignores_an_earlier_upload_of_the_same_name(device: Path) -> None:
    root = data_root(device)
    Export(rows=2).write(device / "a.tsv")
    with open_upload(root, device / "a.tsv") as upload:
        upload.move_to("parsed")
    later = (device / "parsed" / "a.tsv").stat().st_ctime + 5.0
    assert find_moved(root, device / "a.tsv", since=later) is None


def test_find_moved_takes_the_newest_numbered_name_with_its_reason_file(device: Path) -> None:
    root = data_root(device)
    first = reject(device)
    time.sleep(0.05)  # a later link, with a later ctime (the clock ticks every few ms)
    moved_second = reject(device, content=b"\x00 again")
    assert moved_second.name == "bad.1.tsv"
    assert moved_second.stat().st_ctime > first.stat().st_ctime
    found = find_moved(root, device / "bad.tsv", since=first.stat().st_ctime)
    assert found is not None
    assert found.path == moved_second
    assert found.note == device / "error" / "bad.1.tsv.reason.txt"


def test_find_moved_never_follows_a_linked_outcome_folder(device: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.tsv").write_text("someone else's\n")
    os.symlink(elsewhere, device / "parsed")
    assert find_moved(data_root(device), device / "a.tsv", since=0.0) is None


def test_a_client_file_named_like_a_reason_file_is_never_taken_for_an_upload(
    device: Path,
) -> None:
    """`.txt` is not a device export: neither the scan nor an event queues it."""
    from powerview import events

    planted = device / "bad.tsv.reason.txt"
    planted.write_text("PowerView did not ingest bad.tsv: fake\n")
    decisions: list[events.Decision] = []
    events.scan(data_root(device), decisions.append)
    assert [d.kind for d in decisions] == ["provision"]  # the campaign folder only
    assert events.decide_path("file", str(planted), data_root(device)).ignored
    assert planted.read_text() == "PowerView did not ingest bad.tsv: fake\n"
