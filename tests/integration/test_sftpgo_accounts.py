"""The company's SFTPGo user through `powerview tenant create/delete/list`, for real: the
SFTPGo stand-in (every exchange checked against SFTPGo's OpenAPI description) and the
session's real InfluxDB for the bucket and token the same command makes."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from influxdb_client import InfluxDBClient

from powerview import cli
from powerview import settings as config
from powerview.exceptions import SftpgoError
from powerview.provision import provision_campaign
from powerview.provision.sftpgo import SftpgoApi, ensure_user
from tests.conftest import InfluxInstance
from tests.sftpgo_standin.server import SftpgoStandin

# The design, spelled out here rather than imported: least rights that work.
DESIGNED_PERMISSIONS = {
    "/": ["list", "upload", "overwrite", "create_dirs", "rename_files"],
    "/*/*/parsed": ["list", "download"],
    "/*/*/error": ["list", "download"],
}


@dataclass
class Env:
    tmp: Path
    data_root: Path
    sftpgo: SftpgoStandin
    companies: list[str]

    def company(self) -> str:
        name = f"co{uuid.uuid4().hex[:8]}"
        self.companies.append(name)
        return name

    def key(self, name: str = "id") -> tuple[Path, str]:
        """A real OpenSSH public key file, as ssh-keygen writes it."""
        private = self.tmp / f"{name}_{uuid.uuid4().hex[:6]}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(private)],
            check=True,
        )
        public = private.with_suffix(".pub")
        return public, public.read_text().strip()

    def user(self, company: str) -> dict[str, Any]:
        return self.sftpgo.state.users[company]

    def admin(self) -> httpx.Client:
        """What an operator's own script or SFTPGo's web admin does: the same REST API."""
        return httpx.Client(
            base_url=f"{self.sftpgo.url}/api/v2", headers={"X-SFTPGO-API-KEY": self.sftpgo.api_key}
        )


@pytest.fixture
def env(
    influxdb: InfluxInstance,
    sftpgo: SftpgoStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    influx_client: InfluxDBClient,
) -> Iterator[Env]:
    monkeypatch.chdir(tmp_path)
    data_root = tmp_path / "data"
    data_root.mkdir()
    for key in ("GRAFANA_URL", "SFTPGO_API_KEY", "POWERVIEW_SFTPGO_HOOK_ENV_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
        "POWERVIEW_DATA_ROOT": str(data_root),
        "POWERVIEW_SFTP_SERVER": "sftpgo",
        "SFTPGO_URL": sftpgo.url,
        "SFTPGO_USERNAME": sftpgo.admin_user,
        "SFTPGO_PASSWORD": sftpgo.admin_password,
        "POWERVIEW_SFTPGO_HOOK": "/opt/powerview/deploy/on-upload.sh",
    }.items():
        monkeypatch.setenv(key, value)
    created = Env(tmp_path, data_root.resolve(), sftpgo, [])
    yield created
    api = influx_client.buckets_api()
    for company in created.companies:
        bucket = api.find_bucket_by_name(company)
        if bucket is not None:
            api.delete_bucket(bucket)
    assert sftpgo.violations == [], sftpgo.violations


def create(*args: str) -> int:
    return cli.run(["tenant", "create", *args])


def test_create_makes_the_user_as_designed_and_the_json_sent_matches_the_spec(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    key_file, key = env.key()
    assert create(company, "--sftp-key", str(key_file)) == 0
    printed = capsys.readouterr().out
    assert f"SFTPGo changed: create SFTPGo user {company}" in printed
    assert "SFTPGo changed: create SFTPGo event action powerview-hook" in printed
    user = env.user(company)
    assert user["status"] == 1
    assert user["home_dir"] == str(env.data_root / company)
    assert user["permissions"] == DESIGNED_PERMISSIONS
    assert user["public_keys"] == [key]
    assert not user.get("password")  # keys only: no password was asked for
    posts = [body for method, path, body in env.sftpgo.writes() if path == "/api/v2/users"]
    assert posts == [
        {
            "username": company,
            "status": 1,
            "home_dir": str(env.data_root / company),
            "description": f"PowerView company {company}",
            "permissions": DESIGNED_PERMISSIONS,
            "public_keys": [key],
        }
    ]
    assert env.sftpgo.violations == []  # every request and answer matched SFTPGo's spec


def test_a_second_run_changes_nothing_and_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    key_file, _ = env.key()
    assert create(company, "--sftp-key", str(key_file)) == 0
    capsys.readouterr()
    writes = len(env.sftpgo.writes())
    assert create(company, "--sftp-key", str(key_file)) == 0
    assert "SFTPGo: no change" in capsys.readouterr().out
    assert create(company) == 0  # no key given: the keys are left as they are
    assert "SFTPGo: no change" in capsys.readouterr().out
    assert len(env.sftpgo.writes()) == writes


def test_drifted_fields_are_put_back_and_shown(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    key_file, key = env.key()
    assert create(company, "--sftp-key", str(key_file)) == 0
    capsys.readouterr()
    with env.admin() as admin:  # someone disables the user and opens every right
        user = admin.get(f"/users/{company}").json()
        drifted = {**user, "status": 0, "permissions": {"/": ["*"]}, "public_keys": []}
        assert admin.put(f"/users/{company}", json=drifted).status_code == 200
        rule = admin.get("/eventrules/powerview-uploads").json()
        rule["status"] = 0
        rule["actions"] = [{"name": "powerview-hook", "order": 1}]
        assert admin.put("/eventrules/powerview-uploads", json=rule).status_code == 200
    assert create(company, "--sftp-key", str(key_file)) == 0
    printed = capsys.readouterr().out
    assert f"SFTPGo changed: update SFTPGo user {company}" in printed
    assert "    status: 0 -> 1" in printed
    assert "SFTPGo changed: update SFTPGo event rule powerview-uploads" in printed
    user = env.user(company)
    assert (user["status"], user["permissions"], user["public_keys"]) == (
        1,
        DESIGNED_PERMISSIONS,
        [key],
    )
    assert env.sftpgo.state.rules["powerview-uploads"]["status"] == 1
    assert create(company) == 0
    assert "SFTPGo: no change" in capsys.readouterr().out


def test_check_mode_reports_and_writes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    key_file, _ = env.key()
    assert create(company, "--sftp-key", str(key_file), "--check") == 0
    printed = capsys.readouterr().out
    assert f"SFTPGo would change: create SFTPGo user {company}" in printed
    assert "SFTPGo would change: create SFTPGo event rule powerview-mkdir" in printed
    assert env.sftpgo.writes() == []
    assert env.sftpgo.state.users == {}
    assert create(company, "--sftp-key", str(key_file)) == 0
    with env.admin() as admin:
        user = admin.get(f"/users/{company}").json()
        assert admin.put(f"/users/{company}", json={**user, "home_dir": "/elsewhere"}).is_success
    capsys.readouterr()
    writes = len(env.sftpgo.writes())
    assert create(company, "--check") == 0
    printed = capsys.readouterr().out
    assert f"SFTPGo would change: update SFTPGo user {company}" in printed
    assert '    home_dir: "/elsewhere" -> "/' in printed  # the wanted path, cut to the width
    assert len(env.sftpgo.writes()) == writes
    assert env.user(company)["home_dir"] == "/elsewhere"


def shown_password(printed: str, company: str) -> str:
    prefix = f"SFTPGo user {company} password: "
    lines = [line for line in printed.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, printed
    return lines[0].removeprefix(prefix)


def test_the_password_is_given_once_and_kept_only_hashed_by_sftpgo(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    assert create(company, "--sftp-password") == 0
    printed = capsys.readouterr().out
    password = shown_password(printed, company)
    assert len(password) >= 20
    assert env.sftpgo.state.check_password(company, password)
    assert password not in str(env.sftpgo.state.users)  # SFTPGo holds a hash
    for file in env.tmp.rglob("*"):  # PowerView wrote it nowhere
        if file.is_file():
            assert password.encode() not in file.read_bytes(), file
    assert create(company) == 0  # a later run keeps it and shows nothing
    again = capsys.readouterr().out
    assert f"SFTPGo user {company} password:" not in again
    assert "SFTPGo: no change" in again
    assert env.sftpgo.state.check_password(company, password)
    assert create(company, "--sftp-password") == 0  # asked again: a new one, shown once
    renewed = capsys.readouterr().out
    new = shown_password(renewed, company)
    assert new != password
    assert env.sftpgo.state.check_password(company, new)
    assert not env.sftpgo.state.check_password(company, password)


def test_a_user_with_no_way_to_log_in_is_refused_before_any_write(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    assert create(company) == 2
    err = capsys.readouterr().err
    assert "--sftp-key" in err
    assert len(err.strip().splitlines()) == 1
    assert env.sftpgo.writes() == []


def test_delete_removes_the_login_and_keeps_the_files(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    key_file, _ = env.key()
    assert create(company, "--sftp-key", str(key_file)) == 0
    upload = env.data_root / company / "c1" / "02001084" / "x.tsv"
    upload.parent.mkdir(parents=True)
    upload.write_text("data\n")
    capsys.readouterr()
    assert cli.run(["tenant", "delete", company, "--check"]) == 0
    assert f"SFTPGo would change: delete SFTPGo user {company}" in capsys.readouterr().out
    assert company in env.sftpgo.state.users
    assert cli.run(["tenant", "delete", company]) == 0
    assert f"SFTPGo changed: delete SFTPGo user {company}" in capsys.readouterr().out
    assert company not in env.sftpgo.state.users
    assert upload.read_text() == "data\n"
    assert "powerview-uploads" in env.sftpgo.state.rules  # shared by every company: kept
    assert cli.run(["tenant", "delete", company]) == 0
    assert "SFTPGo: no change" in capsys.readouterr().out


def test_tenant_list_shows_the_sftpgo_user(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    company = env.company()
    key_file, _ = env.key()
    assert create(company, "--sftp-key", str(key_file), "--sftp-password") == 0
    capsys.readouterr()
    assert cli.run(["tenant", "list", "--json"]) == 0
    rows = {row["company"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[company]["sftpgo_user"] == "active"
    assert rows[company]["sftpgo_home"] == str(env.data_root / company)
    assert rows[company]["sftpgo_keys"] == 1
    assert rows[company]["sftpgo_password"] is True
    assert rows[company]["read_token"] is True
    with env.admin() as admin:
        user = admin.get(f"/users/{company}").json()
        assert admin.put(f"/users/{company}", json={**user, "status": 0}).is_success
    assert cli.run(["tenant", "list"]) == 0
    table = capsys.readouterr().out
    assert any(company in line and "disabled" in line for line in table.splitlines())


def test_an_api_key_works_and_an_expired_jwt_is_renewed(env: Env) -> None:
    company = env.company()
    _key_file, key = env.key()
    settings = config.load()
    with SftpgoApi.from_settings(settings) as api:
        ensure_user(api, company, settings.data_root, [key])
        env.sftpgo.revoke_tokens()  # the JWT expires between two calls
        assert not ensure_user(api, company, settings.data_root, [key]).changed
    with SftpgoApi(env.sftpgo.url, api_key=env.sftpgo.api_key) as api:
        assert api.get("users", company) is not None
    assert [p for m, p, _ in env.sftpgo.requests if p == "/api/v2/token"] == [
        "/api/v2/token",
        "/api/v2/token",
    ]


def test_refusals_and_outages_are_one_clear_line(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    key_file, _ = env.key()
    monkeypatch.setenv("SFTPGO_PASSWORD", "wrong")
    assert create(company, "--sftp-key", str(key_file)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "refused the admin login (401)" in err[0]
    monkeypatch.setenv("SFTPGO_URL", "http://127.0.0.1:9")  # nothing listens on discard
    api = SftpgoApi.from_settings(config.load())
    with api, pytest.raises(SftpgoError, match=re.escape("SFTPGo at http://127.0.0.1:9")):
        api.get("users", company)
    monkeypatch.delenv("SFTPGO_URL")
    assert create(company, "--sftp-key", str(key_file)) == 2
    assert "SFTPGO_URL" in capsys.readouterr().err
    assert env.sftpgo.writes() == []


def test_the_workers_mkdir_job_never_touches_the_sftp_account(env: Env) -> None:
    company = env.company()
    result = provision_campaign(config.load(), company, "c1")
    assert result["outcome"] == "done"
    assert env.sftpgo.requests == []


def test_without_sftpgo_the_step_is_skipped_and_said(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERVIEW_SFTP_SERVER", "none")
    company = env.company()
    assert create(company) == 0
    assert "SFTP account: skipped, not managed" in capsys.readouterr().out
    assert cli.run(["tenant", "list", "--json"]) == 0
    rows = {row["company"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[company] == {
        "company": company,
        "bucket": True,
        "read_token": True,
        "token_on_file": True,
    }
    assert env.sftpgo.requests == []
