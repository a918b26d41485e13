"""Any bytes in a name: set aside with a visible reason, and everything else goes on.

A client names its files and folders with any bytes (paramiko sends bytes
paths as they are): not UTF-8, newlines, tabs, escape sequences, 255 bytes.
Uploaded over the real OpenSSH server, followed by a valid file of another
company: the watcher, the scan and the worker keep running, the valid file
is ingested, a file whose name PowerView cannot represent lands in its
`error/` with the reason in its run report and in `powerview queue`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

from tests.e2e.sshd import POWERVIEW, Company, PowerViewProcesses, SftpServer, count_points
from tests.factories import Export
from tests.security.test_links import report_for

SN = "02004444"
VALID = Export(master_sn=SN, rows=5, seed=4)
# name → the reason PowerView gives (None: a plain name, ingested)
NAMES: dict[bytes, str | None] = {
    b"\xff\xfe.tsv": "file name is not valid UTF-8",
    b"caf\xe9.tsv": "file name is not valid UTF-8",
    b"new\nline.tsv": "control characters",
    b"tab\there.tsv": "control characters",
    b"esc\x1b[31mred.tsv": "control characters",
    b"x" * 251 + b".tsv": None,  # 255 bytes, the longest name Linux takes
}


def shown(name: bytes) -> str:
    """How reports and the queue print a name (see upload_file.display)."""
    from powerview.upload_file import display

    return display(name)


def cli(pv: PowerViewProcesses, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(POWERVIEW), *args],
        env={**_clean_environb(), **{k.encode(): v.encode() for k, v in pv.env.items()}},
        cwd=pv.state_dir.parent,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _clean_environb() -> dict[bytes, bytes]:
    prefixes = (b"POWERVIEW_", b"INFLUXDB_", b"TSV_", b"GRAFANA_", b"SFTPGO_")
    return {k: v for k, v in os.environb.items() if not k.startswith(prefixes)}


def test_odd_names_are_set_aside_and_the_next_company_is_ingested(
    sftp_server: SftpServer,
    new_company: Callable[[], Company],
    powerview: Callable[..., PowerViewProcesses],
    influx: Any,
) -> None:
    a, b = new_company(), new_company()
    pv = powerview(scan_interval_s=1.0)
    device = os.fsencode(a.folder / "c1" / SN)
    with sftp_server.sftp(a) as sftp:
        sftp.mkdir(f"{a.home}/c1")
        sftp.mkdir(f"{a.home}/c1/{SN}")
        for name in NAMES:
            with sftp.open(os.fsencode(f"{a.home}/c1/{SN}/") + name, "wb") as remote:
                remote.write(VALID.text().encode())
        # A campaign folder breaking the name rule (not UTF-8), with a file in it.
        odd_campaign = os.fsencode(a.home) + b"/caf\xe9"
        sftp.mkdir(odd_campaign)
        sftp.mkdir(odd_campaign + f"/{SN}".encode())
        with sftp.open(odd_campaign + f"/{SN}/f.tsv".encode(), "wb") as remote:
            remote.write(VALID.text().encode())
    with sftp_server.sftp(b) as sftp:
        sftp.mkdir(f"{b.home}/c1")
        sftp.mkdir(f"{b.home}/c1/{SN}")
        with sftp.open(f"{b.home}/c1/{SN}/b.tsv", "wb") as remote:
            remote.write(VALID.text().encode())

    assert report_for(pv, "b.tsv", "success")["company"] == b.name
    assert count_points(influx, b.name) > 0
    for name, reason in NAMES.items():
        report = report_for(pv, shown(name))
        if reason is None:
            assert report["status"] == "success", report
            assert os.path.exists(os.path.join(device, b"parsed", name))
        else:
            assert report["status"] == "error", report
            assert reason in report["error"]
            assert report["company"] == a.name
            assert os.path.exists(os.path.join(device, b"error", name))
    # The file below the badly named campaign is ignored (the watcher logs why), untouched.
    assert os.path.exists(os.fsencode(a.folder) + f"/caf\xe9/{SN}/f.tsv".encode("latin-1"))

    # Everything still runs and answers.
    assert all(p.poll() is None for p in pv.processes.values()), pv.logs()
    scan = cli(pv, "queue", "scan")
    assert scan.returncode == 0, scan.stderr.decode(errors="replace")
    queue = cli(pv, "queue", "--all")
    assert queue.returncode == 0, queue.stderr.decode(errors="replace")
    assert shown(b"\xff\xfe.tsv").encode() in queue.stdout
    listing = cli(pv, "queue", "--all", "--json")
    assert listing.returncode == 0, listing.stderr.decode(errors="replace")
    jobs = json.loads(listing.stdout)["jobs"]
    paths = {os.fsencode(j["payload"]["path"]) for j in jobs if j["kind"] == "ingest"}
    assert os.path.join(device, b"\xff\xfe.tsv") in paths  # stored losslessly
    assert count_points(influx, a.name) > 0  # the 255-byte name went in
    assert all(p.poll() is None for p in pv.processes.values()), pv.logs()


def test_the_hook_queues_a_non_utf8_path_and_the_worker_sets_it_aside(
    sftp_server: SftpServer,
    company: Company,
    powerview: Callable[..., PowerViewProcesses],
) -> None:
    pv = powerview(watch=False, worker=False)
    name = b"\xe9t\xe9\n.tsv"
    with sftp_server.sftp(company) as sftp:
        sftp.mkdir(f"{company.home}/c1")
        sftp.mkdir(f"{company.home}/c1/{SN}")
        with sftp.open(os.fsencode(f"{company.home}/c1/{SN}/") + name, "wb") as remote:
            remote.write(VALID.text().encode())
    path = os.fsencode(company.folder / "c1" / SN) + b"/" + name
    env = {
        **_clean_environb(),
        **{k.encode(): v.encode() for k, v in pv.env.items()},
        b"SFTPGO_ACTION": b"upload",
        b"SFTPGO_ACTION_USERNAME": company.name.encode(),
        b"SFTPGO_ACTION_PATH": path,
        b"SFTPGO_ACTION_STATUS": b"1",
    }
    hook = subprocess.run(
        [str(POWERVIEW), "hook"], env=env, cwd=pv.state_dir.parent, capture_output=True, timeout=60
    )
    assert hook.returncode == 0, hook.stderr.decode(errors="replace")
    (job,) = pv.jobs()
    assert job.kind == "ingest"
    assert os.fsencode(job.payload["path"]) == path
    assert "\\xe9t\\xe9" in job.subject
    pv.start_worker()
    report = report_for(pv, shown(name))
    assert report["status"] == "error", report
    assert "not valid UTF-8" in report["error"]
    assert os.path.exists(os.fsencode(company.folder / "c1" / SN / "error") + b"/" + name)
