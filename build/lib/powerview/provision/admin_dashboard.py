"""The admin's ingestion dashboard, in the admin's own Grafana organization.

The dashboard JSON lives in the repository
(`grafana_automation/dashboards/admin.json`, package data) with Flux queries over the meta
bucket; provisioning fills in the datasource and the two constants
(`meta_bucket`, `cadence_h`) and posts it with grafana-client, beside:

- an InfluxDB read token scoped to the meta bucket (never the admin token),
  kept like the companies' tokens in the state folder;
- a datasource `powerview_meta` (uid `pv-admin-meta`) holding that token;
- a folder `PowerView admin` (uid `pv-admin`).

Everything goes into the organization the Grafana credentials act in (no
`X-Grafana-Org-Id`): the admin's own, never a company's. Each step goes
through the same ensure core as the tenants (`grafana_ensure`): look, plan,
apply what differs, record it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_client import GrafanaApi

from powerview.exceptions import ConfigError
from powerview.influx import open_target
from powerview.provision.grafana import connector, grafana_step
from powerview.provision.grafana_ensure import Change, Ensurer, flux_datasource
from powerview.provision.playbook import automation_dir, packaged_dir
from powerview.provision.tokens import ensure_read_token
from powerview.settings import Settings

DASHBOARD_FILE = packaged_dir() / "dashboards" / "admin.json"
DATASOURCE_UID = "pv-admin-meta"
DATASOURCE_NAME = "powerview_meta"
FOLDER_UID = "pv-admin"
FOLDER_TITLE = "PowerView admin"


def load_dashboard(
    meta_bucket: str,
    cadence_h: float,
    datasource_uid: str = DATASOURCE_UID,
    datasource_type: str = "influxdb-adecwatts-datasource",
    path: Path = DASHBOARD_FILE,
) -> dict[str, Any]:
    """The dashboard JSON with its datasource and constants filled in."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    datasource = {"type": datasource_type, "uid": datasource_uid}
    for panel in dashboard["panels"]:
        panel["datasource"] = copy.deepcopy(datasource)
        for target in panel.get("targets", []):
            target["datasource"] = copy.deepcopy(datasource)
    constants = {"meta_bucket": meta_bucket, "cadence_h": f"{cadence_h:g}"}
    for variable in dashboard["templating"]["list"]:
        if variable["name"] in constants:
            variable["query"] = constants[variable["name"]]
    return dashboard


def provision_admin_dashboard(
    settings: Settings,
    check: bool = False,
    connect: Callable[[int | None], GrafanaApi] | None = None,
) -> list[Change]:
    """Create or update the admin dashboard and what it needs; `check`: change nothing.

    `connect` is the seam to Grafana (default: a client from the settings).
    """
    if not settings.grafana_url:
        raise ConfigError("GRAFANA_URL is not set: the admin dashboard goes to Grafana")
    changes: list[Change] = []
    token: str | None = None
    token_created = False
    if not check:
        target = open_target(settings)
        try:
            state = ensure_read_token(
                target.client, settings.influxdb_org, settings.meta_bucket, settings.secrets_dir
            )
        finally:
            target.close()
        token = state.token_file.read_text().strip()
        token_created = state.created
        if token_created:
            changes.append(Change(f"read token for bucket {settings.meta_bucket}", "create"))
    if connect is None:
        connect = connector(
            settings.grafana_url,
            settings.grafana_username,
            settings.grafana_password.get_secret_value() if settings.grafana_password else None,
            settings.grafana_api_token.get_secret_value() if settings.grafana_api_token else None,
        )
    grafana = Ensurer(connect(None), check, changes)
    with grafana_step(f"folder {FOLDER_TITLE}"):
        grafana.folder(FOLDER_UID, FOLDER_TITLE)
    body = flux_datasource(
        DATASOURCE_NAME,
        DATASOURCE_UID,
        settings.grafana_datasource_type,
        settings.grafana_influxdb_url or settings.influxdb_url,
        settings.influxdb_org,
        bucket=settings.meta_bucket,
        is_default=False,
    )
    resource = f"datasource {DATASOURCE_NAME}"
    with grafana_step(resource):
        grafana.datasource(resource, body, token, token_replaced=token_created)
    wanted = load_dashboard(
        settings.meta_bucket,
        settings.expected_cadence_h,
        DATASOURCE_UID,
        settings.grafana_datasource_type,
        automation_dir(settings.grafana_automation_dir) / "dashboards" / "admin.json",
    )
    resource = f"dashboard {wanted['title']}"
    with grafana_step(resource):
        grafana.dashboard(resource, wanted, FOLDER_UID, "powerview admin dashboard")
    return changes
