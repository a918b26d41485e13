"""A company's InfluxDB side: its bucket and its bucket-scoped read token.

The token (described `powerview_token_for_bucket_<company>`) can read the
company's buckets (the raw one and, for a tenant, its `_1h`, `_1d` and `_1w`
downsampled ones: one read permission per bucket id) and nothing else; it is
what Grafana gets, never the admin token. InfluxDB cannot change a token's
permissions, so a token whose buckets differ from the wanted ones (one of the
single-bucket era) is replaced. InfluxDB shows a token's value only when it is
created, so it is kept in a 0600 file of the state folder; a token whose value
was lost is replaced (revoked and created anew), never recovered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from influxdb_client import Authorization, Bucket, InfluxDBClient, Permission, PermissionResource

from powerview.exceptions import InfluxRequestError
from powerview.influx import find_or_create_bucket, map_influx_errors
from powerview.layout import check_name
from powerview.private_files import write_private

TOKEN_PREFIX = "powerview_token_for_bucket_"  # noqa: S105  (a description, not a secret)


def token_description(company: str) -> str:
    return TOKEN_PREFIX + check_name("company", company)


@dataclass(frozen=True)
class TokenState:
    company: str
    authorization_id: str
    token_file: Path
    created: bool  # a new token was made this time (first time, or value lost)


def token_file(secrets_dir: Path, company: str) -> Path:
    return secrets_dir / f"{check_name('company', company)}.token"


def org_id(client: InfluxDBClient, org: str) -> str:
    with map_influx_errors(f"looking up org {org!r}"):
        found = client.organizations_api().find_organizations(org=org)
    if not found:
        raise InfluxRequestError(f"InfluxDB has no organization {org!r}")
    return str(found[0].id)


def ensure_bucket(client: InfluxDBClient, org: str, company: str, suffix: str = "") -> Bucket:
    """The company's bucket (`suffix`: one of its downsampled ones), created if missing."""
    return find_or_create_bucket(client, org, check_name("company", company) + suffix)


def find_tokens(
    client: InfluxDBClient, org: str, company: str | None = None
) -> list[Authorization]:
    """PowerView's bucket tokens in `org` (of one company, or all)."""
    wanted = token_description(company) if company else None
    with map_influx_errors("listing authorizations"):
        found = client.authorizations_api().find_authorizations(org_id=org_id(client, org))
    return [
        auth
        for auth in found
        if (auth.description or "").startswith(TOKEN_PREFIX)
        and (wanted is None or auth.description == wanted)
    ]


def _read_bucket_ids(auth: Authorization) -> set[str] | None:
    """The buckets `auth` reads, or None if it may do anything else."""
    permissions = auth.permissions or []
    if any(p.action != "read" or p.resource.type != "buckets" for p in permissions):
        return None
    return {str(p.resource.id) for p in permissions}


def reads_exactly(client: InfluxDBClient, auth: Authorization, buckets: Sequence[str]) -> bool:
    """Whether `auth` reads these existing buckets and may do nothing else."""
    api = client.buckets_api()
    with map_influx_errors("looking up buckets"):
        found = [api.find_bucket_by_name(name) for name in buckets]
    ids = {str(bucket.id) for bucket in found if bucket is not None}
    return len(ids) == len(buckets) and _read_bucket_ids(auth) == ids


def ensure_read_token(
    client: InfluxDBClient,
    org: str,
    company: str,
    secrets_dir: Path,
    suffixes: Sequence[str] = ("",),
) -> TokenState:
    """Make sure the company's read token exists, reads exactly its buckets named by
    `suffixes` (default: the raw one only) and has its value on file."""
    wanted = {str(ensure_bucket(client, org, company, suffix).id) for suffix in suffixes}
    path = token_file(secrets_dir, company)
    existing = find_tokens(client, org, company)
    on_file = path.is_file() and path.read_text().strip()
    if len(existing) == 1 and on_file and _read_bucket_ids(existing[0]) == wanted:
        return TokenState(company, str(existing[0].id), path, created=False)
    api = client.authorizations_api()
    with map_influx_errors(f"replacing the read token of {company!r}"):
        for auth in existing:  # value lost or other buckets: replace, never recover
            api.delete_authorization(auth)
        owner = org_id(client, org)
        reads = [
            Permission(
                action="read",
                resource=PermissionResource(type="buckets", id=bucket_id, org_id=owner),
            )
            for bucket_id in sorted(wanted)
        ]
        created = api.create_authorization(
            authorization=Authorization(
                org_id=owner, permissions=reads, description=token_description(company)
            )
        )
    _write_secret(path, str(created.token))
    return TokenState(company, str(created.id), path, created=True)


def read_token(secrets_dir: Path, company: str) -> str | None:
    path = token_file(secrets_dir, company)
    return path.read_text().strip() if path.is_file() else None


def revoke_tokens(client: InfluxDBClient, org: str, company: str, secrets_dir: Path) -> int:
    """Delete the company's read tokens and their file; the bucket and data stay."""
    return len(
        [change for change in plan_revoke(client, org, company, secrets_dir, apply=True)
         if change.startswith("revoke")]
    )  # fmt: skip


def plan_revoke(
    client: InfluxDBClient, org: str, company: str, secrets_dir: Path, apply: bool
) -> list[str]:
    """Each step of revoking the company's read tokens, done when `apply` (else only said):
    InfluxDB forgets the authorization, then the value on file is deleted."""
    changes: list[str] = []
    tokens = find_tokens(client, org, company)
    with map_influx_errors(f"revoking the tokens of {company!r}"):
        for auth in tokens:
            changes.append(f"revoke read token {auth.id} ({auth.description})")
            if apply:
                client.authorizations_api().delete_authorization(auth)
    path = token_file(secrets_dir, company)
    if path.is_file():
        changes.append(f"delete token file {path}")
        if apply:
            path.unlink(missing_ok=True)
    return changes


def _write_secret(path: Path, value: str) -> None:
    write_private(path, value + "\n")  # creates the secrets folder 0700 if missing
