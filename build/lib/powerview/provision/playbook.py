"""Runs the Grafana playbooks with ansible-core and reads their results.

Variables go in a 0600 JSON file (`-e @vars.json`), never on a command line
built from strings; Grafana credentials stay in the environment, where the
project's module reads them (`no_log`). Output is Ansible's JSON callback, so
the failing task and the module's changes are read, not scraped.

The playbooks, the module, the callback, ansible.cfg, the inventory and the
dashboard templates are package data (`powerview/grafana_automation/`), found
through `importlib.resources`, so an installed wheel runs them without a source
checkout; `POWERVIEW_GRAFANA_AUTOMATION_DIR` points to an operator's own copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from powerview.exceptions import PlaybookError

AUTOMATION_PACKAGE_DIR = "grafana_automation"
CREATE = "create_grafana_resources.yml"
DELETE = "delete_grafana_resources.yml"


@dataclass
class PlaybookResult:
    changed: bool = False
    changes: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    module: dict[str, Any] = field(default_factory=dict)
    diffs: list[dict[str, Any]] = field(default_factory=list)  # before/after, with `diff`


def packaged_dir() -> Path:
    """The copy installed with the package (a real folder: Ansible needs paths)."""
    packaged = files("powerview") / AUTOMATION_PACKAGE_DIR
    if not isinstance(packaged, Path):  # e.g. imported from a zip: nothing Ansible can read
        raise PlaybookError(f"the packaged playbooks are not a folder ({packaged})")
    return packaged


def automation_dir(configured: Path | None = None) -> Path:
    """The configured folder (POWERVIEW_GRAFANA_AUTOMATION_DIR), else the packaged one."""
    folder = configured if configured is not None else packaged_dir()
    if not (folder / "playbooks").is_dir():
        origin = "POWERVIEW_GRAFANA_AUTOMATION_DIR" if configured else "the installed package"
        raise PlaybookError(f"no playbooks in {folder} (from {origin})")
    return folder


def run_playbook(
    playbook: str,
    variables: dict[str, Any],
    check: bool = False,
    env: dict[str, str] | None = None,
    timeout_s: float = 600,
    diff: bool = False,
    folder: Path | None = None,
) -> PlaybookResult:
    """Run one playbook against localhost with `variables`; raise PlaybookError on failure.

    `diff` runs it with `--diff`: the module then returns each change's before/after.
    `folder` is the configured automation folder (None: the packaged one).
    """
    folder = automation_dir(folder)
    ansible = Path(sys.executable).parent / "ansible-playbook"
    if not ansible.exists():
        raise PlaybookError(f"ansible-playbook not found beside {sys.executable} (ansible-core)")
    variables = {**variables, "ansible_python_interpreter": sys.executable}
    run_env = {
        **os.environ,
        **(env or {}),
        "ANSIBLE_CONFIG": str(folder / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "powerview_json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": tempfile.gettempdir(),
    }
    with tempfile.TemporaryDirectory(prefix="powerview-play-") as tmp:
        vars_file = Path(tmp) / "vars.json"
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(variables, out)
        command = [str(ansible), str(folder / "playbooks" / playbook), "-e", f"@{vars_file}"]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        completed = subprocess.run(
            command,
            cwd=folder,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    return _read_output(playbook, completed)


def _read_output(playbook: str, completed: subprocess.CompletedProcess[str]) -> PlaybookResult:
    try:
        report = json.loads(completed.stdout[completed.stdout.index("{") :])
    except ValueError as exc:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
        raise PlaybookError(
            f"{playbook} exited {completed.returncode}: " + " | ".join(detail)
        ) from exc
    result = PlaybookResult()
    for play in report.get("plays", []):
        for task in play.get("tasks", []):
            name = task.get("task", {}).get("name", "?")
            for outcome in task.get("hosts", {}).values():
                if outcome.get("failed") or outcome.get("unreachable"):
                    message = outcome.get("msg") or outcome.get("message") or "failed"
                    raise PlaybookError(f"{playbook}: task {name!r} failed: {message}")
                result.warnings += outcome.get("warnings", [])
                if "changes" in outcome:
                    result.module = outcome
                    result.changes += outcome["changes"]
                    result.diffs += outcome.get("diff") or []
                    result.changed = result.changed or bool(outcome.get("changed"))
    if completed.returncode != 0:
        raise PlaybookError(f"{playbook} exited {completed.returncode}")
    return result
