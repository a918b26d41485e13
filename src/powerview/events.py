"""Upload events → jobs: the SFTPGo hook's decision and the inotify watcher.

Both only decide and enqueue; the worker does the work. SFTPGo kills a hook
after its timeout (30 s by default) and a slow synchronous hook stalls the
client, while an ingestion or a provisioning run can take longer than that.

Decisions are pure functions of the event (`decide_sftpgo`, `decide_path`),
so every hostile path is tested without a server. Paths are `str` as
`os.fsdecode` makes them (undecodable bytes as lone surrogates, lossless):
the queue stores them losslessly and the worker sets aside a file whose
name it cannot represent, with the reason, in its `error/`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from inotify_simple import INotify
from inotify_simple import flags as F

from powerview import layout
from powerview.exceptions import NameRuleError
from powerview.queue import JobKind, JobQueue
from powerview.upload_file import OUTCOME_DIRS

log = logging.getLogger(__name__)

# SFTPGo's upload statuses: 1 ok, 2 error (partial or failed transfer), 3 quota exceeded.
SFTPGO_STATUS_OK = "1"
SFTPGO_FILE_ACTIONS = frozenset({"upload", "first-upload"})


@dataclass(frozen=True)
class Decision:
    """What to do about one event: a job to queue, or why nothing is done."""

    kind: JobKind | None  # None: ignore
    subject: str = ""  # the job's deduplication subject (a path, or company/campaign)
    payload: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def ignored(self) -> bool:
        return self.kind is None


def ignore(reason: str) -> Decision:
    return Decision(kind=None, reason=reason)


def parse_user_map(text: str) -> dict[str, str]:
    """`user=company,user2=company2` → a mapping (identity for users not listed)."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, company = item.partition("=")
        if not sep or not user.strip() or not company.strip():
            raise ValueError(f"{item!r} is not user=company")
        mapping[user.strip()] = company.strip()
    return mapping


def _clean_path(
    text: str, data_root: Path, event: Literal["file", "dir"] = "file"
) -> tuple[Path, tuple[str, ...]] | str:
    """An absolute, normal path under `data_root` and its parts below it, or why not."""
    if not text:
        return "no path"
    # A control character in the file name itself is the worker's to set aside
    # (error/, with the reason): only the folders must be plain names here.
    folders = os.path.dirname(text) if event == "file" else text
    if "\x00" in text or "\n" in folders:
        return "control characters in the path"
    if not os.path.isabs(text):
        return f"path {text!r} is not absolute"
    if os.path.normpath(text) != text.rstrip("/") or "/../" in f"{text}/":
        return f"path {text!r} is not in normal form"
    given = os.path.normpath(text)
    root = os.path.realpath(data_root)
    # The path may name the root as configured or as resolved (a symlinked root).
    for base in (os.path.normpath(os.path.abspath(data_root)), root):
        if os.path.commonpath([base, given]) == base:
            relative = os.path.relpath(given, base)
            break
    else:
        return f"path {text!r} is outside the data root {data_root}"
    # Below the root, no symbolic link: a client could plant one that points at
    # another company's file or folder and have it processed.
    real = os.path.normpath(os.path.join(root, relative))
    try:
        resolved = os.path.realpath(real)
    except OSError:  # a link swapped while it was resolved (lstat, then readlink)
        return f"path {text!r} changed while it was looked at"
    if resolved != real:
        return f"path {text!r} goes through a symbolic link"
    parts = () if relative == "." else Path(relative).parts
    return Path(real), parts


