"""SFTPGo's Event Manager calling PowerView: the action and rules `tenant create` ensures,
and the hook run exactly as such a rule runs it.

SFTPGo (internal/common/eventmanager.go) runs a command action as
`exec.Command(cmd, args...)` with `cmd.Env` = the action's `env_vars`, each value a
Go template rendered with the event's fields, and nothing else: no SFTPGO_ACTION*
variable, no PATH unless the action sets one. These tests take the action as the
SFTPGo stand-in stores it, render its templates with the values SFTPGo would put
in for a real upload, rename or mkdir, check which rules the event matches, and run
the action's command with exactly that environment through the repository's
`deploy/on-upload.sh` shim.
"""

from __future__ import annotations

import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from powerview import settings as config
from powerview.provision.sftpgo import SftpgoApi, ensure_events
from powerview.queue import QUEUE_FILE
from tests.integration.helpers_events import POWERVIEW, Site, make_site
from tests.sftpgo_standin.server import SftpgoStandin

SN = "02001084"
REPO = Path(__file__).resolve().parents[2]
# The fields SFTPGo documents for placeholders ("Placeholders & Templates",
# docs.sftpgo.com, core fields, v2.7): a rule may use these and nothing else.
DOCUMENTED_PLACEHOLDERS = frozenset(
    {
        "Name", "ExtName", "Event", "Status", "Errors", "VirtualPath", "FsPath",
        "VirtualTargetPath", "FsTargetPath", "ObjectName", "ObjectType", "FileSize",
        "Elapsed", "Protocol", "IP", "Role", "Timestamp", "Email", "ObjectData",
        "VirtualDirPath", "VirtualTargetDirPath", "TargetName", "Ext", "UID",
    }
)  # fmt: skip
PLACEHOLDER = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def render(template: str, event: dict[str, Any]) -> str:
    """Go's text/template for the only form the rule uses: `{{.Field}}` → the field's value."""
    rendered = PLACEHOLDER.sub(lambda m: str(event[m.group(1)]), template)
    assert "{{" not in rendered, f"template syntax beyond {{{{.Field}}}}: {template!r}"
    return rendered


def matching_rules(rules: dict[str, dict[str, Any]], event: dict[str, Any]) -> list[str]:
    """The enabled filesystem rules an event triggers: its name, and its status if filtered."""
    matched = []
    for name, rule in sorted(rules.items()):
        conditions = rule.get("conditions", {})
        statuses = conditions.get("options", {}).get("event_statuses") or []
        if (
            rule.get("status") == 1
            and rule.get("trigger") == 1
            and event["Event"] in conditions.get("fs_events", [])
            and (not statuses or event["Status"] in statuses)
        ):
            matched.append(name)
    return matched


def event(site: Site, kind: str, path: Path, target: Path | None = None, status: int = 1):
    """The fields SFTPGo fills in for an event of user acme (home <data>/acme)."""
    home = site.data / "acme"

    def virtual(p: Path | None) -> str:
        return "" if p is None else "/" + str(p.relative_to(home))

    return {
        "Name": "acme",
        "Event": kind,
        "Status": status,
        "FsPath": str(path),
        "VirtualPath": virtual(path),
        "FsTargetPath": "" if target is None else str(target),
        "VirtualTargetPath": virtual(target),
        "FileSize": 5 if kind != "mkdir" else 0,
        "Protocol": "SFTP",
    }


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = make_site(tmp_path / "site")
    (site.data / "acme" / "c1" / SN).mkdir(parents=True)
    return site


@pytest.fixture
def shim(tmp_path: Path) -> Path:
    """deploy/on-upload.sh, pointed at this checkout's `powerview` instead of /opt."""
    text = (REPO / "deploy" / "on-upload.sh").read_text()
    assert "/opt/powerview/.venv/bin/powerview" in text
    path = tmp_path / "on-upload.sh"
    path.write_text(text.replace("/opt/powerview/.venv/bin/powerview", POWERVIEW))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def stored(sftpgo: SftpgoStandin, site: Site, shim: Path) -> SftpgoStandin:
    """SFTPGo after `tenant create`'s event step, as PowerView configured it for `site`."""
    settings = config.load(
        data_root=site.data, state_dir=site.state, sftpgo_hook=str(shim), sftpgo_url=sftpgo.url
    )
    with SftpgoApi(sftpgo.url, api_key=sftpgo.api_key) as api:
        ensure_events(api, settings)
    return sftpgo


def run_action(sftpgo: SftpgoStandin, fields: dict[str, Any], cwd: Path):
    """Run the action as SFTPGo does: its command, its args, only its rendered env."""
    action = sftpgo.state.actions["powerview-hook"]
    config_ = action["options"]["cmd_config"]
    env = {item["key"]: render(item["value"], fields) for item in config_["env_vars"]}
    return subprocess.run(
        [config_["cmd"], *config_.get("args", [])],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=config_["timeout"],
        check=False,
    )


