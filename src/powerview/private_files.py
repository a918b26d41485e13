"""Files only their owner may read (tokens, passwords, alert state, the stack's settings),
and the folders PowerView keeps them in.

A folder is used only after `checked_dir` opened it without following a link
and found it safe: owned by us or root, never world-writable, group-writable
only when setgid (the documented deployment: /var/lib/powerview is 2770, group
`powerview`, shared by the worker and the SFTPGo hook; a member of that group
may then be its owner's peer). Anything else is an UnsafeDirError, and the
command stops before writing a secret there.

A file is written to a fresh random name created with O_CREAT | O_EXCL |
O_NOFOLLOW (a link or file planted in advance makes it fail, never followed),
then renamed over the target relative to the same folder descriptor: a
reader never sees half a secret, a crash leaves the old file whole, and a
link planted at the target is replaced, not written through.

Root writes for the folder's owner: `tenant create` runs as root (system
accounts, mounts) but the token files it leaves in the worker's state folder
must stay the worker's to read and replace, so a folder root creates under a
folder of another user, and a file root writes into one, are handed to that
folder's owner and group.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from powerview.exceptions import ConfigError


class UnsafeDirError(ConfigError):
    """A folder for private files could be changed by someone else, or is a link."""


def check_mode(path: Path, info: os.stat_result) -> None:
    """Raise UnsafeDirError unless `info` (of the folder `path`) is safe for secrets."""
    mode = info.st_mode
    if not stat.S_ISDIR(mode):
        raise UnsafeDirError(f"{path} is not a folder")
    shared = bool(mode & stat.S_ISGID) and info.st_gid in _our_groups()
    if info.st_uid not in (os.geteuid(), 0) and not shared and not _roots_for_owner(path, info):
        raise UnsafeDirError(f"{path} belongs to uid {info.st_uid}, not to us or root")
    if mode & stat.S_IWOTH:
        raise UnsafeDirError(f"{path} is world-writable: chmod o-w {path}")
    if mode & stat.S_IWGRP and not mode & stat.S_ISGID:
        raise UnsafeDirError(
            f"{path} is group-writable without being a shared (setgid) folder: "
            f"chmod g-w {path}, or chmod g+s {path} to share it with its group"
        )


def _roots_for_owner(path: Path, info: os.stat_result) -> bool:
    """Root, in a folder whose owner also owns the folder above it (the service's own
    folder in its state folder), writes for that owner rather than refusing."""
    if os.geteuid() != 0:
        return False
    try:
        return os.lstat(path.parent).st_uid == info.st_uid
    except OSError:
        return False


def _our_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def make_shared_dir(path: Path) -> None:
    """Create the folder `path` if missing, in a shape `check_mode` accepts.

    The umask decides its mode, as for the queue file; when that leaves it
    group-writable (the hook's umask 0007) it is made setgid, the documented
    way to share it with its group, rather than created in a shape refused next.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        return
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    if mode & stat.S_IWGRP:
        os.chmod(path, mode | stat.S_ISGID)


@contextlib.contextmanager
def checked_dir(path: Path) -> Iterator[int]:
    """A descriptor of the folder `path` (created 0700 if missing), checked safe."""
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if created and os.geteuid() == 0:
        _give_to_parent_owner(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeDirError(f"{path} cannot be opened as a folder without following a link "
                             f"({exc.strerror})") from exc  # fmt: skip
    try:
        check_mode(path, os.fstat(fd))
        yield fd
    finally:
        os.close(fd)


def _give_to_parent_owner(path: Path) -> None:
    """Hand a folder root just created to the owner of the folder it sits in."""
    parent = os.lstat(path.parent)
    if parent.st_uid != 0:
        os.chown(path, parent.st_uid, parent.st_gid, follow_symlinks=False)


def check_state_dir(path: Path) -> Path:
    """Refuse to go on with an unsafe state folder; `path` when it is fine."""
    with checked_dir(path):
        return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically, in a checked folder."""
    with checked_dir(path.parent) as folder:
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=folder)
        try:
            if os.geteuid() == 0:
                owner = os.fstat(folder)
                os.fchown(fd, owner.st_uid, owner.st_gid)
            with os.fdopen(fd, "w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
