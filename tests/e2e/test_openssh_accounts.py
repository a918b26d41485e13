"""OpenSSH company accounts made by `powerview tenant create --sftp-key`, for real (root).

The accounts are real system users, chroots and bind mounts; the server is Debian's
sshd started with the shipped deploy/sshd_config.powerview, its paths and group
pointed at this test's folder (the same substitution an operator's settings make);
uploads go through it with the company's private key and reach the real InfluxDB
through `powerview watch` and `worker`. Every test makes users of its own (random
names) and its finalizer removes them, their mounts and their group, whatever failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import pytest
from influxdb_client import InfluxDBClient

from powerview import cli
from powerview import settings as config
from powerview.host import user_exists
from powerview.provision.downsample import remove_downsampling
from powerview.settings import Settings
from tests.conftest import InfluxInstance
from tests.e2e.sshd import (
    SRV,
    Company,
    HarnessError,
    PowerViewProcesses,
    SftpServer,
    count_points,
    wait_for,
)

DEPLOY_FRAGMENT = Path(__file__).resolve().parents[2] / "deploy" / "sshd_config.powerview"
SAMPLE = Path("acme/v002-header/02001315/T302_260909_031459_UTC.tsv")
SAMPLE_POINTS = 1_488  # tests/samples/README.md: 62 rows x 24 channels
FSTAB_START = "# the test's own fstab: PowerView adds its bind mounts here\n"


def _default(name: str) -> str:
    return str(Settings.model_fields[name].default)


def shipped_fragment(group: str, chroot_base: Path, keys_dir: Path) -> str:
    """deploy/sshd_config.powerview with the settings' default paths and group replaced.

    The fragment must name exactly the defaults PowerView writes to, or this fails.
    """
    text = DEPLOY_FRAGMENT.read_text()
    chroot, keys = _default("chroot_base"), _default("authorized_keys_dir")
    upload_group = _default("upload_group")
    for line in (
        f"Match Group {upload_group}",
        f"ChrootDirectory {chroot}/%u",
        f"AuthorizedKeysFile {keys}/%u",
    ):
        assert f"\n{line}\n" in text or f"    {line}\n" in text, f"the fragment lacks {line!r}"
    text = text.replace(f"Match Group {upload_group}", f"Match Group {group}")
    return text.replace(chroot, str(chroot_base)).replace(keys, str(keys_dir))


def mounted(point: Path) -> bool:
    with open("/proc/self/mountinfo") as table:
        return str(point) in [line.split()[4] for line in table]


def processes_of(uid: int) -> list[int]:
    """The processes whose real, effective, saved or file-system uid is `uid`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{entry}/status").read_text()
            uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
            if str(uid) in uids.split()[1:]:
                found.append(int(entry))
    return found


@dataclass
class Site:
    """One OpenSSH deployment under /srv/powerview-openssh-<hex>, with its own sshd."""

    base: Path
    group: str
    data_root: Path
    tmp: Path
    server: SftpServer
    users: list[str] = field(default_factory=list)
    companies: list[str] = field(default_factory=list)

    @property
    def chroot_base(self) -> Path:
        return self.base / "chroot"

    @property
    def keys_dir(self) -> Path:
        return self.base / "keys"

    @property
    def fstab(self) -> Path:
        return self.base / "fstab"

    def env(self) -> dict[str, str]:
        return {
            "POWERVIEW_SFTP_SERVER": "openssh",
            "POWERVIEW_UPLOAD_GROUP": self.group,
            "POWERVIEW_CHROOT_BASE": str(self.chroot_base),
            "POWERVIEW_AUTHORIZED_KEYS_DIR": str(self.keys_dir),
            "POWERVIEW_FSTAB": str(self.fstab),
            "POWERVIEW_DATA_ROOT": str(self.data_root),
        }

    def company(self, label: str) -> str:
        """A company name of its own, e.g. acme3fa2c1 (its user has the same name)."""
        name = f"{label}{secrets.token_hex(3)}"
        self.companies.append(name)
        self.users.append(name)
        return name

    def key(self, name: str) -> tuple[Path, Path]:
        """A new ed25519 key pair: (private, public)."""
        private = self.tmp / f"{name}-{secrets.token_hex(2)}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(private)],
            check=True,
        )
        return private, private.with_suffix(".pub")

    def login(self, user: str, private: Path) -> Company:
        """The harness's view of an account, to connect with `server.sftp()`."""
        info = pwd.getpwnam(user)
        return Company(user, self.data_root, self.chroot_base / user, private, info.pw_uid, -1)


