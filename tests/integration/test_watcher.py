"""The inotify watcher on a real data tree: new folders, writes, both kinds of rename,
pipelined uploads, outcome folders, queue overflow; and `powerview watch` itself.

The watcher only decides (duplicates are expected: the queue deduplicates), so
the checks are about the set of non-ignored decisions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from inotify_simple import Event
from inotify_simple import flags as F

from powerview import events
from powerview.events import Decision
from tests.integration.helpers_events import background, make_site, wait_for

SN = "02001084"
MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")


class Watch:
    """A TreeWatcher on `root` and what it decided."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.decisions: list[Decision] = []
        self.watcher = events.TreeWatcher(root, self.decisions.append)

    def start(self) -> None:
        self.watcher.start()

    def pump(self, until: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
        """Handle events until `until()` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or until}: {self.summary()}")
            self.watcher.poll(timeout_ms=50)

    def drain(self, quiet_s: float = 0.2) -> None:
        """Handle events until none arrive for `quiet_s` seconds."""
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < quiet_until:
            if self.watcher.poll(timeout_ms=50):
                quiet_until = time.monotonic() + quiet_s

    def ingested(self) -> set[str]:
        return {d.payload["path"] for d in self.decisions if d.kind == "ingest"}

    def provisioned(self) -> set[str]:
        return {d.subject for d in self.decisions if d.kind == "provision"}

    def summary(self) -> str:
        return f"ingest {sorted(self.ingested())}, provision {sorted(self.provisioned())}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "acme" / "c1" / SN).mkdir(parents=True)
    return data


@pytest.fixture
def watch(root: Path) -> Iterator[Watch]:
    w = Watch(root)
    w.start()
    yield w
    w.watcher.close()


def write(path: Path, text: str = "data\n") -> Path:
    with path.open("w") as out:  # open, write, close: CREATE, MODIFY, CLOSE_WRITE
        out.write(text)
    return path


def test_start_reports_what_is_already_there(root: Path) -> None:
    existing = write(root / "acme" / "c1" / SN / "old.tsv")
    w = Watch(root)
    try:
        w.start()
        assert w.ingested() == {str(existing)}
        assert w.provisioned() == {"acme/c1"}
    finally:
        w.watcher.close()


def test_a_new_campaign_folder_is_a_provision_decision(watch: Watch, root: Path) -> None:
    (root / "globex").mkdir()
    (root / "globex" / "g1").mkdir()
    (root / "acme" / "c2").mkdir()
    watch.pump(lambda: watch.provisioned() >= {"globex/g1", "acme/c2"}, what="two campaigns")
    (root / "acme" / "c2" / SN).mkdir()  # device folders and companies decide nothing
    watch.drain()
    assert watch.provisioned() == {"acme/c1", "globex/g1", "acme/c2"}
    assert watch.ingested() == set()


def test_written_files_are_ingest_decisions(watch: Watch, root: Path) -> None:
    folder = root / "acme" / "c1" / SN
    paths = {str(write(folder / f"f{i}.tsv")) for i in range(5)}
    write(folder / "notes.txt")
    watch.pump(lambda: watch.ingested() >= paths, what="five files")
    watch.drain()
    assert watch.ingested() == paths
    decided = [d for d in watch.decisions if d.kind == "ingest"]
    assert {d.payload["campaign"] for d in decided} == {"c1"}
    assert {d.payload["device_sn"] for d in decided} == {SN}


def test_an_overwrite_is_decided_again(watch: Watch, root: Path) -> None:
    path = write(root / "acme" / "c1" / SN / "x.tsv")
    watch.pump(lambda: str(path) in watch.ingested())
    watch.decisions.clear()
    write(path, "newer\n")
    watch.pump(lambda: str(path) in watch.ingested(), what="the overwrite")


def test_posix_rename_decides_the_final_name_only(watch: Watch, root: Path) -> None:
    folder = root / "acme" / "c1" / SN
    temp = write(folder / "x.tsv.filepart")
    os.rename(temp, folder / "x.tsv")  # MOVED_FROM / MOVED_TO
    watch.pump(lambda: str(folder / "x.tsv") in watch.ingested(), what="the MOVED_TO")
    watch.drain()
    assert watch.ingested() == {str(folder / "x.tsv")}


def test_link_then_unlink_rename_decides_the_final_name(watch: Watch, root: Path) -> None:
    """OpenSSH's plain SFTP rename: link() + unlink(): only CREATE for the final name."""
    folder = root / "acme" / "c1" / SN
    temp = write(folder / "y.tsv.filepart")
    watch.drain()  # the temporary name's CREATE and CLOSE_WRITE are behind us
    assert watch.ingested() == set()
    os.link(temp, folder / "y.tsv")
    os.unlink(temp)
    watch.pump(lambda: str(folder / "y.tsv") in watch.ingested(), what="the link's CREATE")
    watch.drain()
    assert watch.ingested() == {str(folder / "y.tsv")}


def test_outcome_folders_are_not_reported(watch: Watch, root: Path) -> None:
    folder = root / "acme" / "c1" / SN
    (folder / "parsed").mkdir()
    (folder / "error").mkdir()
    watch.drain()
    write(folder / "parsed" / "a.tsv")
    write(folder / "error" / "b.tsv")
    done = write(folder / "c.tsv")
    watch.pump(lambda: str(done) in watch.ingested())
    from powerview.upload_file import open_upload

    with open_upload(root, done) as upload:  # what the worker does after ingesting
        moved = upload.move_to("parsed")
    write(folder / "parsed" / "a.tsv", "again\n")
    marker = write(folder / "marker.tsv")
    watch.pump(lambda: str(marker) in watch.ingested())
    watch.drain()
    assert watch.ingested() == {str(done), str(marker)}
    assert str(moved) not in watch.ingested()


def test_outcome_folders_created_with_their_files_are_not_reported(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    w = Watch(root)
    try:
        w.start()
        device = root / "acme" / "c1" / SN
        (device / "parsed").mkdir(parents=True)
        write(device / "parsed" / "old.tsv")
        (device / "error").mkdir()
        write(device / "error" / "bad.tsv")
        marker = write(device / "new.tsv")
        w.pump(lambda: str(marker) in w.ingested())
        w.drain()
        assert w.ingested() == {str(marker)}
    finally:
        w.watcher.close()


PIPELINE = 20


def _pipelined_uploads(root: Path, go: threading.Event, prefix: str) -> list[str]:
    """What a client pipelining `mkdir d`, `mkdir d/sn`, `put d/sn/f.tsv` does, no pause."""
    go.wait()
    made = []
    for i in range(PIPELINE):
        campaign = root / "acme" / f"{prefix}{i:02d}"
        campaign.mkdir()
        (campaign / SN).mkdir()
        made.append(str(write(campaign / SN / "f.tsv")))
    return made


@pytest.mark.parametrize("round_", range(3))
def test_pipelined_mkdir_mkdir_put_finds_every_file(watch: Watch, root: Path, round_: int) -> None:
    """Without a scan of each new folder, 35 to 65 % of these files were missed."""
    go = threading.Event()
    made: list[str] = []
    writer = threading.Thread(
        target=lambda: made.extend(_pipelined_uploads(root, go, f"p{round_}_")), daemon=True
    )
    writer.start()
    go.set()  # the writer races the watcher, which polls meanwhile
    watch.pump(
        lambda: not writer.is_alive() and watch.ingested() >= set(made),
        timeout=20,
        what=f"{PIPELINE} pipelined files",
    )
    writer.join()
    watch.drain()
    assert len(made) == PIPELINE
    assert watch.ingested() == set(made)
    expected = {f"acme/p{round_}_{i:02d}" for i in range(PIPELINE)}
    assert watch.provisioned() == {"acme/c1"} | expected


def test_a_whole_tree_moved_in_at_once_is_found(watch: Watch, root: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging" / "globex"
    for campaign in ("g1", "g2"):
        (staging / campaign / SN).mkdir(parents=True)
        write(staging / campaign / SN / "f.tsv")
    os.rename(staging, root / "globex")  # one MOVED_TO|ISDIR for a whole company
    expected = {str(root / "globex" / c / SN / "f.tsv") for c in ("g1", "g2")}
    watch.pump(lambda: watch.ingested() >= expected, what="the moved tree")
    watch.drain()
    assert watch.ingested() == expected
    assert watch.provisioned() == {"acme/c1", "globex/g1", "globex/g2"}


# -- overflow --------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_inotify_queue(size: int) -> Iterator[None]:
    """Lower max_queued_events (read when an inotify instance is made), restore at once."""
    original = MAX_QUEUED.read_text()
    try:
        MAX_QUEUED.write_text(f"{size}\n")
        yield
    finally:
        MAX_QUEUED.write_text(original)


def test_a_real_queue_overflow_rescans_everything(root: Path) -> None:
    with small_inotify_queue(16):
        w = Watch(root)  # its inotify instance keeps the small queue
    assert MAX_QUEUED.read_text().strip() != "16"
    try:
        w.start()
        folder = root / "acme" / "c1" / SN
        paths = {str(write(folder / f"f{i:03d}.tsv")) for i in range(60)}  # ~180 events
        w.pump(lambda: w.watcher.overflows >= 1, what="an overflow")
        w.drain()
        assert w.ingested() == paths
        assert w.watcher.overflows >= 1
        after = write(folder / "after.tsv")  # watching goes on after the rescan
        w.pump(lambda: str(after) in w.ingested(), what="an event after the overflow")
    finally:
        w.watcher.close()


def test_a_synthetic_overflow_rescans_and_keeps_watching(watch: Watch, root: Path) -> None:
    folder = root / "acme" / "c1" / SN
    missed = write(folder / "missed.tsv")
    watch.drain()
    watch.decisions.clear()
    watch.watcher._handle(Event(wd=-1, mask=F.Q_OVERFLOW, cookie=0, name=""))
    assert watch.watcher.overflows == 1
    assert watch.ingested() == {str(missed)}
    assert watch.provisioned() == {"acme/c1"}
    (root / "acme" / "c9").mkdir()
    later = write(folder / "later.tsv")
    watch.pump(lambda: str(later) in watch.ingested() and "acme/c9" in watch.provisioned())


# -- `powerview watch` ---------------------------------------------------------------------


def test_powerview_watch_queues_jobs_and_stops_cleanly(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    (site.data / "acme" / "c0" / SN).mkdir(parents=True)
    before = write(site.data / "acme" / "c0" / SN / "before.tsv")  # there before the watcher
    env = site.base_env(POWERVIEW_SETTLE_S="0.2", TSV_LOG_LEVEL="DEBUG")
    with background(["watch", str(site.data)], env, site.home, tmp_path / "watch.log") as proc:
        wait_for(lambda: site.jobs(), 20, "the start-up scan")
        for i in range(PIPELINE):
            campaign = site.data / "acme" / f"w{i:02d}"
            (campaign / SN).mkdir(parents=True)
            write(campaign / SN / "f.tsv")

        def queued() -> bool:
            keys = {j.key for j in site.jobs()}
            return len(keys) == 2 * PIPELINE + 2

        wait_for(queued, 20, "every campaign and file")
        wait_for(lambda: "watcher" in _beats(site), 20, "the watcher's heartbeat")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, (tmp_path / "watch.log").read_text()
    jobs = site.jobs()
    assert {j.source for j in jobs} == {"watch"}
    ingest = sorted(j.payload["path"] for j in jobs if j.kind == "ingest")
    expected = [str(before)] + [
        str(site.data / "acme" / f"w{i:02d}" / SN / "f.tsv") for i in range(PIPELINE)
    ]
    assert ingest == sorted(expected)
    assert all(j.not_before >= j.enqueued_at + 0.2 - 1e-3 for j in jobs)  # settle delay


def _beats(site) -> dict:
    queue = site.queue()
    try:
        return queue.heartbeats()
    finally:
        queue.close()
