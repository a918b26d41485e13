"""Tenant lifecycle: what a company and a campaign need to exist.

`create_tenant` is what `powerview tenant create` and a campaign `mkdir` (through
the queue and the worker) run: the company's SFTP account when PowerView manages
one (`POWERVIEW_SFTP_SERVER=sftpgo`: the SFTPGo user and the Event Manager rules
that call the hook; `openssh`: the chrooted system user, its bind mount and keys,
provision/openssh.py; not from the worker's mkdir job, where the account already
exists and creating one is an operator's act), then its buckets (raw, `_1h`,
`_1d`, `_1w`) with their downsampling tasks (provision/downsample.py) and its
read token of those four buckets in InfluxDB, then, when Grafana is configured,
the Grafana playbook (run with `--diff`, so each Grafana change comes back with
its before/after). `delete_tenant` removes the SFTP login (SFTPGo user, or
OpenSSH keys, mount and user), revokes the read
token (unless kept) and removes the Grafana side; its InfluxDB buckets, their data
and the downsampling tasks go only with `purge`; its files are never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerview.exceptions import InfluxRequestError, InfrastructureError, NameRuleError
from powerview.influx import open_target
from powerview.layout import check_company, check_name
from powerview.provision.downsample import (
    SUFFIXES,
    bucket_names,
    ensure_downsampling,
    remove_downsampling,
)
from powerview.provision.openssh import (
    AccountOutcome,
    account_state,
    ensure_account,
    managed_companies,
    remove_account,
)
from powerview.provision.playbook import CREATE, DELETE, PlaybookResult, run_playbook
from powerview.provision.sftpgo import (
    SftpgoApi,
    SftpgoOutcome,
    ensure_events,
    ensure_user,
    user_summary,
)
from powerview.provision.sftpgo import delete_user as delete_sftpgo_user
from powerview.provision.tokens import (
    ensure_read_token,
    find_tokens,
    plan_revoke,
    read_token,
    reads_exactly,
    token_description,
    token_file,
)
from powerview.settings import Settings

__all__ = [
    "TenantOutcome",
    "create_sftp_account",
    "create_tenant",
    "delete_tenant",
    "list_tenants",
    "provision_campaign",
]


@dataclass
class TenantOutcome:
    company: str
    token_created: bool = False
    downsample_changes: list[str] = field(default_factory=list)
    influx_changes: list[str] = field(default_factory=list)  # tenant delete: token, purge
    grafana: PlaybookResult | None = None
    grafana_skipped: str | None = None
    password_file: str | None = None
    notes: list[str] = field(default_factory=list)
    sftpgo: SftpgoOutcome | None = None  # None: SFTPGo not managed (see sftp_skipped)
    openssh: AccountOutcome | None = None  # None: OpenSSH accounts not managed
    sftp_skipped: str | None = None

    @property
    def changed(self) -> bool:
        return (
            bool(self.sftpgo and self.sftpgo.changed)
            or bool(self.openssh and self.openssh.changed)
            or self.token_created
            or bool(self.downsample_changes)
            or bool(self.influx_changes)
            or bool(self.grafana and self.grafana.changed)
        )

    def take_default_user_password(self) -> str | None:
        """The default Grafana user's new password, read once and its file removed.

        The playbook leaves it in a 0600 file of the secrets folder; whoever shows
        it takes it, so it is on screen once and on disk no longer.
        """
        if not self.password_file:
            return None
        path = Path(self.password_file)
        password = path.read_text().strip()
        path.unlink()
        self.password_file = None
        return password

    def take_result(self, check: bool) -> dict[str, Any]:
        """What `tenant create` and `tenant delete` print: every change, in order.

        A one-time password (SFTPGo's, the default Grafana user's) is included and,
        for the Grafana user, taken from disk: it is shown this once.
        """
        grafana: dict[str, Any] | None = None
        if self.grafana is not None:
            diffs = (
                self.grafana.diffs if len(self.grafana.diffs) == len(self.grafana.changes) else []
            )
            grafana = {
                "changes": [
                    {**change, "diff": diffs[index]} if diffs else dict(change)
                    for index, change in enumerate(self.grafana.changes)
                ],
                "warnings": list(self.grafana.warnings),
            }
        sftpgo: dict[str, Any] | None = None
        if self.sftpgo is not None:
            sftpgo = {
                "changes": [{**c.summary(), "diff": c.diff()} for c in self.sftpgo.changes],
                "password": self.sftpgo.password,
            }
        openssh: dict[str, Any] | None = None
        if self.openssh is not None:
            openssh = {
                "user": self.openssh.user,
                "changes": [{**c.summary(), "diff": c.diff()} for c in self.openssh.changes],
            }
        return {
            "company": self.company,
            "check": check,
            "changed": self.changed,
            "token_created": self.token_created,
            "downsample_changes": list(self.downsample_changes),
            "influx_changes": list(self.influx_changes),
            "notes": list(self.notes),
            "sftpgo": sftpgo,
            "openssh": openssh,
            "sftp_skipped": self.sftp_skipped,
            "grafana": grafana,
            "grafana_skipped": self.grafana_skipped,
            "default_user_password": self.take_default_user_password(),
        }


def grafana_env(settings: Settings) -> dict[str, str] | None:
    """The environment the Grafana module reads its connection from; None if unset."""
    if not settings.grafana_url:
        return None
    env = {"GRAFANA_URL": settings.grafana_url}
    if settings.grafana_username:
        env["GRAFANA_USERNAME"] = settings.grafana_username
    if settings.grafana_password:
        env["GRAFANA_PASSWORD"] = settings.grafana_password.get_secret_value()
    if settings.grafana_api_token:
        env["GRAFANA_API_TOKEN"] = settings.grafana_api_token.get_secret_value()
    return env


def _sftp_skipped(settings: Settings) -> str | None:
    if settings.sftp_server in ("sftpgo", "openssh"):
        return None
    return "not managed (POWERVIEW_SFTP_SERVER=none)"


def create_sftp_account(
    settings: Settings,
    company: str,
    public_keys: list[str] | None = None,
    new_password: bool = False,
    check: bool = False,
) -> SftpgoOutcome:
    """The company's SFTPGo user, then the Event Manager's action and rules (shared)."""
    with SftpgoApi.from_settings(settings) as api:
        outcome = ensure_user(
            api, company, settings.data_root, public_keys, new_password, check=check
        )
        outcome.changes += ensure_events(api, settings, check=check)
    return outcome


def create_tenant(
    settings: Settings,
    company: str,
    campaigns: tuple[str, ...] = (),
    default_user: bool = False,
    check: bool = False,
    sftp_keys: list[str] | None = None,
    sftp_password: bool = False,
    manage_sftp: bool = True,
) -> TenantOutcome:
    """Create or keep everything `company` needs (idempotent; `check`: change nothing).

    `sftp_keys` None leaves the SFTP user's keys as they are; `sftp_password`
    sets a new generated SFTPGo password, returned once in `outcome.sftpgo.password`
    (OpenSSH accounts take keys only).
    """
    check_company(company, settings.reserved_company_names)
    for campaign in campaigns:
        check_name("campaign", campaign)
    outcome = TenantOutcome(company)
    if manage_sftp:
        outcome.sftp_skipped = _sftp_skipped(settings)
        if settings.sftp_server == "openssh":
            outcome.openssh = ensure_account(
                settings, company, sftp_keys, sftp_password, check=check
            )
        elif outcome.sftp_skipped is None:
            outcome.sftpgo = create_sftp_account(
                settings, company, sftp_keys, sftp_password, check=check
            )
    secrets = settings.secrets_dir
    target = open_target(settings)
    try:
        downsampling = ensure_downsampling(target.client, settings, company, check=check)
        outcome.downsample_changes = downsampling.changes
        if check:  # look, do not touch: the id of the token that would be kept, if any
            found = find_tokens(target.client, settings.influxdb_org, company)
            token_id = str(found[0].id) if found else ""
            if not found or read_token(secrets, company) is None:
                outcome.notes.append(f"would create the read token of bucket {company!r}")
            elif not reads_exactly(target.client, found[0], bucket_names(company)):
                outcome.notes.append(
                    f"would replace the read token of {company!r} by one reading "
                    + ", ".join(bucket_names(company))
                )
        else:
            token = ensure_read_token(
                target.client, settings.influxdb_org, company, secrets, SUFFIXES
            )
            outcome.token_created = token.created
            token_id = token.authorization_id
    finally:
        target.close()
    env = grafana_env(settings)
    if env is None:
        outcome.grafana_skipped = "Grafana not configured (GRAFANA_URL unset)"
        return outcome
    base = {
        "company_name": company,
        "tenancy": settings.tenancy,
        "datasource_type": settings.grafana_datasource_type,
        "influx_url": settings.grafana_influxdb_url or settings.influxdb_url,
        "influx_org": settings.influxdb_org,
        "token_file": str(token_file(secrets, company)),
        "token_id": token_id,
        "default_user": default_user,
        "password_file": str(secrets / f"{company}.grafana-user-password"),
    }
    results = [
        run_playbook(
            CREATE,
            {**base, "campaign_name": campaign},
            check=check,
            env=env,
            diff=True,
            folder=settings.grafana_automation_dir,
        )
        for campaign in (campaigns or ("",))
    ]
    merged = PlaybookResult()
    for result in results:
        merged.changed = merged.changed or result.changed
        merged.changes += result.changes
        merged.diffs += result.diffs
        merged.warnings += [w for w in result.warnings if w not in merged.warnings]
        if result.module.get("password_file"):
            outcome.password_file = result.module["password_file"]
    outcome.grafana = merged
    return outcome


def delete_tenant(
    settings: Settings,
    company: str,
    with_user: bool = False,
    check: bool = False,
    keep_token: bool = False,
    purge: bool = False,
) -> TenantOutcome:
    """Remove the company's SFTP login, read token and Grafana resources.

    The token goes first, so Grafana's datasource reads nothing more even if a later
    step fails (`keep_token`: it stays). Its buckets, their data and the downsampling
    tasks go only with `purge`, an explicit choice; its files always stay. `check`
    lists every step and changes nothing.
    """
    if purge:  # never a meta or system bucket, nor another company's downsampled one
        check_company(company, settings.reserved_company_names)
    else:
        check_name("company", company)
    outcome = TenantOutcome(company)
    outcome.sftp_skipped = _sftp_skipped(settings)
    if settings.sftp_server == "openssh":
        outcome.openssh = remove_account(settings, company, check=check)
    elif outcome.sftp_skipped is None:
        with SftpgoApi.from_settings(settings) as api:
            outcome.sftpgo = delete_sftpgo_user(api, company, check=check)
    if purge or not keep_token:
        target = open_target(settings)
        try:
            if not keep_token:
                outcome.influx_changes += plan_revoke(
                    target.client,
                    settings.influxdb_org,
                    company,
                    settings.secrets_dir,
                    apply=not check,
                )
            if purge:
                outcome.influx_changes += remove_downsampling(
                    target.client, settings, company, check=check
                )
        finally:
            target.close()
    env = grafana_env(settings)
    if env is None:
        outcome.grafana_skipped = "Grafana not configured (GRAFANA_URL unset)"
        return outcome
    outcome.grafana = run_playbook(
        DELETE,
        {"company_name": company, "delete_user": with_user, "tenancy": settings.tenancy},
        check=check,
        env=env,
        diff=True,
        folder=settings.grafana_automation_dir,
    )
    return outcome


def _company_name(name: str, settings: Settings) -> bool:
    try:
        check_company(name, settings.reserved_company_names)
    except NameRuleError:
        return False
    return True


def list_tenants(settings: Settings) -> list[dict[str, Any]]:
    """Companies with a bucket (or a managed SFTP account): read token, value on file,
    and the SFTPGo user's or the OpenSSH account's state when PowerView manages it."""
    target = open_target(settings)
    try:
        buckets = target.client.buckets_api().find_buckets(limit=100).buckets or []
        tokens = {t.description for t in find_tokens(target.client, settings.influxdb_org)}
    finally:
        target.close()
    in_influx = {b.name for b in buckets}
    # A bucket whose name no company may take (InfluxDB's own `_monitoring`, a meta
    # bucket, one made by hand) is not a tenant.
    names = {n for n in in_influx if _company_name(n, settings)}
    sftp_users: dict[str, dict[str, Any]] | None = None
    if settings.sftp_server == "sftpgo":
        with SftpgoApi.from_settings(settings) as api:
            sftp_users = {u["username"]: u for u in api.list_all("users")}
        home = settings.data_root.resolve()
        names |= {
            n
            for n, u in sftp_users.items()
            if u.get("home_dir") == str(home / n) and _company_name(n, settings)
        }
    if settings.sftp_server == "openssh":
        names |= {n for n in managed_companies(settings) if _company_name(n, settings)}
    rows = []
    for name in sorted(names):
        row: dict[str, Any] = {
            "company": name,
            "bucket": name in in_influx,
            "read_token": token_description(name) in tokens,
            "token_on_file": read_token(settings.secrets_dir, name) is not None,
        }
        if sftp_users is not None:
            row.update(user_summary(sftp_users.get(name)))
        if settings.sftp_server == "openssh":
            row.update(account_state(settings, name))
        rows.append(row)
    return rows


def provision_campaign(settings: Settings, company: str, campaign: str) -> dict[str, Any]:
    """The worker's provisioning job for a new `<company>/<campaign>` folder."""
    try:
        outcome = create_tenant(settings, company, (campaign,), manage_sftp=False)
    except (InfrastructureError, InfluxRequestError) as exc:
        return {"outcome": "retry", "error": str(exc)}
    except NameRuleError as exc:  # a reserved name: no retry will change that
        return {"outcome": "done", "status": "refused", "error": str(exc)}
    result: dict[str, Any] = {
        "outcome": "done",
        "company": company,
        "campaign": campaign,
        "token_created": outcome.token_created,
        "downsample_changes": outcome.downsample_changes,
        "changed": outcome.changed,
    }
    if outcome.grafana_skipped:
        result["grafana"] = outcome.grafana_skipped
    elif outcome.grafana is not None:
        result["grafana_changes"] = outcome.grafana.changes
    return result
