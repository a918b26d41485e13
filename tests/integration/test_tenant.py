"""Tenant provisioning for real: ansible-playbook runs the project's module against the
Grafana stand-in (every exchange checked against Grafana's OpenAPI description) and
the real InfluxDB holds the buckets and tokens."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grafana_client.client import GrafanaClientError
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from powerview import cli
from powerview import settings as config
from powerview.exceptions import NameRuleError
from powerview.provision import create_tenant, delete_tenant
from powerview.provision.dashboard import dashboard_uid, legacy_dashboard_uid
from powerview.provision.downsample import LEVELS, bucket_names, task_name
from powerview.provision.playbook import CREATE, packaged_dir
from powerview.provision.tokens import find_tokens, read_token, token_file
from tests.conftest import InfluxInstance
from tests.grafana_standin.server import GrafanaStandin


@dataclass
class Env:
    state_dir: Path
    influx: InfluxInstance
    grafana: GrafanaStandin
    companies: list[str]

    def company(self) -> str:
        name = f"co{uuid.uuid4().hex[:8]}"
        self.companies.append(name)
        return name

    def settings(self, **overrides: object) -> config.Settings:
        return config.load(**overrides)

    def rename_folder(self, company: str, title: str) -> None:
        """What someone does by hand in Grafana's UI: rename the company's folder."""
        org = self.grafana.state.org_by_name(company)
        assert org is not None
        api = self.grafana.client(org_id=org.id)
        folder = api.folder.get_folder(f"pv-folder-{company}")
        api.folder.update_folder(folder["uid"], title=title, version=folder["version"])

    def folder_title(self, company: str) -> str:
        org = self.grafana.state.org_by_name(company)
        assert org is not None
        folder = self.grafana.state.folder(org.id, f"pv-folder-{company}")
        assert folder is not None
        return folder.title

    def token(self, company: str) -> str:
        token = read_token(self.state_dir / "secrets", company)
        assert token is not None
        return token


@pytest.fixture
def env(
    influxdb: InfluxInstance,
    grafana: GrafanaStandin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    influx_client: InfluxDBClient,
) -> Iterator[Env]:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    for key, value in {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "POWERVIEW_STATE_DIR": str(state),
        "GRAFANA_URL": grafana.url,
        "GRAFANA_USERNAME": grafana.admin_user,
        "GRAFANA_PASSWORD": grafana.admin_password,
        "POWERVIEW_TENANCY": "org",
    }.items():
        monkeypatch.setenv(key, value)
    created = Env(state.resolve(), influxdb, grafana, [])
    yield created
    api = influx_client.buckets_api()
    for company in created.companies:
        bucket = api.find_bucket_by_name(company)
        if bucket is not None:
            api.delete_bucket(bucket)
    assert grafana.violations == [], grafana.violations


def test_create_makes_every_resource_inside_the_companys_own_organization(env: Env) -> None:
    company = env.company()
    outcome = create_tenant(env.settings(), company, ("campaign1",), default_user=True)

    state = env.grafana.state
    org = state.org_by_name(company)
    assert org is not None
    team = state.team_by_name(org.id, company)
    assert team is not None
    folders = state.folders_in(org.id)
    assert [f.title for f in folders] == [company]
    acl = state.folder_acl(org.id, folders[0].uid)
    assert [(a.team_id, a.user_id, a.role, a.permission) for a in acl] == [(team.id, None, None, 1)]
    datasource = state.datasource_by_name(org.id, f"influxdb_{company}")
    assert datasource is not None
    assert datasource.type == "influxdb-adecwatts-datasource"
    assert datasource.json_data["defaultBucket"] == company
    # Grafana gets the bucket-scoped read token, never the admin token.
    assert datasource.secure_json_data["token"] == env.token(company)
    assert datasource.secure_json_data["token"] != env.influx.token
    dashboards = state.dashboards_in(org.id)
    assert [(d.uid, d.folder_uid) for d in dashboards] == [
        (dashboard_uid(company, "campaign1"), folders[0].uid)
    ]
    assert len(dashboards[0].uid) <= 40
    # The default user belongs to the company's organization only, and to its team.
    user = state.user_by_login(f"user_{company}")
    assert user is not None
    assert user.name == f"{company} Default"
    assert [o.id for o, _ in state.orgs_of(user.id)] == [org.id]
    assert user.id in team.members
    assert outcome.password_file is not None
    assert Path(outcome.password_file).read_text().strip() == user.password
    assert outcome.token_created is True


def test_a_second_create_reports_no_change(env: Env) -> None:
    company = env.company()
    first = create_tenant(env.settings(), company, ("c1",), default_user=True)
    assert first.grafana is not None
    assert first.grafana.changed
    second = create_tenant(env.settings(), company, ("c1",), default_user=True)
    assert second.grafana is not None
    assert second.grafana.changes == []
    assert second.changed is False
    assert second.password_file is None  # shown once, at creation only


def test_check_mode_reports_what_would_change_and_changes_nothing(env: Env) -> None:
    company = env.company()
    outcome = create_tenant(env.settings(), company, ("c1",), check=True)
    assert outcome.grafana is not None
    resources = {c["resource"] for c in outcome.grafana.changes}
    assert f"organization {company}" in resources
    assert f"datasource influxdb_{company}" in resources
    assert env.grafana.state.org_by_name(company) is None

    create_tenant(env.settings(), company, ("c1",))
    later = create_tenant(env.settings(), company, ("c1", "c2"), check=True)
    assert later.grafana is not None
    assert [(c["action"], c["resource"]) for c in later.grafana.changes] == [
        ("create", "dashboard c2")
    ]
    org = env.grafana.state.org_by_name(company)
    assert org is not None
    assert len(env.grafana.state.dashboards_in(org.id)) == 1


def test_a_new_campaign_adds_its_dashboard_and_keeps_the_rest(env: Env) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    outcome = create_tenant(env.settings(), company, ("c2",))
    assert outcome.grafana is not None
    assert [(c["action"], c["resource"]) for c in outcome.grafana.changes] == [
        ("create", "dashboard c2")
    ]


def test_delete_removes_grafana_resources_but_never_the_data(
    env: Env, influx_client: InfluxDBClient
) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",), default_user=True)
    influx_client.write_api(write_options=SYNCHRONOUS).write(
        bucket=company,
        record="electrical,campaign=c1 M1_U1_V=230.0 1767225600",
        write_precision="s",
    )
    bucket = influx_client.buckets_api().find_bucket_by_name(company)
    assert bucket is not None

    outcome = delete_tenant(env.settings(), company, with_user=True)

    assert outcome.grafana is not None
    assert outcome.grafana.warnings == []
    actions = {(c["action"], c["resource"]) for c in outcome.grafana.changes}
    assert ("delete", f"organization {company}") in actions
    assert ("delete", f"user user_{company}") in actions
    assert env.grafana.state.org_by_name(company) is None
    assert env.grafana.state.user_by_login(f"user_{company}") is None
    assert influx_client.buckets_api().find_bucket_by_name(company) is not None
    kept = influx_client.query_api().query(
        f'from(bucket: "{company}") |> range(start: 0) |> count()'
    )
    assert [r.get_value() for t in kept for r in t.records] == [1]
    again = delete_tenant(env.settings(), company, with_user=True)
    assert again.grafana is not None
    assert again.grafana.changes == []


def query_with(env: Env, token: str, bucket: str) -> int:
    """Rows of `bucket` read with `token`; ApiException when InfluxDB refuses it."""
    with InfluxDBClient(url=env.influx.url, token=token, org=env.influx.org) as client:
        tables = client.query_api().query(f'from(bucket: "{bucket}") |> range(start: 0)')
    return sum(len(table.records) for table in tables)


def write_point(influx_client: InfluxDBClient, company: str) -> None:
    influx_client.write_api(write_options=SYNCHRONOUS).write(
        bucket=company,
        record="electrical,campaign=c1 M1_U1_V=230.0 1767225600",
        write_precision="s",
    )


def task_names(influx_client: InfluxDBClient, company: str) -> list[str]:
    wanted = {task_name(company, level) for level in LEVELS}
    return sorted(t.name for t in influx_client.tasks_api().find_tasks() if t.name in wanted)


def test_delete_revokes_the_read_token_and_keeps_the_data(
    env: Env, influx_client: InfluxDBClient
) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    write_point(influx_client, company)
    token = env.token(company)
    assert query_with(env, token, company) == 1  # Grafana's token reads, before

    outcome = delete_tenant(env.settings(), company)

    assert find_tokens(influx_client, env.influx.org, company) == []
    assert not token_file(env.state_dir / "secrets", company).exists()
    with pytest.raises(ApiException) as refused:
        query_with(env, token, company)
    assert refused.value.status == 401
    assert any(change.startswith("revoke read token") for change in outcome.influx_changes)
    assert query_with(env, env.influx.token, company) == 1  # no --purge: the data stays
    assert len(task_names(influx_client, company)) == 3
    assert outcome.grafana is not None
    assert outcome.grafana.warnings == []
    assert delete_tenant(env.settings(), company).influx_changes == []


def test_delete_keep_token_leaves_the_token_working(
    env: Env, influx_client: InfluxDBClient
) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    write_point(influx_client, company)
    token = env.token(company)

    outcome = delete_tenant(env.settings(), company, keep_token=True)

    assert outcome.influx_changes == []
    assert env.token(company) == token
    assert query_with(env, token, company) == 1


def test_delete_purge_removes_the_buckets_tasks_and_token(
    env: Env, influx_client: InfluxDBClient
) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    write_point(influx_client, company)
    other = env.company()  # a neighbour, untouched
    create_tenant(env.settings(), other, ("c1",))
    write_point(influx_client, other)

    outcome = delete_tenant(env.settings(), company, purge=True)

    buckets = influx_client.buckets_api()
    assert [n for n in bucket_names(company) if buckets.find_bucket_by_name(n)] == []
    assert task_names(influx_client, company) == []
    assert find_tokens(influx_client, env.influx.org, company) == []
    assert sum(change.startswith("delete bucket") for change in outcome.influx_changes) == 4
    assert sum(change.startswith("delete task") for change in outcome.influx_changes) == 3
    assert query_with(env, env.token(other), other) == 1
    assert len(task_names(influx_client, other)) == 3
    assert delete_tenant(env.settings(), company, purge=True).influx_changes == []


def test_delete_purge_check_lists_everything_and_changes_nothing(
    env: Env, influx_client: InfluxDBClient, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    write_point(influx_client, company)
    token = env.token(company)
    capsys.readouterr()

    assert cli.run(["tenant", "delete", company, "--purge", "--check"]) == 0

    captured = capsys.readouterr()
    printed = captured.out
    assert "InfluxDB would change: revoke read token" in printed
    assert f"would change: delete token file {token_file(env.state_dir / 'secrets', company)}" in (
        printed
    )
    for name in bucket_names(company):
        assert f"InfluxDB would change: delete bucket {name} and its data" in printed
    for level in LEVELS:
        assert f"InfluxDB would change: delete task {task_name(company, level)}" in printed
    assert f"Grafana would change: delete organization {company}" in printed
    assert "warning" not in (printed + captured.err).lower()
    assert query_with(env, token, company) == 1
    assert len(task_names(influx_client, company)) == 3
    assert env.grafana.state.org_by_name(company) is not None


def test_purge_refuses_a_reserved_name_and_deletes_nothing(
    env: Env, influx_client: InfluxDBClient
) -> None:
    """A name the operator reserved (POWERVIEW_RESERVED_NAMES) is never purged; the
    built-in ones (the meta bucket, `*_1h`...) are refused by every name check."""
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    write_point(influx_client, company)
    for name in (company, env.settings().meta_bucket, f"{company}_1h"):
        with pytest.raises(NameRuleError, match="reserved"):
            delete_tenant(env.settings(reserved_names=company), name, purge=True)
    buckets = influx_client.buckets_api()
    assert all(buckets.find_bucket_by_name(n) for n in bucket_names(company))
    assert query_with(env, env.token(company), company) == 1


def test_company_a_cannot_see_or_query_company_b(env: Env, influx_client: InfluxDBClient) -> None:
    a, b = env.company(), env.company()
    create_tenant(env.settings(), a, ("c1",), default_user=True)
    create_tenant(env.settings(), b, ("c1",), default_user=True)
    state = env.grafana.state
    user_a = state.user_by_login(f"user_{a}")
    assert user_a is not None
    org_a, org_b = state.org_by_name(a), state.org_by_name(b)
    assert org_a is not None
    assert org_b is not None

    as_a = env.grafana.client(user=user_a.login, password=user_a.password)
    hits = as_a.search.search_dashboards()
    assert {(hit["type"], hit["title"]) for hit in hits} == {("dash-folder", a), ("dash-db", "c1")}
    assert all(hit.get("folderUid") in (None, f"pv-folder-{a}") for hit in hits)
    assert {o["orgId"] for o in as_a.user.get_actual_user_organisations()} == {org_a.id}
    into_b = env.grafana.client(org_id=org_b.id, user=user_a.login, password=user_a.password)
    with pytest.raises(GrafanaClientError) as refused:
        into_b.dashboard.get_dashboard(dashboard_uid(b, "c1"))
    assert refused.value.status_code in (401, 403)
    ds_b = state.datasource_by_name(org_b.id, f"influxdb_{b}")
    assert ds_b is not None
    query = {
        "from": "now-1h",
        "to": "now",
        "queries": [{"refId": "A", "datasource": {"uid": ds_b.uid}, "query": "x"}],
    }
    with pytest.raises(GrafanaClientError):
        as_a.client.POST("/ds/query", json=query)
    # On the real InfluxDB, A's read token cannot read B's bucket nor write its own.
    with InfluxDBClient(url=env.influx.url, token=env.token(a), org=env.influx.org) as client:
        client.query_api().query(f'from(bucket: "{a}") |> range(start: -1h) |> limit(n: 1)')
        with pytest.raises(ApiException) as not_found:
            client.query_api().query(f'from(bucket: "{b}") |> range(start: -1h)')
        assert not_found.value.status == 404
        with pytest.raises(ApiException) as forbidden:
            client.write_api(write_options=SYNCHRONOUS).write(bucket=a, record="electrical x=1")
        assert forbidden.value.status in (401, 403)


@pytest.mark.parametrize(
    "name", ["a b", "quo'te", 'dq"x', "$(touch x)", "..", "\uff41cme", "x" * 200, "-x"]
)
def test_hostile_names_are_refused_before_any_side_effect(
    env: Env, name: str, influx_client: InfluxDBClient, capsys: pytest.CaptureFixture[str]
) -> None:
    buckets_before = {b.name for b in influx_client.buckets_api().find_buckets().buckets}
    assert cli.run(["tenant", "create", name, "--campaign", "c1"]) == 2
    assert cli.run(["tenant", "create", "okname", "--campaign", name]) == 2
    assert "is not allowed" in capsys.readouterr().err
    assert {b.name for b in influx_client.buckets_api().find_buckets().buckets} == buckets_before
    assert [o.name for o in env.grafana.state.orgs.values()] == ["Main Org."]


def test_two_companies_provisioned_in_parallel_do_not_interfere(env: Env) -> None:
    companies = [env.company(), env.company()]
    errors: list[BaseException] = []

    def provision(company: str) -> None:
        try:
            create_tenant(env.settings(), company, ("c1", "c2"), default_user=True)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=provision, args=(c,)) for c in companies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = env.grafana.state
    for company in companies:
        org = state.org_by_name(company)
        assert org is not None
        assert [t.name for t in state.teams_in(org.id)] == [company]
        assert sorted(d.title for d in state.dashboards_in(org.id)) == ["c1", "c2"]
        ds = state.datasource_by_name(org.id, f"influxdb_{company}")
        assert ds is not None
        assert ds.secure_json_data["token"] == env.token(company)


def test_team_mode_warns_that_isolation_is_only_at_folder_level(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERVIEW_TENANCY", "team")
    company = env.company()
    outcome = create_tenant(env.settings(), company, ("c1",))
    assert outcome.grafana is not None
    assert any("folder level only" in w for w in outcome.grafana.warnings)
    state = env.grafana.state
    assert state.org_by_name(company) is None
    assert state.team_by_name(1, company) is not None


def test_the_cli_prints_the_changes_and_the_password_once(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    assert cli.run(["tenant", "create", company, "--campaign", "c1", "--default-user"]) == 0
    printed = capsys.readouterr().out
    assert f"create organization {company}" in printed
    user = env.grafana.state.user_by_login(f"user_{company}")
    assert user is not None
    assert user.password in printed
    assert not (env.state_dir / "secrets" / f"{company}.grafana-user-password").exists()
    assert cli.run(["tenant", "create", company, "--campaign", "c1", "--default-user"]) == 0
    again = capsys.readouterr().out
    assert "Grafana: no change" in again
    assert user.password not in again


def test_a_folder_renamed_out_of_band_is_renamed_back_and_recorded_once(env: Env) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    env.rename_folder(company, "Renamed by hand")

    mended = create_tenant(env.settings(), company, ("c1",))

    assert mended.grafana is not None
    assert mended.grafana.changes == [
        {
            "resource": f"folder {company}",
            "action": "update",
            "detail": "renamed from 'Renamed by hand'",
        }
    ]
    assert mended.changed is True
    assert [(d["before"]["title"], d["after"]["title"]) for d in mended.grafana.diffs] == [
        ("Renamed by hand", company)
    ]
    assert env.folder_title(company) == company
    again = create_tenant(env.settings(), company, ("c1",))
    assert again.grafana is not None
    assert again.grafana.changes == []
    assert again.changed is False


def test_check_mode_after_an_out_of_band_change_reports_it_and_changes_nothing(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    env.rename_folder(company, "Renamed by hand")
    capsys.readouterr()

    assert cli.run(["tenant", "create", company, "--campaign", "c1", "--check"]) == 0

    printed = capsys.readouterr().out
    assert (
        f"Grafana would change: update folder {company} (renamed from 'Renamed by hand')" in printed
    )
    assert f'title: "Renamed by hand" -> "{company}"' in printed
    assert env.folder_title(company) == "Renamed by hand"
    checked = create_tenant(env.settings(), company, ("c1",), check=True)
    assert checked.grafana is not None
    assert [(c["action"], c["resource"]) for c in checked.grafana.changes] == [
        ("update", f"folder {company}")
    ]
    assert env.folder_title(company) == "Renamed by hand"


def test_delete_in_check_mode_reports_each_deletion_and_deletes_nothing(env: Env) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))

    checked = delete_tenant(env.settings(), company, check=True)

    assert checked.grafana is not None
    assert [(c["action"], c["resource"]) for c in checked.grafana.changes] == [
        ("delete", "dashboard c1"),
        ("delete", f"folder {company}"),
        ("delete", f"datasource influxdb_{company}"),
        ("delete", f"team {company}"),
        ("delete", f"organization {company}"),
    ]
    assert [d["after"] for d in checked.grafana.diffs] == [{}] * 5
    assert env.grafana.state.org_by_name(company) is not None
    assert env.folder_title(company) == company


def test_ansible_playbook_check_diff_shows_the_rename_and_writes_nothing(env: Env) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c1",))
    env.rename_folder(company, "Renamed by hand")
    org = env.grafana.state.org_by_name(company)
    assert org is not None
    stored = env.grafana.state.datasource_by_name(org.id, f"influxdb_{company}")
    assert stored is not None
    variables = {
        "company_name": company,
        "campaign_name": "c1",
        "datasource_type": stored.type,
        "influx_url": stored.url,
        "influx_org": stored.json_data["organization"],
        "token_file": str(token_file(env.state_dir / "secrets", company)),
        "token_id": stored.json_data["powerviewTokenId"],
        "ansible_python_interpreter": sys.executable,
    }
    vars_file = env.state_dir / "vars.json"
    vars_file.write_text(json.dumps(variables))
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(packaged_dir() / "playbooks" / CREATE),
            "-e",
            f"@{vars_file}",
            "--check",
            "--diff",
        ],
        cwd=packaged_dir(),
        env={**os.environ, "ANSIBLE_CONFIG": str(packaged_dir() / "ansible.cfg"), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    shown = run.stdout
    assert f"--- before: folder {company}" in shown
    assert f"+++ after: folder {company}" in shown
    assert re.search(r'^-\s+"title": "Renamed by hand",?$', shown, re.MULTILINE), shown
    assert re.search(rf'^\+\s+"title": "{company}",?$', shown, re.MULTILINE), shown
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=1\b", shown), shown
    assert env.token(company) not in shown + run.stderr
    assert env.folder_title(company) == "Renamed by hand"


def test_a_dashboard_under_the_old_ambiguous_uid_is_replaced_not_duplicated(env: Env) -> None:
    company = env.company()
    create_tenant(env.settings(), company, ("c-1",))
    org = env.grafana.state.org_by_name(company)
    assert org is not None
    (dash,) = env.grafana.state.dashboards_in(org.id)
    # As the earlier release saved it: uid `pv-<company>-<campaign>`.
    dash.uid = dash.model["uid"] = legacy_dashboard_uid(company, "c-1")

    outcome = create_tenant(env.settings(), company, ("c-1",))

    assert outcome.grafana is not None
    assert [(c["action"], c["resource"]) for c in outcome.grafana.changes] == [
        ("delete", "dashboard c-1"),
        ("create", "dashboard c-1"),
    ]
    assert [d.uid for d in env.grafana.state.dashboards_in(org.id)] == [
        dashboard_uid(company, "c-1")
    ]
    again = create_tenant(env.settings(), company, ("c-1",))
    assert again.grafana is not None
    assert again.grafana.changes == []
