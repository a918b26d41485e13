"""A company's InfluxDB side: its bucket and its bucket-scoped read token.

The token (described `powerview_token_for_bucket_<company>`) can read the
company's bucket and nothing else; it is what Grafana gets, never the admin
token. InfluxDB shows a token's value only when it is created, so it is kept
in a 0600 file of the state folder; a token whose value was lost is replaced
(revoked and created anew), never recovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from influxdb_client import Authorization, Bucket, InfluxDBClient, Permission, PermissionResource
from influxdb_client.rest import ApiException

from powerview.exceptions import InfluxRequestError
from powerview.influx import map_influx_errors
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


def ensure_bucket(client: InfluxDBClient, org: str, company: str) -> Bucket:
    name = check_name("company", company)
    api = client.buckets_api()
    with map_influx_errors(f"ensuring bucket {name!r}"):
        bucket = api.find_bucket_by_name(name)
        if bucket is None:
            try:
                bucket = api.create_bucket(bucket_name=name, org=org)
            except ApiException as exc:  # 422: created meanwhile by an ingestion
                bucket = api.find_bucket_by_name(name) if exc.status == 422 else None
                if bucket is None:
                    raise
    found: Bucket = bucket
    return found


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


def ensure_read_token(
    client: InfluxDBClient, org: str, company: str, secrets_dir: Path
) -> TokenState:
    """Make sure the company's read token exists and its value is on file."""
    bucket = ensure_bucket(client, org, company)
    path = token_file(secrets_dir, company)
    existing = find_tokens(client, org, company)
    on_file = path.is_file() and path.read_text().strip()
    if existing and on_file:
        return TokenState(company, str(existing[0].id), path, created=False)
    api = client.authorizations_api()
    with map_influx_errors(f"replacing the read token of {company!r}"):
        for auth in existing:  # its value is lost: replace, never recover
            api.delete_authorization(auth)
        owner = org_id(client, org)
        read = Permission(
            action="read",
            resource=PermissionResource(type="buckets", id=bucket.id, org_id=owner),
        )
        created = api.create_authorization(
            authorization=Authorization(
                org_id=owner, permissions=[read], description=token_description(company)
            )
        )
    _write_secret(path, str(created.token))
    return TokenState(company, str(created.id), path, created=True)


def read_token(secrets_dir: Path, company: str) -> str | None:
    path = token_file(secrets_dir, company)
    return path.read_text().strip() if path.is_file() else None


def revoke_tokens(client: InfluxDBClient, org: str, company: str, secrets_dir: Path) -> int:
    """Delete the company's read tokens and their file; the bucket and data stay."""
    tokens = find_tokens(client, org, company)
    with map_influx_errors(f"revoking the tokens of {company!r}"):
        for auth in tokens:
            client.authorizations_api().delete_authorization(auth)
    token_file(secrets_dir, company).unlink(missing_ok=True)
    return len(tokens)


def _write_secret(path: Path, value: str) -> None:
    write_private(path, value + "\n")  # creates the secrets folder 0700 if missing
