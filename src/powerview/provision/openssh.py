"""A company's SFTP account on plain OpenSSH: a chrooted system user that logs in with a key.

What sshd needs for each company (deploy/sshd_config.powerview, deploy/README.md):

- a system user named like the company (or the one user POWERVIEW_USER_COMPANY_MAP maps
  to it), in the upload group the fragment's `Match Group` names, with no shell and the
  password field `*`: no password works, yet the account is not locked (sshd refuses
  a locked account even for a key);
- its chroot `<chroot base>/<user>`, root:root 0755: sshd refuses a chroot any folder
  of whose path is not root-owned or is writable by group or others, and the user may
  not write in the chroot itself; hence the company folder `<data root>/<company>`,
  owned by the user, bind-mounted one level below at `<chroot>/<user>` (where
  internal-sftp's `-d /%u` starts), mounted now and listed in fstab for the next boot;
- its public keys in `<keys dir>/<user>`, root:root 0644 (`AuthorizedKeysFile
  /etc/ssh/authorized_keys/%u`: a home inside the chroot is out of sshd's reach).

The same pattern as sftpgo.py: `plan_account` and `plan_removal` look at the system
(reading only) and return the steps to take, each a `Change` with its before and after;
`ensure_account` and `remove_account` apply them unless in check mode, so `changed` is
true exactly when something was written, and check mode writes nothing. Whatever would
make the account unsafe (a chroot path others can write to, an existing user that is
not a company's, a key ssh-keygen does not read) is refused before the first step.
System tools run from argument lists, never through a shell, and only with names
that passed the name rule.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerview.events import parse_user_map
from powerview.exceptions import AccountError
from powerview.host import NOLOGIN, TOOL_TIMEOUT_S, run_tool
from powerview.layout import check_company, check_name
from powerview.provision.grafana_ensure import Change, View
from powerview.settings import Settings

__all__ = [
    "NOLOGIN",
    "Account",
    "AccountOutcome",
    "account_for",
    "account_state",
    "ensure_account",
    "fstab_line",
    "fstab_targets",
    "managed_companies",
    "plan_account",
    "plan_removal",
    "remove_account",
    "user_for",
]

NO_PASSWORD = "*"  # noqa: S105 (`usermod -p '*'`: matches no password, and is not a lock)
FOLDER_MODE = 0o755
KEYS_MODE = 0o644
FSTAB_MODE = 0o644


# -- where a company's account lives ---------------------------------------------------


@dataclass(frozen=True)
class Account:
    """The paths and names of one company's account, all absolute and resolved."""

    company: str
    user: str
    group: str
    data_root: Path
    chroot_base: Path
    keys_dir: Path
    fstab: Path

    @property
    def folder(self) -> Path:
        """The company folder: what the client uploads into, kept on delete."""
        return self.data_root / self.company

    @property
    def chroot(self) -> Path:
        return self.chroot_base / self.user

    @property
    def mount_point(self) -> Path:
        return self.chroot / self.user

    @property
    def keys_file(self) -> Path:
        return self.keys_dir / self.user

    @property
    def home(self) -> str:
        """The user's home as sshd sees it after the chroot: the company folder."""
        return f"/{self.user}"

    @property
    def comment(self) -> str:
        return f"PowerView company {self.company}"


def user_for(company: str, user_map: Mapping[str, str]) -> str:
    """The system user of `company`: the one user mapped to it, else its own name."""
    mapped = sorted(user for user, target in user_map.items() if target == company)
    if len(mapped) > 1:
        raise AccountError(
            f"POWERVIEW_USER_COMPANY_MAP maps {', '.join(mapped)} to {company!r}: "
            "one OpenSSH account per company, keep one of them"
        )
    if mapped:
        return mapped[0]
    if user_map.get(company, company) != company:
        raise AccountError(
            f"user {company!r} belongs to company {user_map[company]!r} "
            "(POWERVIEW_USER_COMPANY_MAP): map a user of its own to this company"
        )
    return company


