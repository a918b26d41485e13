"""Links planted by a hostile SFTP client never carry data across companies.

Each test is the attack, over the real OpenSSH server with symbolic and hard
links ALLOWED (the harness's default): PowerView must not rely on the
shipped `internal-sftp -P symlink,hardlink`. A links its own folders or
files into B's tree; afterwards nothing of A's is in B's tree or bucket,
nothing of B's is in A's bucket, B's files are untouched, the file is
handled with a reason an operator sees, and the worker still ingests.
The last test checks that the shipped restriction is what sshd enforces.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.e2e.sshd import (
    Company,
    HarnessError,
    PowerViewProcesses,
    SftpServer,
    count_points,
    wait_for,
)
from tests.e2e.test_isolation import snapshot
from tests.factories import Export

A_SN = "02001111"
A_PLAIN_SN = "02003333"  # the device of A's plain uploads proving the worker goes on
B_SN = "02002222"
A_FILE = Export(master_sn=A_SN, rows=6, seed=11)
B_FILE = Export(master_sn=B_SN, rows=8, seed=22)
DEPLOY_FRAGMENT = Path(__file__).resolve().parents[2] / "deploy" / "sshd_config.powerview"


class Tenants:
    """Company A (the attacker, one device folder) and company B (a victim with one file)."""

    def __init__(self, server: SftpServer, a: Company, b: Company) -> None:
        self.server, self.a, self.b = server, a, b
        with server.sftp(b) as sftp:
            sftp.mkdir(f"{b.home}/bc")
            sftp.mkdir(f"{b.home}/bc/{B_SN}")
            with sftp.open(f"{b.home}/bc/{B_SN}/b.tsv", "wb") as remote:
                remote.write(B_FILE.text().encode())
        with server.sftp(a) as sftp:
            sftp.mkdir(f"{a.home}/ac")
            sftp.mkdir(f"{a.home}/ac/{A_SN}")

    @property
    def a_device(self) -> Path:
        return self.a.folder / "ac" / A_SN

    @property
    def b_device(self) -> Path:
        return self.b.folder / "bc" / B_SN

    def relative_to_a_device(self, target: Path) -> str:
        """A link target that leads from A's device folder into `target` on the server side."""
        return os.path.relpath(target, self.a_device)


@pytest.fixture
def tenants(sftp_server: SftpServer, new_company: Callable[[], Company]) -> Tenants:
    return Tenants(sftp_server, new_company(), new_company())


def report_for(pv: PowerViewProcesses, name: str, status: str | None = None) -> dict[str, Any]:
    """Wait for the run report of the file named `name` (with `status`, if given)."""

    def found() -> dict[str, Any] | None:
        for entry in pv.reports():
            if entry["file_name"] == name and (status is None or entry["status"] == status):
                return entry
        return None

    return wait_for(f"a report on {name} ({status or 'any status'})", found, 30, describe=pv.logs)


def upload(client: Any, path: str, export: Export) -> None:
    client.put(path, export.text().encode())


def assert_no_crossing(tenants: Tenants, influx: Any, b_before: dict[str, Any]) -> None:
    """B's tree and bucket hold exactly B's; A's bucket holds nothing of B's."""
    a, b = tenants.a.name, tenants.b.name
    assert snapshot(tenants.b.folder) == b_before, "B's tree changed"
    assert count_points(influx, a, device_master_sn=B_SN) == 0
    assert count_points(influx, b, device_master_sn=A_SN) == 0
    own = sum(count_points(influx, a, device_master_sn=sn) for sn in (A_SN, A_PLAIN_SN))
    assert count_points(influx, a) == own


def assert_still_ingesting(pv: PowerViewProcesses, tenants: Tenants, client: Any) -> None:
    """The worker and the watcher are alive and a plain upload of A goes through."""
    client.mkdir(f"{tenants.a.home}/ac/{A_PLAIN_SN}")
    upload(client, f"{tenants.a.home}/ac/{A_PLAIN_SN}/plain.tsv", Export(master_sn=A_PLAIN_SN))
    assert report_for(pv, "plain.tsv", "success")["company"] == tenants.a.name
    assert all(p.poll() is None for p in pv.processes.values()), pv.logs()


def b_ingested(pv: PowerViewProcesses, tenants: Tenants) -> dict[str, Any]:
    """B's own file is ingested first, so B's tree is in its settled state."""
    report_for(pv, "b.tsv", "success")
    return snapshot(tenants.b.folder)


