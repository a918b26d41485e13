"""One upload, opened once from the data root without following any link.

A client controls every name below its company folder and may create
symbolic and hard links there (OpenSSH's `internal-sftp` allows both unless
told otherwise). So the worker never goes through a path string twice: it
walks `<company>/<campaign>/<device_sn>/<file>` from the data root with one
directory file descriptor per step (`O_NOFOLLOW | O_DIRECTORY`), opens the
file itself with `O_NOFOLLOW`, takes company, campaign and device from that
same walk, reads the content from that descriptor, and moves it with
`link`/`unlink` relative to the device folder's descriptor into `parsed/` or
`error/` folders it opened the same way and checked. Swapping a name for a
link between two steps then redirects nothing: each step either sees the
link and refuses, or works on what was already opened.

Names are bytes here: a name that is not UTF-8 is carried losslessly (as
`os.fsdecode` does) and shown escaped (`display`).

Clients see what happened to their uploads: `parsed/` and `error/` are
PowerView's (owner: the worker's user), in the device folder's group (the
company's system user under OpenSSH, SFTPGo's own user), mode 0750: the
client lists and reads them, never writes in them. Beside each rejected file
a `<name>.reason.txt` says why (`write_note`), created like a private file
(`O_EXCL | O_NOFOLLOW` under a random name through the folder's descriptor,
then renamed), so no name planted in advance redirects it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

from powerview.exceptions import NameRuleError, UnsafeUploadError

# The folder a finished upload is moved to, beside it.
OutcomeFolder = Literal["parsed", "error"]
OUTCOME_DIRS: tuple[OutcomeFolder, ...] = ("parsed", "error")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under the upload's name must not block the worker.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = ("company", "campaign", "device")
_NAME_MAX = 255
# parsed/ and error/: ours to write, the device folder's group (the client) lists and reads.
OUTCOME_DIR_MODE = 0o750
NOTE_MODE = 0o640  # a reason file: the client reads it
NOTE_SUFFIX = b".reason.txt"

log = logging.getLogger(__name__)


def display(name: str | bytes | os.PathLike[str]) -> str:
    """`name` as printable text: undecodable bytes as `\\xff`, control characters escaped.

    Used wherever a client's name reaches a report, a log, the queue view or
    InfluxDB, all of which need valid UTF-8 (SQLite and the JSON reports
    refuse the lone surrogates `os.fsdecode` makes of undecodable bytes).
    """
    raw = os.fsencode(name)
    text = raw.decode("utf-8", errors="backslashreplace")
    return "".join(_escape(c) if _is_control(c) else c for c in text)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def _escape(char: str) -> str:
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or repr(char)[1:-1]


def name_problem(name: bytes) -> str | None:
    """Why PowerView cannot represent the file name `name`, or None when it can."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return "file name is not valid UTF-8"
    if any(_is_control(c) for c in text):
        return "file name holds control characters (newline, tab, ...)"
    return None


def split_below(path: Path | str | bytes, data_root: Path) -> tuple[bytes, ...]:
    """The components of `path` below `data_root`, as bytes, without resolving links.

    `data_root` is the operator's (it may itself be a link); nothing below it is
    resolved here: the walk in `open_upload` refuses links one step at a time.
    """
    raw = os.path.normpath(os.fsencode(path))
    roots = {os.path.normpath(os.fsencode(data_root)), os.fsencode(os.path.realpath(data_root))}
    for root in roots:
        if raw.startswith(root.rstrip(b"/") + b"/"):
            return tuple(raw[len(root.rstrip(b"/")) + 1 :].split(b"/"))
    raise NameRuleError(f"{display(path)} is outside the data root {data_root}")


