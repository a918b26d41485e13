#!/usr/bin/python
"""Ansible module: a company's Grafana resources for PowerView (see DOCUMENTATION)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: powerview_grafana_tenant
short_description: Create, keep or remove a company's Grafana resources for PowerView
description:
  - Creates or keeps the organization (tenancy C(org)), team, folder, datasource,
    one dashboard per campaign, the team's Viewer permission on the folder and
    optionally a default user; or removes them (never the InfluxDB data).
  - Idempotent; C(changed) is true only when something was written, and every written
    change is listed in C(changes). In check mode the same changes are worked out and
    listed, and nothing is written. With C(--diff), C(diff) gives each change's
    before/after view (tokens and passwords never appear).
  - The logic lives in C(powerview.provision.grafana) and C(powerview.provision.grafana_ensure),
    so the play must run with the Python interpreter where PowerView is installed.
attributes:
  check_mode: {support: full, description: Works out and reports the changes; writes nothing.}
  diff_mode: {support: full, description: Returns a before/after per changed resource.}
options:
  company: {description: Company name (PowerView's name rule)., required: true, type: str}
  campaigns: {description: Campaigns that get a dashboard., type: list, elements: str, default: []}
  state: {description: present or absent., type: str, choices: [present, absent], default: present}
  tenancy: {description: One Grafana organization per company, or one shared organization., type: str, choices: [org, team], default: org}
  datasource_type: {description: Datasource plugin id., type: str, default: influxdb-adecwatts-datasource}
  influx_url: {description: InfluxDB URL as Grafana reaches it., type: str, default: "http://127.0.0.1:8086"}
  influx_org: {description: InfluxDB organization., type: str, default: powerview}
  token_file: {description: File holding the company's bucket-scoped read token (never the admin token)., type: path}
  token_id: {description: InfluxDB authorization id of that token (to notice a replaced token)., type: str}
  default_user: {description: Create the default user user_<company>., type: bool, default: false}
  password_file: {description: Where a newly created default user's password is written (mode 0600)., type: path}
  with_user: {description: With state absent, also delete the default user., type: bool, default: false}
  enterprise: {description: Grafana Enterprise (datasource permissions exist)., type: bool, default: false}
  grafana_url: {description: Grafana URL; env GRAFANA_URL., type: str, required: true}
  grafana_username: {description: Grafana admin login; env GRAFANA_USERNAME., type: str}
  grafana_password: {description: Its password; env GRAFANA_PASSWORD., type: str}
  grafana_api_token: {description: A service account token instead; env GRAFANA_API_TOKEN., type: str}
"""

EXAMPLES = r"""
- name: Team, folder, datasource and dashboard of acme
  powerview_grafana_tenant:
    company: acme
    campaigns: [campaign1]
    token_file: /var/lib/powerview/secrets/acme.token
"""

RETURN = r"""
changes:
  description: What was (or, in check mode, would be) created, updated or deleted.
  returned: always
  type: list
  elements: dict
diff:
  description: >-
    With --diff, one entry per change: before_header and after_header name the
    resource, before and after are its views (empty when absent).
  returned: when run with --diff
  type: list
  elements: dict
org_id:
  description: The company's Grafana organization (tenancy org).
  returned: always
  type: int
password_file:
  description: Set when a default user was created; its password is in that file.
  returned: when a user was created
  type: str
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule, env_fallback  # noqa: E402


def _write_secret(path: str, value: str) -> None:
    from pathlib import Path

    from powerview.private_files import write_private

    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    write_private(Path(path), value + "\n")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "company": {"type": "str", "required": True},
            "campaigns": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "tenancy": {"type": "str", "choices": ["org", "team"], "default": "org"},
            "datasource_type": {"type": "str", "default": "influxdb-adecwatts-datasource"},
            "influx_url": {"type": "str", "default": "http://127.0.0.1:8086"},
            "influx_org": {"type": "str", "default": "powerview"},
            "token_file": {"type": "path"},
            "token_id": {"type": "str"},
            "default_user": {"type": "bool", "default": False},
            # A path, not a secret: no_log=False said explicitly, or Ansible warns
            # "Module did not set no_log for password_file" (its name looks like one).
            "password_file": {"type": "path", "no_log": False},
            "with_user": {"type": "bool", "default": False},
            "enterprise": {"type": "bool", "default": False},
            "grafana_url": {
                "type": "str",
                "required": True,
                "fallback": (env_fallback, ["GRAFANA_URL"]),
            },
            "grafana_username": {"type": "str", "fallback": (env_fallback, ["GRAFANA_USERNAME"])},
            "grafana_password": {
                "type": "str",
                "no_log": True,
                "fallback": (env_fallback, ["GRAFANA_PASSWORD"]),
            },
            "grafana_api_token": {
                "type": "str",
                "no_log": True,
                "fallback": (env_fallback, ["GRAFANA_API_TOKEN"]),
            },
        },
        required_one_of=[("grafana_password", "grafana_api_token")],
        required_together=[("grafana_username", "grafana_password")],
        required_if=[("default_user", True, ("password_file",))],
        supports_check_mode=True,
    )
    try:
        from powerview.exceptions import PowerViewError
        from powerview.provision.grafana import GrafanaTenant, TenantSpec, connector
    except ImportError as exc:
        module.fail_json(msg=f"PowerView is not importable by {os.sys.executable}: {exc}")
    params = module.params
    token = None
    if params["token_file"] and os.path.isfile(params["token_file"]):
        with open(params["token_file"]) as handle:
            token = handle.read().strip() or None
        if token:
            module.no_log_values.add(token)
    try:
        spec = TenantSpec(
            company=params["company"],
            campaigns=tuple(params["campaigns"]),
            tenancy=params["tenancy"],
            datasource_type=params["datasource_type"],
            influx_url=params["influx_url"],
            influx_org=params["influx_org"],
            read_token=token,
            token_id=params["token_id"],
            default_user=params["default_user"],
            enterprise=params["enterprise"],
        )
        connect = connector(
            params["grafana_url"],
            params["grafana_username"],
            params["grafana_password"],
            params["grafana_api_token"],
        )
        tenant = GrafanaTenant(connect, spec, check=module.check_mode)
        if params["state"] == "present":
            result = tenant.ensure()
        else:
            result = tenant.delete(with_user=params["with_user"])
    except (PowerViewError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    output = result.as_dict()
    if module._diff:
        output["diff"] = result.diff()
    if result.default_user_password:
        _write_secret(params["password_file"], result.default_user_password)
        module.no_log_values.add(result.default_user_password)
        output["password_file"] = params["password_file"]
    for warning in result.warnings:
        module.warn(warning)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