@pytest.mark.parametrize(
    ("outcome", "target"),
    [("parsed", "b-device"), ("parsed", "/"), ("error", "b-device"), ("error", "/")],
)
def test_an_outcome_folder_linked_elsewhere_is_never_followed(
    tenants: Tenants,
    powerview: Callable[..., PowerViewProcesses],
    connect: Callable[..., Any],
    influx: Any,
    outcome: str,
    target: str,
) -> None:
    pv = powerview()
    b_before = b_ingested(pv, tenants)
    root_before = sorted(os.listdir("/"))
    client = connect(tenants.a)
    link_to = tenants.relative_to_a_device(tenants.b_device) if target == "b-device" else "/"
    client.sftp.symlink(link_to, f"{tenants.a.home}/ac/{A_SN}/{outcome}")
    assert (tenants.a_device / outcome).is_symlink()  # the server let A make it
    if outcome == "parsed":
        # A valid file that would be moved to parsed/: refused before any write.
        upload(client, f"{tenants.a.home}/ac/{A_SN}/a.tsv", A_FILE)
        report = report_for(pv, "a.tsv")
        assert report["status"] == "error", report
        assert "parsed/" in report["error"]
        assert "symbolic link" in report["error"]
        assert (tenants.a_device / "error" / "a.tsv").is_file()
        assert count_points(influx, tenants.a.name, device_master_sn=A_SN) == 0
    else:
        # A bad file that would be moved to error/: left where it is, with the reason.
        client.put(f"{tenants.a.home}/ac/{A_SN}/a.tsv", b"not a device export\n")
        report = report_for(pv, "a.tsv")
        assert report["status"] == "skipped", report
        assert "not a known device export" in report["error"]
        assert "error/" in report["error"]
        assert (tenants.a_device / "a.tsv").is_file()
    assert sorted(os.listdir("/")) == root_before
    assert_no_crossing(tenants, influx, b_before)
    assert_still_ingesting(pv, tenants, client)