@dataclass
class Upload:
    """An opened upload: its device folder and file descriptors, names and fstat."""

    folder: Path  # the device folder as found (for reports; never reopened by name)
    names: tuple[bytes, ...]  # company, campaign, device folder, as found
    file_name: bytes
    dir_fd: int
    fd: int
    info: os.stat_result
    dir_info: os.stat_result
    _outcome_fds: dict[str, int] = field(default_factory=dict)

    # -- what it is --------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Where it was opened (for reports; never used to reach the file again)."""
        return self.folder / os.fsdecode(self.file_name)

    def folder_names(self) -> tuple[str, str, str]:
        """Company, campaign and device as printable text (for reports)."""
        company, campaign, device = (display(n) for n in (*self.names, b"", b"", b"")[:3])
        return company, campaign, device

    def checked_names(self) -> tuple[str, str, str]:
        """Company, campaign and device, each following the name rule (else NameRuleError)."""
        from powerview.layout import check_name

        found = []
        if len(self.names) != len(_KINDS):
            raise NameRuleError(f"{display(self.path)} is not in a device folder")
        for kind, raw in zip(_KINDS, self.names, strict=True):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NameRuleError(
                    f"{kind} folder name {display(raw)} is not valid UTF-8"
                ) from None
            found.append(check_name(kind, text))
        return found[0], found[1], found[2]

    def binary(self) -> BinaryIO:
        """A binary file object on a duplicate of the opened descriptor, at offset 0."""
        raw = os.fdopen(os.dup(self.fd), "rb")
        raw.seek(0)
        return raw

    # -- moves -------------------------------------------------------------------

    def outcome_dir(self, outcome: OutcomeFolder) -> int:
        """The descriptor of `<device>/<outcome>/`, made if needed, checked, never followed.

        It must be a real folder on the device folder's file system, owned by
        PowerView or by the device folder's owner: a client's symbolic link
        named `parsed` is refused, not followed into another company's tree.
        """
        if outcome in self._outcome_fds:
            return self._outcome_fds[outcome]
        with contextlib.suppress(FileExistsError):
            os.mkdir(outcome, OUTCOME_DIR_MODE, dir_fd=self.dir_fd)
        fd = self._open_dir(outcome)
        if fd is None:
            raise UnsafeUploadError(f"{outcome}/ in the device folder vanished as it was made")
        self._outcome_fds[outcome] = fd
        self._share_with_client(outcome, fd)
        return fd

    def _share_with_client(self, outcome: str, fd: int) -> None:
        """Make the checked folder `fd` ours, of the device folder's group, mode 0750.

        Through the descriptor only, so nothing is followed. The group is the
        client's (the device folder's, made by its upload user): it can list
        and read, not write. A folder the client made itself before PowerView
        did is taken over the same way. Changing the group to one we are not in
        needs CAP_CHOWN (deploy/powerview-worker.service); without it the folder
        keeps our group and only the client's read access is lost, never
        PowerView's guard, so that is logged, not raised.
        """
        info = os.fstat(fd)
        owner, group = os.geteuid(), self.dir_info.st_gid
        if (info.st_uid, info.st_gid) != (owner, group):
            try:
                os.fchown(fd, owner, group)
            except PermissionError:
                log.warning(
                    "%s/ of %s: cannot give it the device folder's group %d (CAP_CHOWN?):"
                    " the client cannot read it",
                    outcome,
                    display(self.folder),
                    group,
                )
            info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) != OUTCOME_DIR_MODE and info.st_uid == owner:
            os.fchmod(fd, OUTCOME_DIR_MODE)

    def write_note(self, outcome: OutcomeFolder, moved: Path, text: str) -> Path:
        """Write `text` as `<moved name>.reason.txt` beside the moved file; its path.

        Created under a random name with O_EXCL | O_NOFOLLOW in the outcome
        folder's descriptor, then renamed over the final name: a link or file
        planted under either name is replaced, never written through. Readable
        by the device folder's group (the client), like the folder.
        """
        folder_fd = self.outcome_dir(outcome)
        name = os.fsencode(moved.name)
        name = name[: _NAME_MAX - len(NOTE_SUFFIX)] + NOTE_SUFFIX
        tmp = b".%s.%s.tmp" % (name[:200], secrets.token_hex(8).encode())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.fdopen(os.open(tmp, flags, NOTE_MODE, dir_fd=folder_fd), "w", encoding="utf-8")
        try:
            with out:
                with contextlib.suppress(PermissionError):  # no CAP_CHOWN: _share_with_client
                    os.fchown(out.fileno(), -1, self.dir_info.st_gid)
                os.fchmod(out.fileno(), NOTE_MODE)
                out.write(text)
            os.rename(tmp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder_fd)
            raise
        return self._outcome_path(outcome, name)

    def check_outcome_dir(self, outcome: OutcomeFolder) -> None:
        """Refuse now (UnsafeUploadError) an existing `outcome/` that `move_to` would refuse."""
        if outcome not in self._outcome_fds:
            fd = self._open_dir(outcome)
            if fd is not None:
                self._outcome_fds[outcome] = fd

    def _open_dir(self, outcome: str) -> int | None:
        """The checked descriptor of an existing outcome folder, or None if there is none."""
        try:
            fd = os.open(outcome, _DIR_FLAGS, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeUploadError(
                    f"{outcome}/ in the device folder is a symbolic link or not a folder:"
                    " not followed"
                ) from exc
            raise
        info = os.fstat(fd)
        trusted_owners = {os.geteuid(), self.dir_info.st_uid}
        if info.st_dev != self.dir_info.st_dev or info.st_uid not in trusted_owners:
            os.close(fd)
            raise UnsafeUploadError(
                f"{outcome}/ in the device folder is another file system or owned by"
                f" uid {info.st_uid}: not used"
            )
        return fd

    def move_to(self, outcome: OutcomeFolder) -> Path:
        """Move the opened file into `<device>/<outcome>/`, never replacing a file there.

        The new name is linked from the open descriptor (`/proc/self/fd`), so it
        is the very inode that was read whatever happened to the name since; the
        old name is then removed only if it still is that inode. A crash between
        the two leaves both names: `finish_interrupted_move` repairs it.
        """
        target_fd = self.outcome_dir(outcome)
        if os.fstat(self.fd).st_nlink == 0:
            raise UnsafeUploadError("the upload was deleted by its client while it was processed")
        stem, suffix = os.path.splitext(self.file_name)
        for attempt in range(10_000):
            name = self.file_name if attempt == 0 else _numbered(stem, attempt, suffix)
            try:
                os.link(
                    f"/proc/self/fd/{self.fd}", name, dst_dir_fd=target_fd, follow_symlinks=True
                )
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP):
                    raise
                if not self._rename_into(name, target_fd):
                    continue
            else:
                self._unlink_if_same()
            return self._outcome_path(outcome, name)
        raise FileExistsError(f"no free name for {display(self.file_name)} in {outcome}/")

    def _rename_into(self, name: bytes, target_fd: int) -> bool:
        """No hard links here: a checked rename of the name, if it still is this file."""
        try:
            os.stat(name, dir_fd=target_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            return False  # taken: try the next name
        if not self._name_is_this_file():
            raise UnsafeUploadError("the upload's name was replaced while it was processed")
        os.rename(self.file_name, name, src_dir_fd=self.dir_fd, dst_dir_fd=target_fd)
        return True

    def _name_is_this_file(self) -> bool:
        try:
            now = os.stat(self.file_name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (self.info.st_dev, self.info.st_ino)

    def _unlink_if_same(self) -> None:
        # A client that put another file under this name meanwhile keeps it.
        if self._name_is_this_file():
            os.unlink(self.file_name, dir_fd=self.dir_fd)

    def _outcome_path(self, outcome: str, name: bytes) -> Path:
        return self.path.parent / outcome / os.fsdecode(name)

    def finish_interrupted_move(self) -> Path | None:
        """If a crash left this file also linked in parsed/ or error/, drop this name.

        Returns where the file already is, or None when no move was under way.
        Only PowerView's own outcome folders (checked as in `outcome_dir`) are
        looked in, so any other second name is a hard-linked upload.
        """
        if self.info.st_nlink < 2:
            return None
        for outcome in OUTCOME_DIRS:
            fd = self._outcome_fds.get(outcome)
            if fd is None:
                try:
                    fd = self._open_dir(outcome)
                except UnsafeUploadError:
                    continue
                if fd is None:
                    continue
                self._outcome_fds[outcome] = fd
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.inode() == self.info.st_ino and entry.is_file(follow_symlinks=False):
                        self._unlink_if_same()
                        return self._outcome_path(outcome, os.fsencode(entry.name))
        return None

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd, *self._outcome_fds.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._outcome_fds.clear()

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _numbered(stem: bytes, attempt: int, suffix: bytes) -> bytes:
    """`stem.<attempt><suffix>`, the stem shortened to keep within 255 bytes (NAME_MAX)."""
    tail = b".%d%s" % (attempt, suffix)
    return stem[: max(1, _NAME_MAX - len(tail))] + tail


def open_upload(data_root: Path, path: Path | str | bytes) -> Upload:
    """Open `<data_root>/<company>/<campaign>/<device>/<file>` one step at a time.

    Raises NameRuleError when the path is not at that depth under the root,
    UnsafeUploadError when a step is a symbolic link or the file is not a
    regular file, FileNotFoundError when it is gone. Folder names are not
    checked against the name rule here (`Upload.checked_names` does), so a
    file in a badly named folder can still be set aside in its `error/`.
    """
    parts = split_below(path, data_root)
    if len(parts) != 4 or any(p in (b"", b".", b"..") for p in parts):
        raise NameRuleError(
            f"{display(path)} is not at <company>/<campaign>/<device_sn>/<file>.tsv"
            f" under {data_root}"
        )
    *folders, file_name = parts
    fd = _open_device_folder(data_root, folders)
    try:
        folder = data_root.joinpath(*(os.fsdecode(n) for n in folders))
        return _open_file(fd, folder, tuple(folders), file_name)
    except BaseException:
        os.close(fd)
        raise


def _open_device_folder(data_root: Path, folders: list[bytes]) -> int:
    """The descriptor of `<company>/<campaign>/<device>`, walked without following links."""
    fd = os.open(data_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for kind, name in zip(_KINDS, folders, strict=True):
            below = _step(fd, kind, name)
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True)
class Moved:
    """Where an upload that is gone from its place was found (`find_moved`)."""

    outcome: OutcomeFolder
    path: Path
    names: tuple[str, str, str]  # company, campaign, device as printable text
    note: Path | None  # its reason file, when one is there


def find_moved(data_root: Path, path: Path | str | bytes, since: float) -> Moved | None:
    """The file `path` became in its `parsed/` or `error/`, if moved there after `since`.

    For a job taken back after a crash: the run that crashed may have moved
    the file already. A candidate carries the upload's name (or the numbered
    name `move_to` gives when it is taken) and was linked there at or after
    `since` (a link sets the file's ctime), so an earlier upload of the same
    name, moved before this job was queued, is never taken for it. Folders
    are walked and checked as for the upload itself; nothing is followed.
    """
    parts = split_below(path, data_root)
    if len(parts) != 4 or any(p in (b"", b".", b"..") for p in parts):
        return None
    *folders, file_name = parts
    stem, suffix = os.path.splitext(file_name)
    dir_fd = _open_device_folder(data_root, folders)
    try:
        dir_info = os.fstat(dir_fd)
        best: tuple[float, OutcomeFolder, bytes, bool] | None = None
        for outcome in OUTCOME_DIRS:
            for ctime, name, noted in _moved_candidates(dir_fd, dir_info, outcome, stem, suffix):
                if ctime >= since and (best is None or ctime > best[0]):
                    best = (ctime, outcome, name, noted)
    finally:
        os.close(dir_fd)
    if best is None:
        return None
    _, outcome, name, noted = best
    folder = data_root.joinpath(*(os.fsdecode(n) for n in folders)) / outcome
    names = (display(folders[0]), display(folders[1]), display(folders[2]))
    note = folder / os.fsdecode(name + NOTE_SUFFIX) if noted else None
    return Moved(outcome, folder / os.fsdecode(name), names, note)


def _moved_candidates(
    dir_fd: int, dir_info: os.stat_result, outcome: str, stem: bytes, suffix: bytes
) -> list[tuple[float, bytes, bool]]:
    """(ctime, name, has a reason file) of the plain files of `outcome/` named like the upload."""
    try:
        fd = os.open(outcome, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return []  # none, or a link: not PowerView's folder
    try:
        info = os.fstat(fd)
        if info.st_dev != dir_info.st_dev or info.st_uid not in {os.geteuid(), dir_info.st_uid}:
            return []
        with os.scandir(fd) as entries:
            names = {os.fsencode(e.name): e for e in entries}
        found = []
        for name, entry in names.items():
            numbered = name.startswith(stem + b".") and name.endswith(suffix)
            middle = name[len(stem) + 1 : len(name) - len(suffix)] if numbered else b""
            if name != stem + suffix and not middle.isdigit():
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            ctime = entry.stat(follow_symlinks=False).st_ctime
            found.append((ctime, name, name + NOTE_SUFFIX in names))
        return found
    finally:
        os.close(fd)


def _open_file(dir_fd: int, folder: Path, names: tuple[bytes, ...], file_name: bytes) -> Upload:
    dir_info = os.fstat(dir_fd)
    try:
        file_fd = os.open(file_name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeUploadError(
                f"{display(file_name)} is a symbolic link: not followed"
            ) from exc
        raise
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(file_fd)
        raise UnsafeUploadError(f"{display(file_name)} is not a regular file")
    return Upload(folder, names, file_name, dir_fd, file_fd, info, dir_info)


def _step(parent_fd: int, kind: str, name: bytes) -> int:
    """Open folder `name` of `parent_fd` without following a link."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeUploadError(
                f"{kind} folder {display(name)} is a symbolic link or not a folder: not followed"
            ) from exc
        raise
