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
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.sshd import HOST, POWERVIEW, Company, SftpServer, count_points, wait_for
from tests.e2e.test_sftp_upload import (
    WIDTH,
    all_parsed,
    cut_export,
    device_folder,
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
    device_dir = device_folder(client, company)
    whole, cut = cut_export()
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
    resumed = time.monotonic()
    assert (device_dir / "day.tsv").read_bytes() == whole  # appended, not uploaded anew

    expected = 145 * WIDTH
    wait_for(
        "the resumed file in parsed/",
        all_parsed([(device_dir, "day.tsv")]),
        timeout_s=60,
        describe=pv.logs,
    )
    print(f"resumed upload in parsed/ {time.monotonic() - resumed:.2f} s after reput ended")
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
    device = f"{company.home}/site/02009999"
    device_dir = device_folder(client, company)
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


# -- the same rights with the worker unit's own user, capabilities and umask ---------------

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "powerview-worker.service"
SERVICE_ID, CLIENT_ID, OTHER_ID = 61_001, 61_002, 61_003  # uids, each its own gid


def unit_setting(name: str) -> str:
    found = re.search(rf"^{name}=(.*)$", UNIT.read_text(), re.MULTILINE)
    assert found is not None, f"{name}= not in {UNIT.name}"
    return found.group(1).strip()


def as_user(uid: int, command: list[str], caps: list[str] = (), **kwargs: Any) -> Any:
    """`command` as `uid` (its own gid, no other group), with `caps` as ambient capabilities."""
    capability_args = []
    if caps:
        wanted = ",".join(f"+{c.removeprefix('CAP_').lower()}" for c in caps)
        capability_args = [f"--inh-caps={wanted}", f"--ambient-caps={wanted}"]
    identity = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return subprocess.run(
        ["setpriv", *identity, *capability_args, *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


@pytest.fixture
def service_site(influxdb: Any) -> Any:
    """A data tree under /var/tmp (reachable by other users), a client's device folder with a
    good and a bad upload, and the service user's state and report folders."""
    base = Path(tempfile.mkdtemp(prefix="powerview-rights-", dir="/var/tmp"))
    company = f"co{secrets.token_hex(5)}"
    try:
        os.chmod(base, 0o755)  # noqa: S103 (other users reach the data root, as in /srv)
        device = base / "data" / company / "c1" / "02009999"
        device.mkdir(parents=True, mode=0o755)
        for folder in (device, device.parent, device.parent.parent):
            os.chown(folder, CLIENT_ID, CLIENT_ID)  # the company's upload user made them
        for name, content in (("good.tsv", small_file(2)), ("bad.tsv", b"no export\n")):
            (device / name).write_bytes(content)
            os.chown(device / name, CLIENT_ID, CLIENT_ID)
        for folder in ("state", "reports"):
            (base / folder).mkdir(mode=0o700)
            os.chown(base / folder, SERVICE_ID, SERVICE_ID)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(base / "state"),
            "POWERVIEW_DATA_ROOT": str(base / "data"),
            "POWERVIEW_STATE_DIR": str(base / "state"),
            "TSV_REPORT_DIR": str(base / "reports"),
            "POWERVIEW_ENV_FILE": str(base / "no.env"),
            "INFLUXDB_URL": influxdb.url,
            "INFLUXDB_ORG": influxdb.org,
            "INFLUXDB_ADMIN_TOKEN": influxdb.token,
            "TSV_META_BUCKET": f"meta_{secrets.token_hex(5)}",
        }
        yield base, device, env
    finally:
        with influxdb.client() as client:
            api = client.buckets_api()
            for name in (company, env["TSV_META_BUCKET"]):
                found = api.find_bucket_by_name(name)
                if found is not None:
                    api.delete_bucket(found)
        shutil.rmtree(base)


def ingest_as_service(device: Path, env: dict[str, str], caps: list[str]) -> Any:
    umask = int(unit_setting("UMask"), 8)
    data = env["POWERVIEW_DATA_ROOT"]
    command = [str(POWERVIEW), "ingest", str(device), "--data-root", data]
    return as_user(SERVICE_ID, command, caps, env=env, cwd=env["HOME"], umask=umask)


def test_with_the_unit_s_user_and_capabilities_the_client_reads_its_outcomes_and_no_one_else(
    service_site: Any,
) -> None:
    _, device, env = service_site
    caps = unit_setting("AmbientCapabilities").split()
    assert "CAP_CHOWN" in caps
    done = ingest_as_service(device, env, caps)
    assert done.returncode == 1, done.stderr  # one file rejected
    assert sorted(os.listdir(device / "parsed")) == ["good.tsv"]
    assert sorted(os.listdir(device / "error")) == ["bad.tsv", "bad.tsv.reason.txt"]
    for outcome in ("parsed", "error"):
        info = (device / outcome).lstat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
            SERVICE_ID,
            CLIENT_ID,
            0o750,
        )
    note = (device / "error" / "bad.tsv.reason.txt").lstat()
    assert (note.st_uid, note.st_gid, stat.S_IMODE(note.st_mode)) == (SERVICE_ID, CLIENT_ID, 0o640)
    assert (device / "parsed" / "good.tsv").stat().st_uid == CLIENT_ID  # still the client's

    error = device / "error"
    listed = as_user(CLIENT_ID, ["ls", str(error)])
    assert listed.stdout.split() == ["bad.tsv", "bad.tsv.reason.txt"], listed.stderr
    read = as_user(CLIENT_ID, ["cat", str(error / "bad.tsv.reason.txt")])
    assert read.stdout.startswith("PowerView did not ingest bad.tsv ("), read.stderr
    for refused in (
        ["touch", str(error / "planted.tsv")],
        ["rm", "-f", str(error / "bad.tsv")],
        ["mv", str(device / "parsed" / "good.tsv"), str(device / "again.tsv")],
    ):
        attempt = as_user(CLIENT_ID, refused)
        assert attempt.returncode != 0, refused
        assert "Permission denied" in attempt.stderr, refused
    assert sorted(os.listdir(error)) == ["bad.tsv", "bad.tsv.reason.txt"]
    # Another company's user (not in the group) lists nothing there.
    other = as_user(OTHER_ID, ["ls", str(error)])
    assert other.returncode != 0
    assert "Permission denied" in other.stderr


def test_without_cap_chown_the_folders_stay_the_service_s_and_the_worker_says_why(
    service_site: Any,
) -> None:
    _, device, env = service_site
    caps = [c for c in unit_setting("AmbientCapabilities").split() if c != "CAP_CHOWN"]
    done = ingest_as_service(device, env, caps)
    assert done.returncode == 1, done.stderr
    info = (device / "error").lstat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (SERVICE_ID, SERVICE_ID, 0o750)
    assert "CAP_CHOWN" in done.stderr
    listed = as_user(CLIENT_ID, ["ls", str(device / "error")])
    assert listed.returncode != 0  # hence CAP_CHOWN in the unit
