"""The host's users, groups, folders and files, set up idempotently with a check mode.

`powerview deploy` and `powerview stack install --system` are lists of steps
built from these functions. Each step works out the change first and applies
it only outside check mode (community.grafana's modules: diff, then apply), and
returns a `Step` saying `changed`, `ok` or, in check mode, `would change`: a
second run over a finished deployment reports nothing but `ok`.

Users and groups are made by Debian's `useradd` and `groupadd` (they keep
/etc/passwd, /etc/shadow and /etc/group consistent and locked); everything
else is plain file system calls, so a test runs the same code under a prefix.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from powerview.exceptions import HostSetupError, PowerViewError

NOLOGIN = "/usr/sbin/nologin"
# A system tool that hangs (a locked /etc/passwd) fails its step, not the whole command.
TOOL_TIMEOUT_S = 60
Outcome = Literal["changed", "ok", "would change"]


@dataclass(frozen=True)
class Step:
    """One thing a deployment step looked at, and what it did about it."""

    what: str
    outcome: Outcome
    detail: str = ""


def _outcome(differs: bool, check: bool) -> Outcome:
    if not differs:
        return "ok"
    return "would change" if check else "changed"


def run_tool(
    *args: str, error: type[PowerViewError] = HostSetupError, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    """Run a system tool from an argument list, never a shell; its failure is `error`.

    Also used for the company accounts (provision/openssh.py, with AccountError).
    """
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, check=False, timeout=TOOL_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{args[0]} could not run: {exc}") from exc
    if done.returncode not in ok:
        output = (done.stderr or done.stdout).strip() or "no output"
        raise error(f"{' '.join(args)} exited {done.returncode}: {output}")
    return done


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_group(name: str, check: bool) -> Step:
    """A system group `name`."""
    missing = not group_exists(name)
    if missing and not check:
        run_tool("groupadd", "--system", name)
    return Step(f"group {name}", _outcome(missing, check))


def ensure_system_user(name: str, home: Path, check: bool) -> Step:
    """A system user `name` with its own group, no shell, no password, no home created."""
    missing = not user_exists(name)
    if missing and not check:
        run_tool(
            "useradd", "--system", "--user-group", "--no-create-home",
            "--home-dir", str(home), "--shell", NOLOGIN, name,
        )  # fmt: skip
    return Step(f"user {name}", _outcome(missing, check), f"home {home}, shell {NOLOGIN}")


def _ids(owner: str, group: str) -> tuple[int, int]:
    """uid and gid; in check mode a user still to be created counts as -1 (differs)."""
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        uid = -1
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = -1
    return uid, gid


def _fix_owner_mode(path: Path, mode: int, owner: str, group: str, check: bool) -> list[str]:
    """What differs in `path`'s owner, group and mode; fixed unless `check`."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise HostSetupError(f"{path} is a symbolic link: remove it, it is never followed")
    uid, gid = _ids(owner, group)
    fixes = []
    if (info.st_uid, info.st_gid) != (uid, gid):
        fixes.append(f"owner {owner}:{group}")
        if not check:
            os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(info.st_mode) != mode:
        fixes.append(f"mode {mode:04o}")
    if not check:  # chown clears setgid on some systems: set the mode after it
        os.chmod(path, mode)
    return fixes


def ensure_dir(path: Path, mode: int, owner: str = "root", group: str = "root", *,
               check: bool) -> Step:  # fmt: skip
    """The folder `path` (parents created root 0755) with exactly this owner and mode."""
    if not path.is_dir() or path.is_symlink():
        if path.is_symlink() or path.exists():
            raise HostSetupError(f"{path} exists and is not a folder")
        if not check:
            path.mkdir(parents=True, mode=0o755)
            _fix_owner_mode(path, mode, owner, group, check)
        return Step(str(path), _outcome(True, check), f"created {owner}:{group} {mode:04o}")
    fixes = _fix_owner_mode(path, mode, owner, group, check)
    return Step(str(path), _outcome(bool(fixes), check), ", ".join(fixes))


def ensure_file(path: Path, text: str, mode: int, owner: str = "root", group: str = "root", *,
                check: bool) -> Step:  # fmt: skip
    """The file `path` with exactly this content, owner and mode (written atomically)."""
    try:
        current: str | None = path.read_text()
    except FileNotFoundError:
        current = None
    if path.is_symlink():
        raise HostSetupError(f"{path} is a symbolic link: remove it, it is never followed")
    if current != text:
        if not check:
            write_atomic(path, text, mode, owner, group)
        verb = "created" if current is None else "updated"
        return Step(str(path), _outcome(True, check), verb)
    fixes = _fix_owner_mode(path, mode, owner, group, check)
    return Step(str(path), _outcome(bool(fixes), check), ", ".join(fixes))


def write_atomic(path: Path, text: str, mode: int, owner: str, group: str) -> None:
    """Write a fresh file beside `path` with its final owner and mode, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    uid, gid = _ids(owner, group)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            os.fchown(out.fileno(), uid, gid)
            os.fchmod(out.fileno(), mode)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def systemd_runs() -> bool:
    """True when systemd is PID 1 (not in a container or a CI job): systemctl can work."""
    return Path("/run/systemd/system").is_dir()


def env_values(path: Path) -> dict[str, str]:
    """The `KEY=value` lines of an env file (comments and blank lines skipped)."""
    found: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                found[key.strip()] = value
    return found


def ensure_env_values(
    path: Path,
    values: dict[str, str],
    *,
    replace: bool,
    header: str,
    mode: int,
    owner: str,
    group: str,
    check: bool,
) -> Step:
    """Set `values` in the env file `path`, keeping every other line as it is.

    `replace=False` only adds what is missing (an operator's edit wins);
    `replace=True` also rewrites a key whose value differs. The step's detail
    names the keys it set, never their values (tokens).
    """
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    present = {}
    for index, line in enumerate(lines):
        key, sep, _ = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            present[key.strip()] = index
    changed = []
    for key, value in values.items():
        if key not in present:
            lines.append(f"{key}={value}")
            changed.append(key)
        elif replace and lines[present[key]] != f"{key}={value}":
            lines[present[key]] = f"{key}={value}"
            changed.append(key)
    step = ensure_file(path, "\n".join(lines) + "\n", mode, owner, group, check=check)
    said = [step.detail] + ([f"set {' '.join(changed)}"] if changed else [])
    detail = ", ".join(part for part in said if part)
    return Step(step.what, step.outcome, detail)
