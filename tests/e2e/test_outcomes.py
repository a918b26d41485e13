"""What clients see of their uploads, over real SFTP (OpenSSH's internal-sftp):
a cut upload waits for its resumption (`sftp reput`) and is then ingested once;
`parsed/` and `error/` are listed and read by the company's user, never written;
a rejected file has its reason beside it.

The worker runs as root here, as the e2e harness does; the folders' owner,
group and mode are what make the client's rights, and are checked as such.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.sshd import HOST, Company, SftpServer, count_points, wait_for
from tests.e2e.test_sftp_upload import (
    WIDTH,
    all_parsed,
    idle,
    ingest_jobs,
    places,
    points_reach,
    small_file,
    successes,
)

pytestmark = pytest.mark.influxdb


def waiting_jobs(pv: Any) -> list[Any]:
    """Ingestion jobs put off until their cut upload changes (TSV_INCOMPLETE_GRACE_S)."""
    return [j for j in ingest_jobs(pv) if j.state == "queued" and (j.result or {}).get("waiting")]


def sftp_batch(server: SftpServer, company: Company, commands: str) -> None:
    """Run OpenSSH's own `sftp` client with `commands` as its batch, as the company."""
    done = subprocess.run(
        [
            "sftp",
            "-b",
            "-",
            "-i",
            str(company.key_file),
            "-P",
            str(server.port),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            f"{company.name}@{HOST}",
        ],
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"sftp failed:\n{done.stdout}\n{done.stderr}"


def test_a_cut_upload_waits_in_place_and_is_ingested_once_when_sftp_reput_completes_it(
    sftp_server: SftpServer,
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
    influx: Any,
    tmp_path: Path,
) -> None:
    # A grace far longer than the test: only the resumed upload can end the wait.
    pv = powerview(extra_env={"TSV_INCOMPLETE_GRACE_S": "600"})
    client = connect(company)
    client.mkdir(f"{company.home}/site")
    client.mkdir(f"{company.home}/site/02009999")
    device_dir = company.folder / "site" / "02009999"
    whole = small_file(0, rows=145)
    cut = whole[: len(whole) // 2]
    assert not cut.endswith(b"\n")  # cut in the middle of a row, END_DATA missing
    remote = f"{company.home}/site/02009999/day.tsv"
    client.put(remote, cut)  # closed as a complete upload would be

    wait_for("the worker to put the cut file off", lambda: waiting_jobs(pv), describe=pv.logs)
    [job] = waiting_jobs(pv)
    assert "incomplete file" in job.result["waiting"]
    assert "TSV_INCOMPLETE_GRACE_S=600" in (job.last_error or "")  # shown by `powerview queue`
    assert sorted(os.listdir(device_dir)) == ["day.tsv"]  # in place, nothing moved
    assert (device_dir / "day.tsv").read_bytes() == cut
    assert pv.reports() == []
    assert count_points(influx, company.name) == 0

    (tmp_path / "day.tsv").write_bytes(whole)
    sftp_batch(sftp_server, company, f"reput {tmp_path / 'day.tsv'} {remote}\n")
    assert (device_dir / "day.tsv").read_bytes() == whole  # appended, not uploaded anew

    expected = 145 * WIDTH
    wait_for(
        "the resumed file in parsed/",
        all_parsed([(device_dir, "day.tsv")]),
        timeout_s=60,
        describe=pv.logs,
    )
    wait_for("its points", points_reach(influx, company, expected))
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)
    assert count_points(influx, company.name) == expected
    assert places(device_dir, "day.tsv") == ["parsed/day.tsv"]
    assert (device_dir / "parsed" / "day.tsv").read_bytes() == whole
    assert len(successes(pv, device_dir / "day.tsv")) == 1
    assert [f["status"] for f in pv.reports()] == ["success"]


def test_clients_list_and_read_their_outcomes_and_reasons_but_cannot_write_there(
    company: Company,
    connect: Callable[..., Any],
    powerview: Callable[..., Any],
) -> None:
    pv = powerview()
    client = connect(company)
    client.mkdir(f"{company.home}/site")
    client.mkdir(f"{company.home}/site/02009999")
    device = f"{company.home}/site/02009999"
    device_dir = company.folder / "site" / "02009999"
    client.put(f"{device}/good.tsv", small_file(1))
    client.put(f"{device}/bad.tsv", b"this is no export\n")
    wait_for("good.tsv in parsed/", all_parsed([(device_dir, "good.tsv")]), describe=pv.logs)
    wait_for(
        "bad.tsv and its reason in error/",
        lambda: (device_dir / "error" / "bad.tsv.reason.txt").exists(),
        describe=pv.logs,
    )
    wait_for("the queue to be idle", idle(pv), describe=pv.logs)

    for outcome in ("parsed", "error"):
        info = (device_dir / outcome).lstat()
        assert (info.st_uid, info.st_gid) == (os.geteuid(), company.gid), outcome
        assert stat.S_IMODE(info.st_mode) == 0o750, outcome
    note = (device_dir / "error" / "bad.tsv.reason.txt").lstat()
    assert (note.st_gid, stat.S_IMODE(note.st_mode)) == (company.gid, 0o640)

    # What the client sees, as the client.
    assert client.listdir(f"{device}/parsed") == ["good.tsv"]
    assert client.listdir(f"{device}/error") == ["bad.tsv", "bad.tsv.reason.txt"]
    with client.sftp.open(f"{device}/error/bad.tsv.reason.txt", "r") as remote:
        reason = remote.read().decode()
    [entry] = [f for f in pv.reports() if f["file_name"] == "bad.tsv"]
    assert entry["reason_file"] == str(device_dir / "error" / "bad.tsv.reason.txt")
    assert reason.startswith("PowerView did not ingest bad.tsv (")
    assert f"Why: {entry['error']}\n" in reason
    with client.sftp.open(f"{device}/parsed/good.tsv", "r") as remote:
        assert remote.read() == small_file(1)

    # ... and what it cannot do there.
    attempts: list[Callable[[], Any]] = [
        lambda: client.put(f"{device}/error/planted.tsv", b"x"),
        lambda: client.put(f"{device}/error/bad.tsv.reason.txt", b"all fine"),
        lambda: client.sftp.remove(f"{device}/error/bad.tsv"),
        lambda: client.sftp.remove(f"{device}/parsed/good.tsv"),
        lambda: client.sftp.posix_rename(f"{device}/parsed/good.tsv", f"{device}/again.tsv"),
        lambda: client.mkdir(f"{device}/parsed/sub"),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError) as refused:
            attempt()
        assert refused.value.errno == errno.EACCES
    assert client.listdir(f"{device}/error") == ["bad.tsv", "bad.tsv.reason.txt"]
    assert client.listdir(f"{device}/parsed") == ["good.tsv"]
    assert "Why: " in (device_dir / "error" / "bad.tsv.reason.txt").read_text()
