"""The wheel carries everything the product runs (issue 11).

`pip install .` once installed a package that could not find its playbooks: they
lived beside the source checkout. This builds the wheel, installs it with its
dependencies into a fresh virtualenv outside the checkout and runs that venv's
`powerview tenant create` from a folder outside the checkout (PYTHONSAFEPATH=1,
no PYTHONPATH), against the Grafana stand-in and the real InfluxDB.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from influxdb_client import InfluxDBClient

from tests.conftest import InfluxInstance
from tests.grafana_standin.server import GrafanaStandin

CHECKOUT = Path(__file__).resolve().parents[2]
PACKAGE_DATA = (
    "powerview/grafana_automation/ansible.cfg",
    "powerview/grafana_automation/inventory.ini",
    "powerview/grafana_automation/playbooks/create_grafana_resources.yml",
    "powerview/grafana_automation/playbooks/delete_grafana_resources.yml",
    "powerview/grafana_automation/library/powerview_grafana_tenant.py",
    "powerview/grafana_automation/callback_plugins/powerview_json.py",
    "powerview/grafana_automation/dashboards/admin.json",
    "powerview/install-influxd",  # `powerview stack install` builds influxd with it
    "powerview/campaign_report/templates/report.html.j2",  # the report's HTML and PDF
)


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert completed.returncode == 0, (command, completed.stdout[-3000:], completed.stderr[-3000:])
    return completed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from what pyproject.toml declares (src/, README.md).

    Built from a copy: setuptools builds in the tree (build/, *.egg-info), and the
    checkout must stay as it is; the copy also holds nothing but what the build reads.
    """
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(CHECKOUT / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(CHECKOUT / "src", source / "src", ignore=junk)
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(out)])
    (built,) = out.glob("powerview-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the checkout with the wheel and its dependencies."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    assert not home.is_relative_to(CHECKOUT)
    venv.create(home, with_pip=True)
    run([str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    return home


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus anything pointing into the checkout or its venv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERVIEW_", "INFLUXDB_", "GRAFANA_", "TSV_", "SFTPGO_"))
        and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return {**env, "PYTHONSAFEPATH": "1", **extra}


def test_the_wheel_carries_the_playbooks_module_callback_templates_and_installer(
    wheel: Path,
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert missing == []


@pytest.fixture
def company(influx_client: InfluxDBClient) -> Iterator[str]:
    name = f"pk{os.urandom(4).hex()}"
    yield name
    api = influx_client.buckets_api()
    for suffix in ("", "_1h", "_1d", "_1w"):
        bucket = api.find_bucket_by_name(name + suffix)
        if bucket is not None:
            api.delete_bucket(bucket)


def test_the_installed_wheel_creates_a_tenant_outside_the_checkout(
    installed: Path,
    influxdb: InfluxInstance,
    grafana: GrafanaStandin,
    company: str,
    influx_client: InfluxDBClient,
    tmp_path: Path,
) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = clean_env(
        INFLUXDB_URL=influxdb.url,
        INFLUXDB_ORG=influxdb.org,
        INFLUXDB_ADMIN_TOKEN=influxdb.token,
        POWERVIEW_STATE_DIR=str(tmp_path / "state"),
        GRAFANA_URL=grafana.url,
        GRAFANA_USERNAME=grafana.admin_user,
        GRAFANA_PASSWORD=grafana.admin_password,
    )
    python = str(installed / "bin" / "python")
    where = run(
        [python, "-c", "import powerview; print(powerview.__file__)"], cwd=cwd, env=env
    ).stdout.strip()
    assert Path(where).is_relative_to(installed), where  # the wheel's copy, not the checkout's

    done = run(
        [str(installed / "bin" / "powerview"), "tenant", "create", company, "--campaign", "c1"],
        cwd=cwd,
        env=env,
    )

    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    org = grafana.state.org_by_name(company)
    assert org is not None
    assert [f.title for f in grafana.state.folders_in(org.id)] == [company]
    assert grafana.state.datasource_by_name(org.id, f"influxdb_{company}") is not None
    assert influx_client.buckets_api().find_bucket_by_name(company) is not None
    assert grafana.violations == []
