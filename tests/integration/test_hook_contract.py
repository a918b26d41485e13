"""`powerview hook` run exactly as SFTPGo runs it.

SFTPGo (internal/common/actions.go, `handleCommand`) starts the hook with a
cleared environment: only `command.env` (here PATH, HOME and the PowerView
settings the deployment passes) plus the SFTPGO_ACTION* variables of SFTPGo's
documented hook contract (deploy/README.md), every one of them set, empty when
it does not apply.
Each case checks the exit status (0 for anything handled or ignored), the time
(a generous bound that only catches hangs) and the queue file afterwards.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from powerview.provision.tokens import read_token, revoke_tokens
from tests.integration.helpers_events import (
    Site,
    count_points,
    delete_bucket,
    files_under,
    influx_env,
    make_site,
    new_company,
    run,
)

SN = "02001084"
HANG_BOUND_S = 3.0  # not a speed goal (that is bench/): only "it did not hang"
TIMES: list[float] = []


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = make_site(tmp_path / "site")
    (site.data / "acme" / "c1" / SN).mkdir(parents=True)
    (site.data / "globex" / "g1" / SN).mkdir(parents=True)
    return site


def sftpgo_event(
    site: Site,
    action: str,
    user: str,
    path: str | Path,
    target: str | Path = "",
    status: int = 1,
    size: int = 0,
) -> dict[str, str]:
    """The environment of one hook call: command.env plus SFTPGo's notification variables."""
    home = site.data / user

    def virtual(value: str | Path) -> str:
        text = str(value)
        if text.startswith(f"{home}/"):
            return text[len(str(home)) :]
        return text  # a path SFTPGo would never send: passed as it is

    env = site.base_env()
    env.update(
        {
            "SFTPGO_ACTION": action,
            "SFTPGO_ACTION_USERNAME": user,
            "SFTPGO_ACTION_PATH": str(path),
            "SFTPGO_ACTION_TARGET": str(target),
            "SFTPGO_ACTION_VIRTUAL_PATH": virtual(path),
            "SFTPGO_ACTION_VIRTUAL_TARGET": virtual(target) if target else "",
            "SFTPGO_ACTION_SSH_CMD": "",
            "SFTPGO_ACTION_FILE_SIZE": str(size),
            "SFTPGO_ACTION_ELAPSED": "37",
            "SFTPGO_ACTION_FS_PROVIDER": "0",
            "SFTPGO_ACTION_BUCKET": "",
            "SFTPGO_ACTION_ENDPOINT": "",
            "SFTPGO_ACTION_STATUS": str(status),
            "SFTPGO_ACTION_PROTOCOL": "SFTP",
            "SFTPGO_ACTION_IP": "192.0.2.10",
            "SFTPGO_ACTION_SESSION_ID": uuid.uuid4().hex,
            "SFTPGO_ACTION_OPEN_FLAGS": "577" if "upload" in action else "0",
            "SFTPGO_ACTION_TIMESTAMP": str(time.time_ns()),
            "SFTPGO_ACTION_ROLE": "",
        }
    )
    return env


def hook(site: Site, env: dict[str, str]):
    """Run the hook; check the part of the contract every event shares."""
    done, seconds = run(["hook"], env, cwd=site.home, timeout=60)
    TIMES.append(seconds)
    print(f"hook {env.get('SFTPGO_ACTION')!r}: exit {done.returncode} in {seconds:.3f} s")
    assert "Traceback" not in done.stderr, done.stderr
    assert seconds < HANG_BOUND_S, f"the hook took {seconds:.2f} s"
    return done


