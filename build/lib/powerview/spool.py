"""The hook's fallback spool: events that could not be queued, one small file each.

`powerview hook` must never lose an event, yet the queue can be unusable when
it runs: a corrupt or read-only `queue.sqlite3`, a lock held past the hook's
timeout. Then the event goes to `<state_dir>/spool/` as one JSON file, written
atomically (a temporary name created with O_EXCL, then a rename, so the worker
never reads half a file), and the hook still exits 0. The worker drains the
spool into the queue at every turn of its loop (a `listdir` when it is empty),
so a spooled upload waits no longer than a queued one, not for the periodic
scan. `powerview health` reports events that stay (the worker is not draining)
and `powerview queue` lists them.

The spool lives in the state folder, on the queue's file system. On a full disk
nothing can be written there either: the hook then exits 2 with one line, which
SFTPGo logs. The upload itself is still in the data tree, so the worker's
periodic scan finds it once space is back: late, never lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerview.exceptions import SpoolError
from powerview.private_files import make_shared_dir
from powerview.queue import JobKind, JobQueue

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
SUFFIX = ".event"
TEMP_PREFIX = ".tmp-"
BAD_SUFFIX = ".bad"  # a spool file that cannot be read back: kept for the operator
STALE_TEMP_S = 3600.0  # a temporary file this old is from a hook killed mid-write
WARN_EVERY_S = 60.0
_last_warning = float("-inf")


@dataclass(frozen=True)
class SpooledEvent:
    """One event waiting in the spool (or, `bad`, one that could not be read)."""

    path: Path
    age_s: float
    kind: str = ""
    subject: str = ""
    source: str = ""
    bad: bool = False


def spool_dir(state_dir: Path) -> Path:
    return state_dir / SPOOL_DIR


def spool_event(
    state_dir: Path, kind: str, subject: str, payload: dict[str, Any], source: str
) -> Path:
    """Write one event to the spool atomically; SpoolError if even that fails."""
    folder = spool_dir(state_dir)
    record = {
        "kind": kind,
        "subject": subject,
        "payload": payload,
        "source": source,
        "spooled_at": time.time(),
    }
    body = json.dumps(record).encode()
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
    temp = folder / f"{TEMP_PREFIX}{name}"
    try:
        make_shared_dir(folder)
        # 0o666 and the umask decide, as for the queue file: the hook's user and
        # the worker's share the state folder through their group.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        final = folder / f"{name}{SUFFIX}"
        os.rename(temp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise SpoolError(f"event not spooled in {folder}: {exc.strerror or exc}") from exc
    return final


def drain(queue: JobQueue, state_dir: Path | None = None) -> int:
    """Move every spooled event into `queue`; returns how many were queued.

    Queued first, removed second: a crash in between queues the event twice,
    which the queue's deduplication turns into one job. A file that cannot be
    read back is renamed `*.bad` (health reports it) rather than retried for ever.
    """
    folder = spool_dir(state_dir if state_dir is not None else queue.path.parent)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except OSError as exc:
        # Not a reason to stop the worker (health reports the spool as unreadable);
        # said once a minute, not at every loop turn.
        global _last_warning
        if time.monotonic() - _last_warning > WARN_EVERY_S:
            log.error("spool %s unreadable: %s", folder, exc)
            _last_warning = time.monotonic()
        return 0
    moved = 0
    for name in sorted(names):
        path = folder / name
        if name.startswith(TEMP_PREFIX):
            _remove_if_stale(path)
            continue
        if not name.endswith(SUFFIX):
            continue
        try:
            kind, subject, payload, source = _read(path)
            # ValueError from here too: a value the queue refuses must not stop the drain.
            queue.enqueue(kind, subject, payload, source=source, requeue_done=kind == "ingest")
        except FileNotFoundError:
            continue  # another worker drained it
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("spooled event %s unusable, set aside: %s", path, exc)
            with contextlib.suppress(OSError):
                path.rename(path.with_name(name + BAD_SUFFIX))
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        moved += 1
        log.info("spooled %s event for %s queued", kind, subject)
    return moved


def _read(path: Path) -> tuple[JobKind, str, dict[str, Any], str]:
    """kind, subject, payload and source of a spool file; ValueError if malformed."""
    record = json.loads(path.read_bytes())
    kind, subject, payload, source = (
        record["kind"], record["subject"], record["payload"], record["source"]
    )  # fmt: skip
    if kind not in ("ingest", "provision") or not isinstance(payload, dict):
        raise ValueError(f"not a spooled event: kind {kind!r}")
    return kind, str(subject), payload, str(source)


def _remove_if_stale(path: Path) -> None:
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > STALE_TEMP_S:
            path.unlink()


def pending(state_dir: Path, now: float | None = None) -> list[SpooledEvent]:
    """The events waiting in the spool, oldest first, and the ones set aside as bad."""
    folder = spool_dir(state_dir)
    moment = time.time() if now is None else now
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[SpooledEvent] = []
    for name in names:
        path = folder / name
        try:
            age = moment - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if name.endswith(BAD_SUFFIX):
            found.append(SpooledEvent(path, age, bad=True))
        elif name.endswith(SUFFIX):
            try:
                kind, subject, _, source = _read(path)
                found.append(SpooledEvent(path, age, kind, subject, source))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                found.append(SpooledEvent(path, age, bad=True))
    return found