def decide_path(
    event: Literal["file", "dir"], text: str, data_root: Path, company: str | None = None
) -> Decision:
    """A finished file or a new folder at `text`; `company` is the acting user's, if any."""
    cleaned = _clean_path(text, data_root, event)
    if isinstance(cleaned, str):
        return ignore(cleaned)
    path, parts = cleaned
    if company is not None and (not parts or parts[0] != company):
        return ignore(f"user of company {company!r} acted outside its folder: {text!r}")
    try:
        if event == "dir":
            if len(parts) != 2:
                return ignore(f"folder at depth {len(parts)}, not <company>/<campaign>")
            co = layout.check_name("company", parts[0])
            campaign = layout.check_name("campaign", parts[1])
            return Decision("provision", f"{co}/{campaign}", {"company": co, "campaign": campaign})
        if not layout.is_candidate(path):
            return ignore(f"{path.name!r} is a temporary, processed or non-.tsv file")
        location = layout.locate(path, Path(os.path.realpath(data_root)))
    except NameRuleError as exc:
        return ignore(str(exc))
    return Decision(
        "ingest",
        str(path),
        {
            "path": str(path),
            "company": location.company,
            "campaign": location.campaign,
            "device_sn": location.device_sn,
        },
    )


def decide_sftpgo(
    env: Mapping[str, str], data_root: Path, user_map: Mapping[str, str] | None = None
) -> Decision:
    """Decide on one SFTPGo `common.actions` hook call from its environment."""
    action = env.get("SFTPGO_ACTION", "")
    user = env.get("SFTPGO_ACTION_USERNAME", "")
    if not user:
        return ignore("no SFTPGO_ACTION_USERNAME")
    company = (user_map or {}).get(user, user)
    if action in SFTPGO_FILE_ACTIONS:
        status = env.get("SFTPGO_ACTION_STATUS", "")
        if status != SFTPGO_STATUS_OK:
            meaning = {"2": "failed or partial transfer", "3": "quota exceeded"}
            return ignore(f"upload status {status!r} ({meaning.get(status, 'unknown')})")
        return _complete(decide_path("file", env.get("SFTPGO_ACTION_PATH", ""), data_root, company))
    if action == "rename":
        target = env.get("SFTPGO_ACTION_TARGET", "")
        return _complete(decide_path("file", target, data_root, company))
    if action == "mkdir":
        return decide_path("dir", env.get("SFTPGO_ACTION_PATH", ""), data_root, company)
    return ignore(f"action {action!r} is not handled")


def _complete(decision: Decision) -> Decision:
    """SFTPGo says the transfer ended well: the worker need not wait for the file to settle."""
    if decision.kind == "ingest":
        decision.payload["complete"] = True
    return decision


def enqueue(queue: JobQueue, decision: Decision, source: str, delay_s: float = 0.0) -> bool:
    """Queue the decision's job; an event (not the periodic scan) ends a cut upload's wait."""
    if decision.kind is None:
        return False
    return queue.enqueue(
        decision.kind,
        decision.subject,
        decision.payload,
        delay_s=delay_s,
        source=source,
        requeue_done=decision.kind == "ingest",
        ends_wait=source != "scan",
    )


# -- reconciliation scan -------------------------------------------------------


def scan(
    data_root: Path,
    on_decision: Callable[[Decision], None],
    min_age_s: float = 0.0,
    top: Path | None = None,
) -> int:
    """Every campaign folder and every waiting file under `data_root`, as decisions.

    Used at watcher start, after an inotify overflow, on each new folder (the
    recursive-watch race: `top` is that folder, names are still judged from
    `data_root`) and periodically by the worker (missed events).
    """
    found = 0
    now = time.time()
    root = Path(os.path.realpath(data_root))
    for folder, dirs, files in os.walk(root if top is None else os.path.realpath(top)):
        dirs[:] = sorted(d for d in dirs if d not in OUTCOME_DIRS and not d.startswith("."))
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        if depth == 2:
            on_decision(decide_path("dir", str(here), root))
            found += 1
        for name in files:
            path = here / name
            if not layout.is_candidate(path):
                continue
            try:
                if now - path.lstat().st_mtime < min_age_s:
                    continue
            except FileNotFoundError:
                continue
            on_decision(decide_path("file", str(path), root))
            found += 1
    return found