# (id, action, status, user, path, target, expected job: ("ingest", path) or
#  ("provision", "company/campaign") or None). Paths: "{d}" is the data root.
F = f"{{d}}/acme/c1/{SN}"
CASES = [
    ("upload", "upload", 1, "acme", f"{F}/x.tsv", "", ("ingest", f"{F}/x.tsv")),
    ("first-upload", "first-upload", 1, "acme", f"{F}/x.tsv", "", ("ingest", f"{F}/x.tsv")),
    ("upload-failed", "upload", 2, "acme", f"{F}/x.tsv", "", None),
    ("upload-quota", "upload", 3, "acme", f"{F}/x.tsv", "", None),
    ("upload-filepart", "upload", 1, "acme", f"{F}/x.tsv.filepart", "", None),
    ("upload-atomic-temp", "upload", 1, "acme", f"{F}/.sftpgo-upload.7.x.tsv", "", None),
    ("upload-parsed", "upload", 1, "acme", f"{F}/parsed/x.tsv", "", None),
    ("upload-campaign-level", "upload", 1, "acme", "{d}/acme/c1/x.tsv", "", None),
    ("rename-to-final", "rename", 1, "acme", f"{F}/x.tsv.filepart", f"{F}/x.tsv",
     ("ingest", f"{F}/x.tsv")),
    ("rename-to-temp", "rename", 1, "acme", f"{F}/x.tsv", f"{F}/x.tsv.filepart", None),
    ("mkdir-campaign", "mkdir", 1, "acme", "{d}/acme/c2", "", ("provision", "acme/c2")),
    ("mkdir-device", "mkdir", 1, "acme", "{d}/acme/c1/02000800", "", None),
    ("mkdir-parsed", "mkdir", 1, "acme", f"{F}/parsed", "", None),
    ("mkdir-company", "mkdir", 1, "acme", "{d}/acme", "", None),
    ("download", "download", 1, "acme", f"{F}/x.tsv", "", None),
    ("pre-upload", "pre-upload", 1, "acme", f"{F}/x.tsv", "", None),
    ("delete", "delete", 1, "acme", f"{F}/x.tsv", "", None),
    ("rmdir", "rmdir", 1, "acme", "{d}/acme/c1", "", None),
    ("ssh_cmd", "ssh_cmd", 1, "acme", f"{F}/x.tsv", "", None),
    ("copy", "copy", 1, "acme", f"{F}/y.tsv", f"{F}/x.tsv", None),
    # hostile
    ("outside-root", "upload", 1, "acme", "/etc/passwd", "", None),
    ("sibling-root", "upload", 1, "acme", f"{{d}}2/acme/c1/{SN}/x.tsv", "", None),
    ("dotdot", "upload", 1, "acme", f"{{d}}/acme/c1/../../globex/g1/{SN}/x.tsv", "", None),
    ("relative", "upload", 1, "acme", f"acme/c1/{SN}/x.tsv", "", None),
    ("symlink-out", "upload", 1, "acme", "{d}/acme/c1/evil/x.tsv", "", None),
    ("symlink-out-rename", "rename", 1, "acme", f"{F}/x.part", "{d}/acme/c1/evil/x.tsv", None),
    ("shell-campaign", "mkdir", 1, "acme", "{d}/acme/$(touch pwned)", "", None),
    ("semicolon-device", "upload", 1, "acme", "{d}/acme/c1/a;touch pwned/x.tsv", "", None),
    ("space-campaign", "upload", 1, "acme", f"{{d}}/acme/my campaign/{SN}/x.tsv", "", None),
    ("unicode-campaign", "mkdir", 1, "acme", "{d}/acme/caf\u00e9", "", None),
    ("long-campaign", "mkdir", 1, "acme", "{d}/acme/" + "c" * 64, "", None),
    # queued: the worker sets a name it cannot represent aside in error/, with the reason
    ("newline", "upload", 1, "acme", f"{F}/x\n.tsv", "", ("ingest", f"{F}/x\n.tsv")),
    ("newline-folder", "upload", 1, "acme", f"{{d}}/acme/c\n1/{SN}/x.tsv", "", None),
    ("other-company", "upload", 1, "acme", f"{{d}}/globex/g1/{SN}/x.tsv", "", None),
    ("other-company-mkdir", "mkdir", 1, "acme", "{d}/globex/g2", "", None),
    ("other-company-rename", "rename", 1, "acme", f"{F}/x.part", f"{{d}}/globex/g1/{SN}/x.tsv",
     None),
    ("no-user", "upload", 1, "", f"{F}/x.tsv", "", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "status", "user", "path", "target", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_event_exits_0_fast_and_queues_the_expected_job(
    site: Site,
    tmp_path: Path,
    action: str,
    status: int,
    user: str,
    path: str,
    target: str,
    expected: tuple[str, str] | None,
) -> None:
    d = str(site.data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.tsv").write_text("not yours\n")
    (site.data / "acme" / "c1" / "evil").symlink_to(outside)
    upload = site.data / "acme" / "c1" / SN / "x.tsv"
    upload.write_text("uploaded\n")
    before = files_under(site.data)

    env = sftpgo_event(site, action, user, path.format(d=d), target.format(d=d), status=status)
    done = hook(site, env)

    assert done.returncode == 0, done.stderr
    jobs = site.jobs()
    if expected is None:
        assert jobs == [], [j.key for j in jobs]
        assert "ignored" in done.stderr
    else:
        kind, subject = expected
        subject = subject.format(d=d)
        assert [(j.kind, j.key, j.state) for j in jobs] == [(kind, f"{kind}:{subject}", "queued")]
        job = jobs[0]
        assert job.source == f"sftpgo:{action}"
        if kind == "ingest":
            assert job.payload == {
                "path": subject,
                "company": "acme",
                "campaign": "c1",
                "device_sn": SN,
                "complete": True,  # SFTPGo reported the transfer finished: no settle wait
            }
        else:
            company, campaign = subject.split("/")
            assert job.payload == {"company": company, "campaign": campaign}
        assert "queued" in done.stderr
    # The hook only queues: it never moves, ingests or creates anything in the tree.
    assert files_under(site.data) == before
    assert upload.read_text() == "uploaded\n"
    assert not list(site.home.rglob("pwned"))
    assert not (site.data / "acme" / "pwned").exists()


def test_filepart_upload_then_rename_is_one_ingest_job(site: Site) -> None:
    folder = site.data / "acme" / "c1" / SN
    temp, final = folder / "x.tsv.filepart", folder / "x.tsv"
    temp.write_text("data\n")
    done = hook(site, sftpgo_event(site, "upload", "acme", temp, size=5))
    assert done.returncode == 0
    assert site.jobs() == []
    temp.rename(final)
    done = hook(site, sftpgo_event(site, "rename", "acme", temp, final))
    assert done.returncode == 0
    # a client that also reports the final name (or a retried event) changes nothing
    assert hook(site, sftpgo_event(site, "upload", "acme", final, size=5)).returncode == 0
    jobs = site.jobs()
    assert [(j.kind, j.payload["path"]) for j in jobs] == [("ingest", str(final))]
    assert jobs[0].source == "sftpgo:rename"


def test_atomic_upload_mode_reports_the_final_path_once(site: Site) -> None:
    """upload_mode 1: written to .sftpgo-upload.<id>.<name>, renamed on close, then one
    `upload` event carrying the final path (no rename event)."""
    folder = site.data / "acme" / "c1" / SN
    temp, final = folder / ".sftpgo-upload.3f9a.x.tsv", folder / "x.tsv"
    temp.write_text("data\n")
    temp.rename(final)
    done = hook(site, sftpgo_event(site, "upload", "acme", final, size=5))
    assert done.returncode == 0
    assert [(j.kind, j.payload["path"]) for j in site.jobs()] == [("ingest", str(final))]


def test_a_failed_upload_then_a_complete_one_is_one_job(site: Site) -> None:
    final = site.data / "acme" / "c1" / SN / "x.tsv"
    final.write_text("da")
    assert hook(site, sftpgo_event(site, "upload", "acme", final, status=2, size=2)).returncode == 0
    assert site.jobs() == []
    final.write_text("data\n")
    assert hook(site, sftpgo_event(site, "upload", "acme", final, size=5)).returncode == 0
    assert [j.payload["path"] for j in site.jobs()] == [str(final)]


def test_hooks_running_at_once_on_a_new_state_folder_each_queue_their_job(site: Site) -> None:
    """SFTPGo runs hooks in the background, many at once: the first ones create the queue."""
    folder = site.data / "acme" / "c1" / SN
    envs = [sftpgo_event(site, "upload", "acme", folder / f"f{i:02d}.tsv") for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda env: run(["hook"], env, cwd=site.home), envs))
    print("8 hooks at once:", ", ".join(f"{s:.2f}" for _, s in results), "s")
    assert [done.returncode for done, _ in results] == [0] * 8, [d.stderr for d, _ in results]
    assert sorted(j.payload["path"] for j in site.jobs()) == sorted(
        str(folder / f"f{i:02d}.tsv") for i in range(8)
    )


def test_the_user_company_map_comes_through_the_environment(site: Site) -> None:
    folder = site.data / "acme" / "c1" / SN
    for user in ("alice", "bob", "acme"):  # alice is acme's, bob globex's, acme itself
        env = sftpgo_event(site, "upload", user, folder / f"{user}.tsv")
        env["POWERVIEW_USER_COMPANY_MAP"] = "alice=acme,bob=globex"
        assert hook(site, env).returncode == 0
    paths = sorted(j.payload["path"] for j in site.jobs())
    assert paths == [str(folder / "acme.tsv"), str(folder / "alice.tsv")]


def test_settings_can_come_from_an_env_file(site: Site) -> None:
    """A deployment may pass only POWERVIEW_ENV_FILE through command.env (its values may
    hold commas, which SFTPGo's comma-separated env list cannot carry)."""
    env_file = site.home / "hook.env"
    env_file.write_text(
        f"POWERVIEW_DATA_ROOT={site.data}\n"
        f"POWERVIEW_STATE_DIR={site.state}\n"
        "POWERVIEW_USER_COMPANY_MAP=alice=acme,bob=globex\n"
    )
    file = site.data / "acme" / "c1" / SN / "x.tsv"
    env = sftpgo_event(site, "upload", "alice", file)
    del env["POWERVIEW_DATA_ROOT"], env["POWERVIEW_STATE_DIR"]
    env["POWERVIEW_ENV_FILE"] = str(env_file)
    assert hook(site, env).returncode == 0
    assert [j.payload["path"] for j in site.jobs()] == [str(file)]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POWERVIEW_USER_COMPANY_MAP", "alice"),
        ("POWERVIEW_USER_COMPANY_MAP", "alice=acme,=globex"),
        ("TSV_LOG_LEVEL", "LOUD"),
        ("POWERVIEW_SETTLE_S", "soon"),
    ],
)
def test_a_misconfiguration_fails_with_one_clear_line(
    site: Site, variable: str, value: str
) -> None:
    file = site.data / "acme" / "c1" / SN / "x.tsv"
    env = sftpgo_event(site, "upload", "acme", file)
    env[variable] = value
    done = hook(site, env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("powerview: configuration error: ")
    assert variable in lines[0]
    assert site.jobs() == []


def test_hook_times(site: Site) -> None:
    """Print what the hook costs here (the contract's bound is generous on purpose)."""
    file = site.data / "acme" / "c1" / SN / "x.tsv"
    for _ in range(3):
        hook(site, sftpgo_event(site, "upload", "acme", file))
    print(
        f"hook wall time over {len(TIMES)} runs: median {statistics.median(TIMES):.3f} s, "
        f"max {max(TIMES):.3f} s"
    )


# -- then the worker ---------------------------------------------------------------------------


@pytest.fixture
def company(influx_client: InfluxDBClient, influxdb, site: Site):
    name = new_company()
    yield name
    revoke_tokens(influx_client, influxdb.org, name, site.state / "secrets")
    delete_bucket(influx_client, name)


def test_hook_events_then_the_worker_ingest_and_provision(
    site: Site, company: str, influxdb, influx_client: InfluxDBClient, samples: Path
) -> None:
    campaign = site.data / company / "v002-header"
    device = campaign / "02001315"
    device.mkdir(parents=True)
    name = "T302_260909_031459_UTC.tsv"
    temp = device / f"{name}.filepart"
    shutil.copy(samples / "acme" / "v002-header" / "02001315" / name, temp)

    for env in (
        sftpgo_event(site, "mkdir", company, campaign),
        sftpgo_event(site, "mkdir", company, device),
        sftpgo_event(site, "upload", company, temp, size=temp.stat().st_size),
    ):
        assert hook(site, env).returncode == 0
    os.rename(temp, device / name)
    assert hook(site, sftpgo_event(site, "rename", company, temp, device / name)).returncode == 0
    assert [j.kind for j in site.jobs()] == ["provision", "ingest"]

    done, seconds = run(
        ["worker", "--until-idle", "--scan-interval", "0"],
        influx_env(site, influxdb),
        cwd=site.home,
        timeout=120,
    )
    print(f"worker --until-idle: {seconds:.2f} s")
    assert done.returncode == 0, done.stderr

    jobs = {j.kind: j for j in site.jobs()}
    assert {k: j.state for k, j in jobs.items()} == {"provision": "done", "ingest": "done"}
    assert jobs["provision"].result["token_created"] is True
    assert jobs["ingest"].result["status"] == "success"
    assert jobs["ingest"].result["points"] == 1488  # 62 rows x 24 channels (samples README)
    assert files_under(campaign) == [f"02001315/parsed/{name}"]
    assert count_points(influx_client, company) == 1488
    assert read_token(site.state / "secrets", company)
    assert len(list(site.reports.glob("tsv_run_*.json"))) == 1