def account_for(settings: Settings, company: str) -> Account:
    """`company`'s account from the settings; every name checked before anything runs."""
    check_company(company, settings.reserved_company_names)
    user = check_name("user", user_for(company, parse_user_map(settings.user_company_map)))
    return Account(
        company=company,
        user=user,
        group=settings.upload_group,
        data_root=settings.data_root.resolve(),
        chroot_base=settings.chroot_base.resolve(),
        keys_dir=settings.authorized_keys_dir.resolve(),
        fstab=settings.fstab,
    )


# -- system tools and look-ups ---------------------------------------------------------


def _run(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run a system tool from an argument list; its failure is an AccountError."""
    return run_tool(*args, error=AccountError, ok=ok)


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _group(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _owner(info: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    return f"{user}:{_group_name(info.st_gid)}"


def _password_kind(user: str) -> str:
    """The password field as a diff may show it: never the hash itself."""
    fields = _run("getent", "shadow", user).stdout.strip().split(":")
    value = fields[1] if len(fields) > 1 else ""
    if value == NO_PASSWORD:
        return "none (key only)"
    if value.startswith("!"):
        return "locked"
    return "empty" if value == "" else "set"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _folder_view(info: os.stat_result) -> View:
    return {"owner": _owner(info), "mode": f"{stat.S_IMODE(info.st_mode):04o}"}


def _unescape(text: str) -> str:
    """fstab's and mountinfo's octal escapes (`\\040` for a space) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _escape(text: str) -> str:
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


def fstab_line(source: Path, target: Path) -> str:
    """The persistent bind mount of a company folder, as an fstab line."""
    return f"{_escape(str(source))} {_escape(str(target))} none bind 0 0"


def fstab_targets(text: str, target: Path) -> list[int]:
    """Indexes of the lines of an fstab text that mount something at `target`."""
    found = []
    for index, line in enumerate(text.splitlines()):
        fields = line.split()
        if (
            len(fields) > 1
            and not fields[0].startswith("#")
            and _unescape(fields[1]) == str(target)
        ):
            found.append(index)
    return found


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace, from /proc/self/mountinfo.

    (os.path.ismount cannot see a bind mount within one file system.)
    """
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        return [_unescape(line.split()[4]) for line in table if line.strip()]


def _same_file(a: Path, b: Path) -> bool:
    try:
        first, second = a.stat(), b.stat()
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _write_root_file(path: Path, text: str, mode: int) -> None:
    """Replace `path` at once with a root-owned file of `mode` holding `text`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fchown(file.fileno(), 0, 0)
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _make_root_folder(path: Path) -> None:
    path.mkdir(mode=FOLDER_MODE)
    os.chown(path, 0, 0)
    os.chmod(path, FOLDER_MODE)  # sshd's rule: root-owned, not group-writable


# -- keys ----------------------------------------------------------------------------


def fingerprints(keys: list[str]) -> list[str]:
    """The SHA256 fingerprint of each key, checked one by one with `ssh-keygen -l`.

    One at a time: given a file of several lines, ssh-keygen skips those it cannot
    read and succeeds, so a typo would go unnoticed.
    """
    found = []
    with tempfile.TemporaryDirectory(prefix="powerview-key-") as folder:
        path = Path(folder) / "key.pub"
        for number, key in enumerate(keys, 1):
            if not key.strip() or "\n" in key or "\r" in key:
                raise AccountError(f"public key {number}: not one line of an OpenSSH public key")
            path.write_text(key.strip() + "\n", encoding="utf-8")
            done = subprocess.run(
                ["ssh-keygen", "-l", "-f", str(path)],
                capture_output=True,
                text=True,
                check=False,
                timeout=TOOL_TIMEOUT_S,
            )
            lines = done.stdout.split("\n")
            if done.returncode != 0 or len([line for line in lines if line]) != 1:
                raise AccountError(
                    f"public key {number} is not an OpenSSH public key "
                    f"(ssh-keygen -l: {done.stderr.strip() or 'no key read'})"
                )
            found.append(lines[0].split()[1])
    return found


def _keys_in(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _keys_view(keys: list[str]) -> list[str]:
    try:
        return fingerprints(keys)
    except AccountError:
        return [f"{len(keys)} lines, not all of them keys"]


# -- plans -----------------------------------------------------------------------------


@dataclass
class Step:
    """One change to the system and how to make it."""

    change: Change
    apply: Callable[[], None]


def _refuse_unsafe_path(path: Path, what: str) -> None:
    """Refuse `path` if an existing folder on it breaks sshd's rule (StrictModes, chroot).

    Every existing component must be a root-owned folder not writable by group or
    others; missing ones are created that way. Refused, not repaired: these folders
    are the system's, and an operator must see why.
    """
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            raise AccountError(f"{what}: {folder} is not a folder")
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise AccountError(
                f"{what}: {folder} is owned by {_owner(info)} with mode "
                f"{stat.S_IMODE(info.st_mode):04o}; sshd needs every folder of the path "
                "owned by root and not writable by group or others"
            )


def _check_user_is_ours(account: Account, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    group = _group(account.group)
    member = group is not None and account.user in group.gr_mem
    if user.pw_uid == 0 or not (member or user.pw_gecos == account.comment):
        raise AccountError(
            f"user {account.user} exists and is not a PowerView company account "
            f"(not in group {account.group}): refusing to change it"
        )


def _missing(path: Path) -> list[Path]:
    """The folders of `path` that do not exist yet, outermost first."""
    return [folder for folder in [*reversed(path.parents), path] if not folder.exists()]


def _create_folders_step(folders: list[Path], what: str) -> Step | None:
    if not folders:
        return None

    def apply() -> None:
        for folder in folders:
            if not folder.exists():
                _make_root_folder(folder)

    after = {"owner": "root:root", "mode": f"{FOLDER_MODE:04o}"}
    return Step(Change(f"{what} {folders[-1]}", "create", "", None, after), apply)


def _user_view(account: Account, user: pwd.struct_passwd) -> View:
    group = _group(account.group)
    return {
        "shell": user.pw_shell,
        "home": user.pw_dir,
        "comment": user.pw_gecos,
        "upload group": group is not None and account.user in group.gr_mem,
        "password": _password_kind(account.user),
    }


def _plan_user(account: Account, user: pwd.struct_passwd | None) -> list[Step]:
    steps = []
    if _group(account.group) is None:

        def add_group() -> None:
            _run("groupadd", "--system", account.group)

        change = Change(f"group {account.group}", "create", "the group sshd's Match names")
        steps.append(Step(change, add_group))
    wanted: View = {
        "shell": NOLOGIN,
        "home": account.home,
        "comment": account.comment,
        "upload group": True,
        "password": "none (key only)",
    }
    if user is None:

        def create() -> None:
            _run(
                "useradd", "--no-create-home", "--home-dir", account.home, "--shell", NOLOGIN,
                "--comment", account.comment, "--groups", account.group, "--user-group",
                "--password", NO_PASSWORD, account.user,
            )  # fmt: skip

        steps.append(Step(Change(f"user {account.user}", "create", "", None, wanted), create))
        return steps
    before = _user_view(account, user)
    if before != wanted:

        def update() -> None:
            _run(
                "usermod", "--home", account.home, "--shell", NOLOGIN, "--comment",
                account.comment, "--append", "--groups", account.group, "--password",
                NO_PASSWORD, account.user,
            )  # fmt: skip

        fields = ", ".join(key for key in wanted if before[key] != wanted[key])
        change = Change(f"user {account.user}", "update", f"put back {fields}", before, wanted)
        steps.append(Step(change, update))
    return steps


def _plan_company_folder(account: Account, user: pwd.struct_passwd | None) -> Step | None:
    folder = account.folder
    info = _lstat(folder)
    # useradd --user-group gives a new user a group of its own name
    group = account.user if user is None else _group_name(user.pw_gid)
    wanted = {"owner": f"{account.user}:{group}", "mode": f"{FOLDER_MODE:04o}"}

    def apply() -> None:
        owner = pwd.getpwnam(account.user)  # made by an earlier step, maybe just now
        if not folder.exists():
            folder.mkdir(mode=FOLDER_MODE)
        os.chown(folder, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        os.chmod(folder, FOLDER_MODE)  # Linux has no lchmod; chown above did not follow

    if info is None:
        return Step(Change(f"company folder {folder}", "create", "", None, wanted), apply)
    if not stat.S_ISDIR(info.st_mode):
        raise AccountError(f"company folder {folder} is not a folder (a link, or a file)")
    before = _folder_view(info)
    if before == wanted:
        return None
    return Step(
        Change(f"company folder {folder}", "update", "owner and mode", before, wanted), apply
    )


def _plan_root_folder(path: Path, what: str) -> Step | None:
    """A root:root 0755 folder of ours (the chroot, the mount point): create or put back."""
    info = _lstat(path)
    wanted = {"owner": "root:root", "mode": f"{FOLDER_MODE:04o}"}
    if info is None:
        return Step(
            Change(f"{what} {path}", "create", "", None, wanted), lambda: _make_root_folder(path)
        )
    if not stat.S_ISDIR(info.st_mode):
        raise AccountError(f"{what} {path} is not a folder (a link, or a file)")
    before = _folder_view(info)
    if before == wanted:
        return None

    def repair() -> None:
        os.chown(path, 0, 0, follow_symlinks=False)
        os.chmod(path, FOLDER_MODE)  # a folder, checked by lstat: Linux has no lchmod

    return Step(Change(f"{what} {path}", "update", "owner and mode", before, wanted), repair)


def _plan_fstab(account: Account) -> Step | None:
    wanted = fstab_line(account.folder, account.mount_point)
    text = account.fstab.read_text(encoding="utf-8") if account.fstab.exists() else ""
    lines = text.splitlines()
    found = fstab_targets(text, account.mount_point)
    if [lines[i].split() for i in found] == [wanted.split()]:
        return None

    def apply() -> None:
        current = account.fstab.read_text(encoding="utf-8") if account.fstab.exists() else ""
        kept = current.splitlines()
        for index in reversed(fstab_targets(current, account.mount_point)):
            del kept[index]
        _write_root_file(account.fstab, "\n".join([*kept, wanted]) + "\n", FSTAB_MODE)

    before = {"lines": [lines[i] for i in found]} if found else None
    resource = f"fstab entry {account.mount_point}"
    after = {"lines": [wanted]}
    if found:
        return Step(Change(resource, "update", str(account.fstab), before, after), apply)
    return Step(Change(resource, "create", str(account.fstab), None, after), apply)


def _end_sessions(user: str) -> None:
    """SIGKILL every process running as `user` (its sftp sessions), from /proc.

    Its sessions would keep the bind mount busy and make userdel refuse; /proc
    rather than pkill, which minimal Debian systems lack (procps).
    """
    found = _user(user)
    if found is None:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue  # gone meanwhile
        uids = next(
            (line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")), []
        )
        if str(found.pw_uid) in uids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


def _umount(point: Path) -> None:
    """Unmount, waiting a little for processes that just ended to let go of it."""
    for attempt in range(50):
        done = subprocess.run(
            ["umount", str(point)], capture_output=True, text=True, check=False,
            timeout=TOOL_TIMEOUT_S,
        )  # fmt: skip
        if done.returncode == 0 or str(point) not in _mount_points():
            return
        if attempt == 49:
            raise AccountError(f"umount {point} exited {done.returncode}: {done.stderr.strip()}")
        time.sleep(0.1)


def _plan_mount(account: Account) -> Step | None:
    point = account.mount_point
    mounted = str(point) in _mount_points()
    if mounted and _same_file(point, account.folder):
        return None
    wanted = {"source": str(account.folder)}

    def apply() -> None:
        if str(point) in _mount_points():
            _umount(point)
        _run("mount", "--fstab", str(account.fstab), str(point))
        if not _same_file(point, account.folder):
            raise AccountError(f"{point} does not show {account.folder} after mount")

    resource = f"bind mount {point}"
    if mounted:
        before = {"source": "another folder"}
        return Step(Change(resource, "update", "remounted", before, wanted), apply)
    return Step(Change(resource, "create", "", None, wanted), apply)


def _plan_keys(account: Account, keys: list[str] | None) -> Step | None:
    path = account.keys_file
    info = _lstat(path)
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise AccountError(f"keys file {path} is not a plain file (a link?)")
    if keys is None:
        if info is None:
            raise AccountError(
                f"user {account.user} has no key in {path}: give --sftp-key FILE "
                "(OpenSSH accounts log in with a key only)"
            )
        keys = _keys_in(path)
    wanted_text = "".join(f"{key}\n" for key in keys)
    wanted = {"keys": fingerprints(keys), "owner": "root:root", "mode": f"{KEYS_MODE:04o}"}

    def apply() -> None:
        _write_root_file(path, wanted_text, KEYS_MODE)

    resource = f"keys file {path}"
    if info is None:
        return Step(Change(resource, "create", "", None, wanted), apply)
    current = path.read_text(encoding="utf-8", errors="replace")
    before = {"keys": _keys_view(_keys_in(path)), **_folder_view(info)}
    if current == wanted_text and before == wanted:
        return None
    return Step(Change(resource, "update", "", before, wanted), apply)


def plan_account(account: Account, keys: list[str] | None) -> list[Step]:
    """The steps that make `account` what sshd needs, in order; [] when it already is.

    `keys` None keeps the keys on file (one is needed). Raises AccountError, before
    any step, for what cannot be made safe: see `_refuse_unsafe_path`.
    """
    user = _user(account.user)
    _check_user_is_ours(account, user)
    _refuse_unsafe_path(account.chroot_base, "chroot base")
    _refuse_unsafe_path(account.keys_dir, "keys folder")
    if not account.data_root.is_dir():
        raise AccountError(f"data root {account.data_root} is not a folder")
    if keys is not None and not keys:
        raise AccountError("no public key given")
    steps = _plan_user(account, user)
    for step in (
        _plan_company_folder(account, user),
        _create_folders_step(_missing(account.chroot_base), "chroot base"),
        _plan_root_folder(account.chroot, "chroot"),
        None
        if str(account.mount_point) in _mount_points()
        else _plan_root_folder(account.mount_point, "mount point"),
        _plan_fstab(account),
        _plan_mount(account),
        _create_folders_step(_missing(account.keys_dir), "keys folder"),
        _plan_keys(account, keys),
    ):
        if step is not None:
            steps.append(step)
    return steps


def plan_removal(account: Account) -> list[Step]:
    """The steps that take `account`'s login away; the company folder and its files stay.

    Keys first (no new login), then the user's sessions and the bind mount, the fstab
    entry; the company folder goes to root (a user later given the same uid owns
    nothing of it), then the user and the empty chroot folders.
    """
    user = _user(account.user)
    _check_user_is_ours(account, user)
    steps: list[Step] = []
    keys = account.keys_file
    if _lstat(keys) is not None:
        steps.append(
            Step(Change(f"keys file {keys}", "delete", "no new login"), lambda: keys.unlink())
        )
    point = account.mount_point
    if str(point) in _mount_points():

        def unmount() -> None:
            _end_sessions(account.user)
            _umount(point)

        change = Change(
            f"bind mount {point}",
            "delete",
            "open sessions ended",
            {"source": str(account.folder)},
            None,
        )
        steps.append(Step(change, unmount))
    text = account.fstab.read_text(encoding="utf-8") if account.fstab.exists() else ""
    found = fstab_targets(text, point)
    if found:

        def drop_entry() -> None:
            current = account.fstab.read_text(encoding="utf-8")
            kept = current.splitlines()
            for index in reversed(fstab_targets(current, point)):
                del kept[index]
            _write_root_file(account.fstab, "".join(f"{line}\n" for line in kept), FSTAB_MODE)

        before = {"lines": [text.splitlines()[i] for i in found]}
        steps.append(
            Step(
                Change(f"fstab entry {point}", "delete", str(account.fstab), before, None),
                drop_entry,
            )
        )
    info = _lstat(account.folder)
    if (
        user is not None
        and info is not None
        and stat.S_ISDIR(info.st_mode)
        and info.st_uid == user.pw_uid
    ):

        def to_root() -> None:
            os.chown(account.folder, 0, 0, follow_symlinks=False)

        change = Change(
            f"company folder {account.folder}", "update", "kept with its files, owned by root",
            {"owner": _owner(info)}, {"owner": "root:root"},
        )  # fmt: skip
        steps.append(Step(change, to_root))
    if user is not None:

        def delete_user() -> None:
            _end_sessions(account.user)
            for attempt in range(50):
                done = subprocess.run(
                    ["userdel", account.user], capture_output=True, text=True, check=False,
                    timeout=TOOL_TIMEOUT_S,
                )  # fmt: skip
                if done.returncode == 0:
                    return
                if attempt == 49:
                    raise AccountError(
                        f"userdel {account.user} exited {done.returncode}: {done.stderr.strip()}"
                    )
                time.sleep(0.1)

        user_before: View = {"uid": user.pw_uid, "home": user.pw_dir}
        steps.append(
            Step(Change(f"user {account.user}", "delete", "", user_before, None), delete_user)
        )
    for folder, what in ((point, "mount point"), (account.chroot, "chroot")):
        if _lstat(folder) is not None:

            def remove(folder: Path = folder) -> None:
                with contextlib.suppress(FileNotFoundError):
                    folder.rmdir()  # only ever empty: never what a mount still shows

            steps.append(Step(Change(f"{what} {folder}", "delete", "empty folder"), remove))
    return steps


# -- apply -----------------------------------------------------------------------------


@dataclass
class AccountOutcome:
    """What the OpenSSH step did (in check mode: would do)."""

    user: str
    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise AccountError(
            "OpenSSH accounts are system users, chroots and mounts: run this as root "
            "(POWERVIEW_SFTP_SERVER=openssh)"
        )


def _apply(user: str, steps: list[Step], check: bool) -> AccountOutcome:
    """Apply the steps in order, recording each once done (all of them in check mode)."""
    outcome = AccountOutcome(user)
    for step in steps:
        if not check:
            try:
                step.apply()
            except OSError as exc:
                raise AccountError(f"{step.change.resource}: {exc}") from exc
        outcome.changes.append(step.change)
    return outcome


def ensure_account(
    settings: Settings,
    company: str,
    keys: list[str] | None = None,
    new_password: bool = False,
    check: bool = False,
) -> AccountOutcome:
    """Create or keep `company`'s OpenSSH account; `keys` None keeps its keys."""
    if new_password:
        raise AccountError(
            "OpenSSH accounts log in with a key only (the sshd fragment sets "
            "PasswordAuthentication no): give --sftp-key FILE instead of --sftp-password"
        )
    account = account_for(settings, company)
    _require_root()
    return _apply(account.user, plan_account(account, keys), check)


def remove_account(settings: Settings, company: str, check: bool = False) -> AccountOutcome:
    """Take `company`'s OpenSSH login away; its folder and files stay."""
    check_name("company", company)
    account = account_for(settings, company)
    _require_root()
    return _apply(account.user, plan_removal(account), check)


def account_state(settings: Settings, company: str) -> dict[str, Any]:
    """The account as `tenant list` shows it: absent, ok, or what `tenant create` would fix."""
    try:
        account = account_for(settings, company)
    except (AccountError, ValueError) as exc:
        return {"ssh_user": "", "ssh_account": f"refused: {exc}", "ssh_keys": 0}
    keys = len(_keys_in(account.keys_file)) if account.keys_file.is_file() else 0
    row: dict[str, Any] = {"ssh_user": account.user, "ssh_keys": keys}
    if _user(account.user) is None:
        return {**row, "ssh_account": "absent"}
    if os.geteuid() != 0:  # the password field and the folders need root's eyes
        return {**row, "ssh_account": "present (run as root for its state)"}
    try:
        steps = plan_account(account, None)
    except AccountError as exc:
        return {**row, "ssh_account": f"refused: {exc}"}
    if not steps:
        return {**row, "ssh_account": "ok"}
    return {**row, "ssh_account": "to fix: " + ", ".join(s.change.resource for s in steps)}


def managed_companies(settings: Settings) -> set[str]:
    """The companies whose user is in the upload group (mapped through the user map)."""
    group = _group(settings.upload_group)
    if group is None:
        return set()
    user_map = parse_user_map(settings.user_company_map)
    return {user_map.get(user, user) for user in group.gr_mem}
