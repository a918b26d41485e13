"""Tenant isolation on the real server: each company user is chrooted (as root, for
real) to a root that holds only its own folder, so company A can neither list,
read nor write anything of company B, whatever path or link it tries.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import paramiko
import pytest

from tests.e2e.sshd import Company, SftpServer
from tests.factories import Export


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry below `folder` (server side): mode, mtime and content hash."""
    found = {}
    for here, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            path = Path(here) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(folder))] = (info.st_mode, info.st_mtime_ns, digest)
    return found


def visible_tree(sftp: paramiko.SFTPClient, top: str = "/") -> list[str]:
    """Everything a client can list from `top` down (symlinks not followed)."""
    seen = []
    for entry in sftp.listdir_attr(top):
        path = f"{top.rstrip('/')}/{entry.filename}"
        seen.append(path)
        if stat.S_ISDIR(entry.st_mode or 0):
            seen += visible_tree(sftp, path)
    return sorted(seen)


@pytest.fixture
def two_companies(
    sftp_server: SftpServer, new_company: Callable[[], Company]
) -> tuple[Company, Company]:
    """A with one campaign; B with a campaign, a device folder and an uploaded file."""
    a, b = new_company(), new_company()
    with sftp_server.sftp(a) as sftp:
        sftp.mkdir(f"{a.home}/mine")
    with sftp_server.sftp(b) as sftp:
        sftp.mkdir(f"{b.home}/secret")
        sftp.mkdir(f"{b.home}/secret/02001315")
        with sftp.open(f"{b.home}/secret/02001315/b.tsv", "wb") as remote:
            remote.write(Export(rows=5).text().encode())
    return a, b


def assert_refused(action: Callable[[], Any], *codes: int) -> None:
    """The SFTP server answered with an error (the client raises OSError)."""
    refusal: OSError | None = None
    try:
        action()
    except OSError as exc:
        refusal = exc
    assert refusal is not None, "the server allowed it"
    assert not codes or refusal.errno in codes, refusal


def test_company_a_sees_only_its_own_tree(
    sftp_server: SftpServer, two_companies: tuple[Company, Company]
) -> None:
    a, b = two_companies
    with sftp_server.sftp(a) as sftp:
        assert sftp.normalize(".") == a.home  # internal-sftp -d /<company>
        assert sftp.listdir("/") == [a.name]
        assert sftp.listdir("/..") == [a.name]
        assert sftp.listdir("/../../..") == [a.name]
        assert sftp.normalize("/../..") == "/"
        assert visible_tree(sftp) == [a.home, f"{a.home}/mine"]
    with sftp_server.sftp(b) as sftp:
        assert sftp.listdir("/") == [b.name]
        assert visible_tree(sftp) == [
            b.home,
            f"{b.home}/secret",
            f"{b.home}/secret/02001315",
            f"{b.home}/secret/02001315/b.tsv",
        ]


def test_company_a_cannot_list_read_or_write_anything_of_b(
    sftp_server: SftpServer, two_companies: tuple[Company, Company]
) -> None:
    a, b = two_companies
    before = snapshot(b.folder)
    b_file = "secret/02001315/b.tsv"
    # B's folder as A might name it: in A's chroot, by climbing out, and by
    # the server's real paths (data root, bind source, chroot).
    spellings = [
        f"/{b.name}",
        f"/../{b.name}",
        f"{a.home}/../{b.name}",
        f"{a.home}/../../{b.name}",
        f"../{b.name}",
        str(b.folder),
        str(b.chroot / b.name),
    ]
    with sftp_server.sftp(a) as sftp:
        for folder in spellings:
            assert_refused(lambda f=folder: sftp.listdir(f), errno.ENOENT)
            assert_refused(lambda f=folder: sftp.stat(f), errno.ENOENT)
            assert_refused(lambda f=folder: sftp.open(f"{f}/{b_file}", "rb"), errno.ENOENT)
            assert_refused(lambda f=folder: sftp.open(f"{f}/secret/x.tsv", "wb"))
            assert_refused(lambda f=folder: sftp.mkdir(f"{f}/secret/new"))
            assert_refused(lambda f=folder: sftp.remove(f"{f}/{b_file}"))
            assert_refused(lambda f=folder: sftp.rename(f"{a.home}/mine", f"{f}/stolen"))
        for outside in ("/srv", str(a.data_root), str(sftp_server.base), "/etc", "/home"):
            assert_refused(lambda o=outside: sftp.listdir(o), errno.ENOENT)
        # The chroot's root belongs to root: A cannot make B's name appear in it.
        assert_refused(lambda: sftp.mkdir(f"/{b.name}"), errno.EACCES)
        assert_refused(lambda: sftp.open(f"/{b.name}", "wb"), errno.EACCES)
        assert sftp.listdir("/") == [a.name]
    assert snapshot(b.folder) == before