def test_the_action_and_rules_are_created_once_and_put_back_when_changed(
    sftpgo: SftpgoStandin, site: Site, shim: Path
) -> None:
    settings = config.load(data_root=site.data, state_dir=site.state, sftpgo_hook=str(shim))
    with SftpgoApi(sftpgo.url, api_key=sftpgo.api_key) as api:
        first = ensure_events(api, settings)
        assert [(c.action, c.resource) for c in first] == [
            ("create", "SFTPGo event action powerview-hook"),
            ("create", "SFTPGo event rule powerview-uploads"),
            ("create", "SFTPGo event rule powerview-mkdir"),
        ]
        writes = len(sftpgo.writes())
        assert ensure_events(api, settings) == []
        assert len(sftpgo.writes()) == writes
        # Someone edits the action by hand: a longer timeout, the status variable dropped.
        action = api.get("eventactions", "powerview-hook")
        assert action is not None
        cmd = action["options"]["cmd_config"]
        cmd["timeout"] = 100
        cmd["env_vars"] = [v for v in cmd["env_vars"] if v["key"] != "SFTPGO_ACTION_STATUS"]
        api.update("eventactions", "powerview-hook", action)
        assert ensure_events(api, settings, check=True)[0].action == "update"
        assert sftpgo.state.actions["powerview-hook"]["options"]["cmd_config"]["timeout"] == 100
        again = ensure_events(api, settings)
        assert [(c.action, c.resource) for c in again] == [
            ("update", "SFTPGo event action powerview-hook")
        ]
        assert again[0].before is not None
        assert again[0].before["options"]["cmd_config"]["timeout"] == 100
        assert sftpgo.state.actions["powerview-hook"]["options"]["cmd_config"]["timeout"] == 15
        assert ensure_events(api, settings) == []
    assert sftpgo.violations == []


def test_the_rules_are_what_the_design_says(stored: SftpgoStandin, shim: Path) -> None:
    uploads = stored.state.rules["powerview-uploads"]
    assert uploads["conditions"]["fs_events"] == ["upload", "rename"]
    assert uploads["conditions"]["options"]["event_statuses"] == [1]
    mkdir = stored.state.rules["powerview-mkdir"]
    assert mkdir["conditions"]["fs_events"] == ["mkdir"]
    for rule in (uploads, mkdir):
        assert rule["status"] == 1
        assert rule["trigger"] == 1
        assert rule["actions"] == [
            {
                "name": "powerview-hook",
                "order": 1,
                "relation_options": {
                    "is_failure_action": False,
                    "stop_on_failure": False,
                    "execute_sync": False,  # a failed sync upload action fails the upload
                },
            }
        ]
    action = stored.state.actions["powerview-hook"]
    assert action["type"] == 2
    assert action["options"]["cmd_config"]["cmd"] == str(shim)
    assert stored.violations == []


def test_the_rule_uses_only_documented_placeholders_under_the_hooks_names(
    stored: SftpgoStandin,
) -> None:
    env = {
        item["key"]: item["value"]
        for item in stored.state.actions["powerview-hook"]["options"]["cmd_config"]["env_vars"]
    }
    used = {name for value in env.values() for name in PLACEHOLDER.findall(value)}
    assert used <= DOCUMENTED_PLACEHOLDERS, used - DOCUMENTED_PLACEHOLDERS
    # What `powerview hook` (events.decide_sftpgo) reads, each from the right field.
    assert env["SFTPGO_ACTION"] == "{{.Event}}"
    assert env["SFTPGO_ACTION_USERNAME"] == "{{.Name}}"
    assert env["SFTPGO_ACTION_PATH"] == "{{.FsPath}}"
    assert env["SFTPGO_ACTION_TARGET"] == "{{.FsTargetPath}}"
    assert env["SFTPGO_ACTION_STATUS"] == "{{.Status}}"
    for value in env.values():  # every template is plain `{{.Field}}`: nothing else to render
        assert value.count("{{") == len(PLACEHOLDER.findall(value))


@pytest.mark.parametrize(
    ("case", "expected_rule"),
    [("upload", "powerview-uploads"), ("rename", "powerview-uploads"),
     ("mkdir", "powerview-mkdir")],
)  # fmt: skip
def test_the_hook_run_with_the_rules_environment_queues_the_right_job(
    stored: SftpgoStandin, site: Site, case: str, expected_rule: str
) -> None:
    folder = site.data / "acme" / "c1" / SN
    final = folder / "x.tsv"
    if case == "upload":
        final.write_text("data\n")
        fields = event(site, "upload", final)
        expected = ("ingest", f"ingest:{final}")
    elif case == "rename":
        temp = folder / "x.tsv.filepart"
        final.write_text("data\n")
        fields = event(site, "rename", temp, final)
        expected = ("ingest", f"ingest:{final}")
    else:
        (site.data / "acme" / "c2").mkdir()
        fields = event(site, "mkdir", site.data / "acme" / "c2")
        expected = ("provision", "provision:acme/c2")
    assert matching_rules(stored.state.rules, fields) == [expected_rule]  # one job, not two
    started = time.perf_counter()
    done = run_action(stored, fields, cwd=site.home)
    print(f"{case}: exit {done.returncode} in {time.perf_counter() - started:.3f} s")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    jobs = site.jobs()
    assert [(j.kind, j.key, j.state) for j in jobs] == [(*expected, "queued")]
    assert jobs[0].source == f"sftpgo:{case}"
    if case != "mkdir":
        assert jobs[0].payload == {
            "path": str(final),
            "company": "acme",
            "campaign": "c1",
            "device_sn": SN,
            "complete": True,
        }
    # The shim's umask: whatever the hook creates in the state folder stays group-writable.
    queue_mode = (site.state / QUEUE_FILE).stat().st_mode
    assert queue_mode & stat.S_IWGRP
    assert not queue_mode & stat.S_IWOTH


@pytest.mark.parametrize("status", [2, 3], ids=["failed", "quota"])
def test_a_failed_upload_triggers_no_rule_and_the_hook_would_ignore_it(
    stored: SftpgoStandin, site: Site, status: int
) -> None:
    partial = site.data / "acme" / "c1" / SN / "x.tsv"
    partial.write_text("da")
    fields = event(site, "upload", partial, status=status)
    assert matching_rules(stored.state.rules, fields) == []
    # Even if a rule without the status filter ran it, the hook reads the status.
    done = run_action(stored, fields, cwd=site.home)
    assert done.returncode == 0, done.stderr
    assert "ignored" in done.stderr
    assert site.jobs() == []