def tenant(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """`powerview tenant ARGS --json`: its status, its document, and stderr."""
    capsys.readouterr()
    status = cli.run(["tenant", *args, "--json"])
    captured = capsys.readouterr()
    document = json.loads(captured.out) if captured.out.strip() else {}
    return status, document, captured.err


def resources(document: dict[str, Any]) -> list[str]:
    return [f"{c['action']} {c['resource']}" for c in document["openssh"]["changes"]]


def _undo(site: Site, influx: InfluxDBClient) -> list[str]:
    """Remove everything the test made; each step tried whatever failed before."""
    problems: list[str] = []
    try:
        site.server.close()
    except Exception as exc:
        problems.append(f"stopping sshd: {exc}")
    for user in site.users:
        if user_exists(user):
            for pid in processes_of(pwd.getpwnam(user).pw_uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        point = site.chroot_base / user / user
        for _ in range(50):
            if not mounted(point):
                break
            subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if mounted(point):
            problems.append(f"{point} still mounted")
        if user_exists(user):
            done = subprocess.run(["userdel", "--force", user], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"userdel {user}: {done.stderr}")
    subprocess.run(["groupdel", site.group], capture_output=True, check=False)
    settings = config.load()
    for company in site.companies:
        try:
            remove_downsampling(influx, settings, company)
        except Exception as exc:
            problems.append(f"InfluxDB cleanup of {company}: {exc}")
    if not any(mounted(site.chroot_base / u / u) for u in site.users):
        shutil.rmtree(site.base, ignore_errors=True)
    return problems


@pytest.fixture
def site(
    data_root: Path,
    tmp_path: Path,
    influxdb: InfluxInstance,
    influx: InfluxDBClient,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    base = SRV / f"powerview-openssh-{secrets.token_hex(4)}"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)  # noqa: S103 (sshd: every folder of a chroot path root-owned, 0755)
    group = f"pvup{secrets.token_hex(3)}"
    server = SftpServer(base=base / "sshd", allow_groups=group)
    made = Site(base, group, data_root.resolve(), tmp_path, server)
    server.fragment = shipped_fragment(group, made.chroot_base, made.keys_dir)
    made.fstab.write_text(FSTAB_START)
    monkeypatch.chdir(tmp_path)
    for key in ("GRAFANA_URL", "POWERVIEW_USER_COMPANY_MAP", "POWERVIEW_ENV_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        **made.env(),
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
    }.items():
        monkeypatch.setenv(key, value)
    try:
        try:
            server.start()
        except HarnessError as exc:
            pytest.fail(f"the sshd with the shipped fragment did not start: {exc}")
        yield made
    finally:
        problems = _undo(made, influx)
        assert not problems, f"cleanup: {problems}"


def upload(site: Site, company: Company, path: str, data: bytes) -> None:
    """mkdir -p the folders of `path` and put `data` there, as the company's client."""
    with site.server.sftp(company) as sftp:
        parts = path.strip("/").split("/")
        for depth in range(2, len(parts)):
            with contextlib.suppress(OSError):  # it exists already
                sftp.mkdir("/" + "/".join(parts[:depth]))
        with sftp.open(path, "wb") as remote:
            remote.write(data)


def refused_login(site: Site, company: Company) -> bool:
    try:
        client = site.server.ssh_client(company)
    except paramiko.AuthenticationException:
        return True
    client.close()
    return False


# -- the tests ---------------------------------------------------------------------------


def test_tenant_create_makes_the_account_and_an_upload_with_its_key_lands_in_its_bucket(
    site: Site,
    capsys: pytest.CaptureFixture[str],
    powerview: Callable[..., PowerViewProcesses],
    influx: InfluxDBClient,
    samples: Path,
) -> None:
    acme = site.company("acme")
    private, public = site.key(acme)
    status, document, err = tenant(capsys, "create", acme, "--sftp-key", str(public))
    assert status == 0, err
    assert document["changed"] is True
    assert document["openssh"]["user"] == acme
    chroot = site.chroot_base / acme
    assert resources(document) == [
        f"create group {site.group}",
        f"create user {acme}",
        f"create company folder {site.data_root / acme}",
        f"create chroot base {site.chroot_base}",
        f"create chroot {chroot}",
        f"create mount point {chroot / acme}",
        f"create fstab entry {chroot / acme}",
        f"create bind mount {chroot / acme}",
        f"create keys folder {site.keys_dir}",
        f"create keys file {site.keys_dir / acme}",
    ]
    # The system as sshd needs it, read from the system itself.
    user = pwd.getpwnam(acme)
    assert (user.pw_shell, user.pw_dir) == ("/usr/sbin/nologin", f"/{acme}")
    shadow = subprocess.run(["getent", "shadow", acme], capture_output=True, text=True).stdout
    assert shadow.split(":")[1] == "*"
    groups = subprocess.run(["id", "-nG", acme], capture_output=True, text=True).stdout.split()
    assert site.group in groups
    folder = (site.data_root / acme).stat()
    assert (folder.st_uid, folder.st_gid, stat.S_IMODE(folder.st_mode)) == (
        user.pw_uid,
        user.pw_gid,
        0o755,
    )
    for path in (site.chroot_base, chroot):
        info = path.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o755), path
    keys = (site.keys_dir / acme).stat()
    assert (keys.st_uid, keys.st_gid, stat.S_IMODE(keys.st_mode)) == (0, 0, 0o644)
    assert (site.keys_dir / acme).read_text() == public.read_text()
    assert f"{site.data_root / acme} {chroot / acme} none bind 0 0" in site.fstab.read_text()
    assert mounted(chroot / acme)

    processes = powerview()
    account = site.login(acme, private)
    data = (samples / SAMPLE).read_bytes()
    upload(site, account, f"/{acme}/c1/02001315/{SAMPLE.name}", data)
    wait_for(
        f"{SAMPLE_POINTS} points in bucket {acme}",
        lambda: count_points(influx, acme, campaign="c1") == SAMPLE_POINTS,
        60,
        describe=processes.logs,
    )
    parsed = site.data_root / acme / "c1" / "02001315" / "parsed" / SAMPLE.name
    wait_for(f"{parsed} (moved once InfluxDB took every point)", parsed.exists, 30)
    assert parsed.read_bytes() == data


def test_a_company_cannot_see_or_reach_another_and_its_key_opens_no_other_account(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    acme, globex = site.company("acme"), site.company("globex")
    acme_key, acme_pub = site.key(acme)
    globex_key, globex_pub = site.key(globex)
    for company, public in ((acme, acme_pub), (globex, globex_pub)):
        status, _, err = tenant(capsys, "create", company, "--sftp-key", str(public))
        assert status == 0, err
    secret = b"globex only\n"
    upload(site, site.login(globex, globex_key), f"/{globex}/c1/02001315/g.tsv", secret)

    with site.server.sftp(site.login(acme, acme_key)) as sftp:
        assert sftp.normalize(".") == f"/{acme}"
        assert sftp.listdir("/") == [acme]
        assert sftp.listdir("..") == [acme]
        assert sftp.listdir("/../..") == [acme]
        for path in (
            f"/{globex}",
            f"/{globex}/c1/02001315/g.tsv",
            f"/../{globex}",
            str(site.data_root / globex / "c1" / "02001315" / "g.tsv"),
            str(site.data_root),
            str(site.chroot_base / globex / globex),
        ):
            with pytest.raises(FileNotFoundError):
                sftp.stat(path)
        with pytest.raises(FileNotFoundError):
            sftp.open(str(site.data_root / globex / "c1" / "x.tsv"), "wb")
    assert sorted(os.listdir(site.data_root / globex / "c1" / "02001315")) == ["g.tsv"]
    assert (site.data_root / globex / "c1" / "02001315" / "g.tsv").read_bytes() == secret

    assert refused_login(site, site.login(globex, acme_key))
    assert refused_login(site, site.login(acme, globex_key))


def test_tenant_delete_refuses_the_login_keeps_the_files_and_create_brings_it_back(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = site.company("acme")
    private, public = site.key(acme)
    assert tenant(capsys, "create", acme, "--sftp-key", str(public))[0] == 0
    account = site.login(acme, private)
    upload(site, account, f"/{acme}/c1/02001315/a.tsv", b"kept\n")
    chroot = site.chroot_base / acme

    session = site.server.ssh_client(account)  # a session open while the account goes
    sftp = session.open_sftp()
    assert sftp.listdir(f"/{acme}") == ["c1"]

    status, checked, err = tenant(capsys, "delete", acme, "--check")
    assert status == 0, err
    assert user_exists(acme)
    assert mounted(chroot / acme)
    status, document, err = tenant(capsys, "delete", acme)
    assert status == 0, err
    assert (
        resources(document)
        == resources(checked)
        == [
            f"delete keys file {site.keys_dir / acme}",
            f"delete bind mount {chroot / acme}",
            f"delete fstab entry {chroot / acme}",
            f"update company folder {site.data_root / acme}",
            f"delete user {acme}",
            f"delete mount point {chroot / acme}",
            f"delete chroot {chroot}",
        ]
    )
    assert refused_login(site, account)
    with pytest.raises((OSError, EOFError, paramiko.SSHException)):
        sftp.listdir(f"/{acme}")  # its session was ended with the account
    session.close()
    assert not user_exists(acme)
    assert not mounted(chroot / acme)
    assert not chroot.exists()
    assert str(chroot) not in site.fstab.read_text()
    assert not (site.keys_dir / acme).exists()
    kept = site.data_root / acme / "c1" / "02001315" / "a.tsv"
    assert kept.read_bytes() == b"kept\n"
    assert (site.data_root / acme).stat().st_uid == 0  # no later user inherits it by uid
    assert tenant(capsys, "delete", acme)[1]["openssh"]["changes"] == []

    assert tenant(capsys, "create", acme, "--sftp-key", str(public))[0] == 0
    with site.server.sftp(site.login(acme, private)) as sftp:
        assert sftp.listdir(f"/{acme}/c1/02001315") == ["a.tsv"]


def test_running_tenant_create_again_changes_nothing_and_check_mode_writes_nothing(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = site.company("acme")
    _, public = site.key(acme)
    status, checked, err = tenant(capsys, "create", acme, "--sftp-key", str(public), "--check")
    assert status == 0, err
    assert not user_exists(acme)
    assert not site.chroot_base.exists()
    assert not site.keys_dir.exists()
    assert site.fstab.read_text() == FSTAB_START
    status, created, err = tenant(capsys, "create", acme, "--sftp-key", str(public))
    assert status == 0, err
    assert resources(created) == resources(checked)

    for args in (("--sftp-key", str(public)), (), ("--check",)):
        status, again, err = tenant(capsys, "create", acme, *args)
        assert status == 0, err
        assert again["openssh"]["changes"] == [], args
        assert again["changed"] is False, args
    capsys.readouterr()
    assert cli.run(["tenant", "create", acme]) == 0
    assert f"OpenSSH account {acme}: no change" in capsys.readouterr().out
    status, rows, err = tenant(capsys, "list")
    row = next(r for r in rows if r["company"] == acme)
    assert (row["ssh_user"], row["ssh_account"], row["ssh_keys"]) == (acme, "ok", 1)


def test_what_was_changed_by_hand_is_put_back(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = site.company("acme")
    private, public = site.key(acme)
    assert tenant(capsys, "create", acme, "--sftp-key", str(public))[0] == 0
    chroot = site.chroot_base / acme
    subprocess.run(["usermod", "--shell", "/bin/sh", "--lock", acme], check=True)
    subprocess.run(["umount", str(chroot / acme)], check=True)
    site.fstab.write_text("# emptied by hand\n")
    os.chmod(chroot, 0o775)  # noqa: S103 (the drift under test: sshd refuses this chroot)
    assert refused_login(site, site.login(acme, private))
    status, rows, _ = tenant(capsys, "list")
    state = next(r for r in rows if r["company"] == acme)["ssh_account"]
    assert state.startswith("to fix: ")
    assert f"user {acme}" in state

    status, document, err = tenant(capsys, "create", acme)
    assert status == 0, err
    assert resources(document) == [
        f"update user {acme}",
        f"update chroot {chroot}",
        f"create fstab entry {chroot / acme}",
        f"create bind mount {chroot / acme}",
    ]
    user_change = document["openssh"]["changes"][0]
    assert user_change["diff"]["before"]["shell"] == "/bin/sh"
    assert user_change["diff"]["before"]["password"] == "locked"
    with site.server.sftp(site.login(acme, private)) as sftp:
        assert sftp.listdir("/") == [acme]
    assert tenant(capsys, "create", acme)[1]["changed"] is False


def test_unsafe_or_foreign_things_are_refused_before_anything_changes(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = site.company("acme")
    _, public = site.key(acme)
    # A chroot base below a folder its group may write to: sshd would refuse it.
    shared = site.base / "shared"
    shared.mkdir(mode=0o775)
    os.chmod(shared, 0o775)  # noqa: S103 (the unsafe folder under test)
    monkeypatch.setenv("POWERVIEW_CHROOT_BASE", str(shared / "chroot"))
    status, _, err = tenant(capsys, "create", acme, "--sftp-key", str(public))
    assert status == 2
    assert f"{shared} is owned by root:root with mode 0775" in err
    assert not user_exists(acme)
    assert not (shared / "chroot").exists()
    monkeypatch.setenv("POWERVIEW_CHROOT_BASE", str(site.chroot_base))

    # A key file that holds no OpenSSH public key (here: a private key).
    private, _ = site.key("other")
    status, _, err = tenant(capsys, "create", acme, "--sftp-key", str(private))
    assert status == 2
    assert "is not an OpenSSH public key" in err
    # A password: the fragment allows keys only.
    status, _, err = tenant(capsys, "create", acme, "--sftp-password")
    assert status == 2
    assert "key only" in err
    # A first creation without a key could never log in.
    status, _, err = tenant(capsys, "create", acme)
    assert status == 2
    assert "--sftp-key" in err
    assert not user_exists(acme)
    assert not site.chroot_base.exists()

    # An existing user that is not a company's is never taken over.
    plain = site.company("plain")
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", plain], check=True)
    status, _, err = tenant(capsys, "create", plain, "--sftp-key", str(public))
    assert status == 2
    assert "is not a PowerView company account" in err
    status, _, err = tenant(capsys, "delete", plain)
    assert status == 2
    assert "is not a PowerView company account" in err
    assert pwd.getpwnam(plain).pw_shell == "/bin/sh"
    assert (
        site.group
        not in subprocess.run(["id", "-nG", plain], capture_output=True, text=True).stdout.split()
    )


def test_a_mapped_user_gets_the_company_folder(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = site.company("acme")
    alice = f"alice{secrets.token_hex(3)}"
    site.users.append(alice)
    monkeypatch.setenv("POWERVIEW_USER_COMPANY_MAP", f"{alice}={acme}")
    private, public = site.key(alice)
    status, document, err = tenant(capsys, "create", acme, "--sftp-key", str(public))
    assert status == 0, err
    assert document["openssh"]["user"] == alice
    assert not user_exists(acme)
    upload(site, site.login(alice, private), f"/{alice}/c1/02001315/a.tsv", b"mapped\n")
    assert (site.data_root / acme / "c1" / "02001315" / "a.tsv").read_bytes() == b"mapped\n"
    status, rows, _ = tenant(capsys, "list")
    row = next(r for r in rows if r["company"] == acme)
    assert (row["ssh_user"], row["ssh_account"]) == (alice, "ok")


def test_sftp_key_again_replaces_the_keys(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    acme = site.company("acme")
    old_key, old_pub = site.key(acme)
    new_key, new_pub = site.key(acme)
    second_key, second_pub = site.key(acme)
    assert tenant(capsys, "create", acme, "--sftp-key", str(old_pub))[0] == 0
    status, document, err = tenant(
        capsys, "create", acme, "--sftp-key", str(new_pub), "--sftp-key", str(second_pub)
    )
    assert status == 0, err
    assert resources(document) == [f"update keys file {site.keys_dir / acme}"]
    diff = document["openssh"]["changes"][0]["diff"]
    assert len(diff["before"]["keys"]) == 1
    assert len(diff["after"]["keys"]) == 2
    assert diff["before"]["keys"][0] not in diff["after"]["keys"]
    assert refused_login(site, site.login(acme, old_key))
    for private in (new_key, second_key):
        with site.server.sftp(site.login(acme, private)) as sftp:
            assert sftp.listdir("/") == [acme]