# -- the watcher ---------------------------------------------------------------

_DIR_MASK = F.CREATE | F.CLOSE_WRITE | F.MOVED_TO | F.DELETE_SELF | F.MOVE_SELF | F.ONLYDIR


class TreeWatcher:
    """Watches a data tree recursively with inotify and turns events into decisions.

    A watch is added to every new folder and the folder is scanned at once:
    clients pipeline `mkdir d`, `mkdir d/sn`, `put d/sn/f.tsv`, and without
    the scan 35 to 65 % of such files were missed here. `parsed/` and `error/`
    are not watched. An overflow of the kernel queue triggers a full rescan.
    Duplicates are expected and harmless: the queue deduplicates.
    """

    def __init__(self, data_root: Path, on_decision: Callable[[Decision], None]) -> None:
        self.root = Path(os.path.realpath(data_root))
        self._on_decision = on_decision
        self._inotify = INotify()
        self._paths: dict[int, Path] = {}
        self.overflows = 0

    def close(self) -> None:
        self._inotify.close()

    def start(self) -> None:
        """Watch the whole tree, then scan it (events before the watch are not lost)."""
        self._watch_tree(self.root)
        scan(self.root, self._on_decision)

    def _watch_tree(self, top: Path) -> None:
        # Each folder is watched before it is listed: a subfolder made in
        # between is then seen either way (os.walk lists first, and a folder
        # made between its listing and the watch was never watched).
        todo = [top]
        while todo:
            folder = todo.pop()
            try:
                wd = self._inotify.add_watch(folder, _DIR_MASK)
                self._paths[wd] = Path(folder)
                with os.scandir(folder) as entries:
                    todo += [
                        Path(e.path)
                        for e in entries
                        if e.is_dir(follow_symlinks=False)
                        and e.name not in OUTCOME_DIRS
                        and not e.name.startswith(".")
                    ]
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed meanwhile

    def poll(self, timeout_ms: int = 500) -> int:
        """Read and handle the events that arrive within `timeout_ms`; returns their count."""
        events = self._inotify.read(timeout=timeout_ms)
        for event in events:
            self._handle(event)
        return len(events)

    def _handle(self, event: Any) -> None:
        mask = event.mask
        if mask & F.Q_OVERFLOW:
            self.overflows += 1
            log.warning("inotify queue overflow: rescanning %s", self.root)
            self._paths.clear()
            self._inotify.close()
            self._inotify = INotify()
            self.start()
            return
        if mask & F.IGNORED:
            self._paths.pop(event.wd, None)
            return
        folder = self._paths.get(event.wd)
        if folder is None or not event.name:
            return
        path = folder / event.name
        if mask & F.ISDIR:
            if mask & (F.CREATE | F.MOVED_TO) and event.name not in OUTCOME_DIRS:
                self._watch_tree(path)
                self._on_decision(decide_path("dir", str(path), self.root))
                scan(self.root, self._on_decision, top=path)  # landed before the watch
            return
        if mask & (F.CLOSE_WRITE | F.MOVED_TO | F.CREATE):
            # CREATE alone: a plain SFTP rename on OpenSSH is link() + unlink(),
            # so the final name appears complete without a CLOSE_WRITE.
            self._on_decision(decide_path("file", str(path), self.root))


def still_being_written(path: Path, settle_s: float) -> str | None:
    """Why `path` looks like an upload in progress, or None when it looks finished."""
    try:
        info = path.lstat()  # never a link's target: it may be another company's file
    except FileNotFoundError:
        return None
    age = time.time() - info.st_mtime
    if age < settle_s:
        return f"modified {age:.1f} s ago"
    return "open for writing" if _open_for_writing(path) else None


def _open_for_writing(path: Path) -> bool:
    """A read lease is refused while anyone has the file open for writing.

    Needs the file's owner or CAP_LEASE; when refused for permissions we
    cannot tell, and rely on the settle time and the parser's checks.
    """
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)