def test_both_outcome_folders_linked_away_leave_a_valid_file_in_place(
    tenants: Tenants,
    powerview: Callable[..., PowerViewProcesses],
    connect: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview()
    b_before = b_ingested(pv, tenants)
    client = connect(tenants.a)
    for outcome in ("parsed", "error"):
        link = tenants.relative_to_a_device(tenants.b_device)
        client.sftp.symlink(link, f"{tenants.a.home}/ac/{A_SN}/{outcome}")
    upload(client, f"{tenants.a.home}/ac/{A_SN}/a.tsv", A_FILE)
    report = report_for(pv, "a.tsv")
    assert report["status"] == "skipped", report
    assert "left where it is" in report["error"]
    assert (tenants.a_device / "a.tsv").is_file()
    assert_no_crossing(tenants, influx, b_before)
    assert_still_ingesting(pv, tenants, client)


def test_an_upload_that_is_a_symlink_to_another_companys_file_is_not_read(
    tenants: Tenants,
    powerview: Callable[..., PowerViewProcesses],
    connect: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview(scan_interval_s=0.5)  # the periodic scan meets the link too
    b_before = b_ingested(pv, tenants)
    client = connect(tenants.a)
    b_file = tenants.b_device / "parsed" / "b.tsv"
    client.sftp.symlink(tenants.relative_to_a_device(b_file), f"{tenants.a.home}/ac/{A_SN}/x.tsv")
    assert (tenants.a_device / "x.tsv").resolve() == b_file  # it does lead to B's file
    assert_still_ingesting(pv, tenants, client)
    pv.spawn("scan", "queue", "scan")
    assert pv.processes["scan"].wait(timeout=60) == 0, pv.log_tail("scan")
    assert_still_ingesting_again(pv, tenants, client)
    assert (tenants.a_device / "x.tsv").is_symlink()  # left alone, never moved or read
    assert not any(e["file_name"] == "x.tsv" and e["status"] == "success" for e in pv.reports())
    assert_no_crossing(tenants, influx, b_before)


def assert_still_ingesting_again(pv: PowerViewProcesses, tenants: Tenants, client: Any) -> None:
    upload(client, f"{tenants.a.home}/ac/{A_SN}/later.tsv", A_FILE)
    report_for(pv, "later.tsv", "success")


def test_a_hard_link_to_another_of_its_files_is_refused_and_that_file_untouched(
    tenants: Tenants,
    powerview: Callable[..., PowerViewProcesses],
    connect: Callable[..., Any],
    influx: Any,
) -> None:
    pv = powerview()
    b_before = b_ingested(pv, tenants)
    client = connect(tenants.a, "asyncssh")  # paramiko has no hardlink@openssh.com
    notes = f"{tenants.a.home}/ac/{A_SN}/notes.txt"  # not a .tsv: never ingested itself
    client.put(notes, A_FILE.text().encode())
    client._run(client.sftp.link(notes, f"{tenants.a.home}/ac/{A_SN}/x.tsv"))
    report = report_for(pv, "x.tsv")
    assert report["status"] == "error", report
    assert "hard-linked" in report["error"]
    assert (tenants.a_device / "notes.txt").read_bytes() == A_FILE.text().encode()
    assert (tenants.a_device / "error" / "x.tsv").samefile(tenants.a_device / "notes.txt")
    assert count_points(influx, tenants.a.name) == 0
    assert_no_crossing(tenants, influx, b_before)
    assert_still_ingesting(pv, tenants, connect(tenants.a))


@pytest.mark.parametrize("level", ["device", "campaign"])
def test_a_folder_that_is_a_symlink_into_another_company_is_not_walked(
    tenants: Tenants,
    powerview: Callable[..., PowerViewProcesses],
    connect: Callable[..., Any],
    influx: Any,
    level: str,
) -> None:
    pv = powerview(scan_interval_s=0.5)
    client = connect(tenants.a)
    if level == "device":  # A/ac/<B_SN> -> B/bc/<B_SN>
        link = f"{tenants.a.home}/ac/{B_SN}"
        target = os.path.relpath(tenants.b_device, tenants.a.folder / "ac")
    else:  # A/evil -> B/bc
        link = f"{tenants.a.home}/evil"
        target = os.path.relpath(tenants.b.folder / "bc", tenants.a.folder)
    client.sftp.symlink(target, link)
    # B's file sits unprocessed behind A's link while watcher, scans and worker run.
    assert_still_ingesting(pv, tenants, client)
    pv.spawn("scan", "queue", "scan")
    assert pv.processes["scan"].wait(timeout=60) == 0, pv.log_tail("scan")
    assert_still_ingesting_again(pv, tenants, client)
    assert not any(e["file_name"] == "b.tsv" and e["company"] == tenants.a.name
                   for e in pv.reports())  # fmt: skip
    # B's file is B's alone: ingested into B (from B's own folder), once.
    assert report_for(pv, "b.tsv", "success")["company"] == tenants.b.name
    assert (tenants.b_device / "parsed" / "b.tsv").read_bytes() == B_FILE.text().encode()
    assert_no_crossing(tenants, influx, snapshot(tenants.b.folder))


def test_swapping_the_upload_for_a_link_while_it_is_ingested_never_reads_b(
    tenants: Tenants,
    powerview: Callable[..., PowerViewProcesses],
    influx: Any,
) -> None:
    """The check-then-open race: x.tsv flips between A's file and a link to B's file."""
    pv = powerview(settle_s=0.0, scan_interval_s=0.2)
    b_before = b_ingested(pv, tenants)
    device = tenants.a_device
    b_file = tenants.b_device / "parsed" / "b.tsv"
    stop = threading.Event()
    swaps = [0]
    parsed = device / "parsed"

    def flip() -> None:
        # x.tsv always exists: A's file, then (atomically, by rename) a link to B's file.
        name = device / "x.tsv"
        while not stop.is_set():
            A_FILE.write(device / ".a")
            os.rename(device / ".a", name)
            # Short: a check made now is likely followed by an open in the link phase.
            # Every tenth turn A's file stays a while, so that ingestions also get
            # through on a loaded machine (the test waits for three of them).
            time.sleep(0.05 if swaps[0] % 10 == 0 else 0.0005)
            os.symlink(os.path.relpath(b_file, device), device / ".l")  # in the link phase
            os.rename(device / ".l", name)
            swaps[0] += 1
            time.sleep(0.002)

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    try:
        wait_for(
            "PowerView to ingest A's file a few times, over at least 200 swaps",
            lambda: swaps[0] >= 200 and parsed.is_dir() and len(os.listdir(parsed)) >= 3,
            120,
            describe=pv.logs,
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    print(f"{swaps[0]} swaps; A's file moved to parsed/ {len(os.listdir(parsed))} times")
    assert all(p.poll() is None for p in pv.processes.values()), pv.logs()
    assert count_points(influx, tenants.a.name, device_master_sn=A_SN) > 0
    assert_no_crossing(tenants, influx, b_before)
    assert b_file.read_bytes() == B_FILE.text().encode()


def test_the_shipped_sshd_fragment_forbids_links_and_keeps_renames(tmp_path: Path) -> None:
    """What deploy/sshd_config.powerview asks of internal-sftp, sshd enforces."""
    found = re.search(r"ForceCommand internal-sftp .*-P (\S+)", DEPLOY_FRAGMENT.read_text())
    assert found is not None, "the fragment no longer restricts internal-sftp requests"
    denied = found.group(1).split(",")
    assert {"symlink", "hardlink"} <= set(denied)
    assert "posix-rename" not in denied
    server = SftpServer(sftp_denied=found.group(1))
    try:
        server.start()
        company = server.add_company(server.new_data_root())
        with server.sftp(company) as sftp:
            sftp.mkdir(f"{company.home}/c1")
            with sftp.open(f"{company.home}/c1/a.tsv", "wb") as remote:
                remote.write(b"data\n")
            with pytest.raises(PermissionError):  # SSH2_FX_PERMISSION_DENIED
                sftp.symlink("/etc/passwd", f"{company.home}/c1/x.tsv")
            sftp.posix_rename(f"{company.home}/c1/a.tsv", f"{company.home}/c1/b.tsv")
            sftp.rename(f"{company.home}/c1/b.tsv", f"{company.home}/c1/c.tsv")
        with pytest.raises(asyncssh.SFTPError):
            asyncio.run(_hard_link(server, company, f"{company.home}/c1/c.tsv"))
        assert sorted(os.listdir(company.folder / "c1")) == ["c.tsv"]
    except HarnessError as exc:
        pytest.fail(f"the restricted sshd did not start: {exc}")
    finally:
        problems = server.close()
        assert not problems, problems


async def _hard_link(server: SftpServer, company: Company, path: str) -> None:
    async with (
        asyncssh.connect(**server.asyncssh_options(company)) as conn,
        conn.start_sftp_client() as sftp,
    ):
        await sftp.link(path, path + ".link")