def test_symlinks_planted_by_a_lead_nowhere_near_b(
    sftp_server: SftpServer, two_companies: tuple[Company, Company]
) -> None:
    a, b = two_companies
    before = snapshot(b.folder)
    targets = {
        "up": f"/../{b.name}",
        "real": str(b.folder),
        "bind": str(b.chroot / b.name),
        "file": f"{b.folder}/secret/02001315/b.tsv",
        "root": "/",
    }
    with sftp_server.sftp(a) as sftp:
        for name, target in targets.items():
            sftp.symlink(target, f"{a.home}/mine/{name}")  # making a link is allowed
        for name in ("up", "real", "bind"):
            assert_refused(lambda n=name: sftp.listdir(f"{a.home}/mine/{n}"), errno.ENOENT)
            assert_refused(
                lambda n=name: sftp.open(f"{a.home}/mine/{n}/secret/02001315/b.tsv", "rb"),
                errno.ENOENT,
            )
            assert_refused(
                lambda n=name: sftp.open(f"{a.home}/mine/{n}/secret/planted.tsv", "wb"),
                errno.ENOENT,
            )
        assert_refused(lambda: sftp.open(f"{a.home}/mine/file", "rb"), errno.ENOENT)
        assert_refused(lambda: sftp.open(f"{a.home}/mine/file", "wb"), errno.ENOENT)
        # Following a link to "/" lands in A's own chroot root.
        assert sftp.listdir(f"{a.home}/mine/root") == [a.name]
    # On the server the links are just names in A's folder; B's files never moved.
    for name in targets:
        assert (a.folder / "mine" / name).is_symlink()
    assert snapshot(b.folder) == before


def test_a_cannot_log_in_as_b_nor_hard_link_b_files(
    sftp_server: SftpServer, two_companies: tuple[Company, Company]
) -> None:
    a, b = two_companies
    before = snapshot(b.folder)
    impostor = Company(b.name, b.data_root, b.chroot, a.key_file, b.uid, b.gid)
    with pytest.raises(paramiko.AuthenticationException):
        sftp_server.ssh_client(impostor).close()

    async def try_hard_links() -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        async with (
            asyncssh.connect(**sftp_server.asyncssh_options(a)) as conn,
            conn.start_sftp_client() as sftp,
        ):
            for source in (
                f"/../{b.name}/secret/02001315/b.tsv",
                f"{b.folder}/secret/02001315/b.tsv",
            ):
                try:
                    await sftp.link(source, f"{a.home}/mine/copy.tsv")  # hardlink@openssh.com
                    outcomes.append(None)
                except asyncssh.SFTPError as exc:
                    outcomes.append(exc)
            outcomes.append(None if await sftp.listdir(a.home) else AssertionError())
        return outcomes

    *links, listing = asyncio.run(try_hard_links())
    assert all(isinstance(exc, asyncssh.SFTPNoSuchFile) for exc in links), links
    assert listing is None
    assert not (a.folder / "mine" / "copy.tsv").exists()
    assert snapshot(b.folder) == before
