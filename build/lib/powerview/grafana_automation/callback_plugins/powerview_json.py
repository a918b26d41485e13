"""Ansible stdout callback: the play's results as one JSON document.

ansible-core ships no JSON callback (that one lives in the ansible.posix
collection, which ansible-core does not include), and PowerView reads task
results rather than scraping text. The shape follows ansible.posix.json:
{"plays": [{"play": {"name"}, "tasks": [{"task": {"name"}, "hosts": {host: result}}]}],
 "stats": {host: {...}}}. Values marked no_log were already masked by Ansible.
"""

from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: powerview_json
type: stdout
short_description: PowerView's JSON output of a playbook run
description: Prints the play, task and host results as one JSON document at the end.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "powerview_json"

    def __init__(self) -> None:
        super().__init__()
        self._plays: list[dict] = []

    def v2_playbook_on_play_start(self, play) -> None:
        self._plays.append({"play": {"name": play.get_name()}, "tasks": []})

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._plays[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    def _record(self, result, **status) -> None:
        outcome = dict(result._result)
        outcome.update(status)
        if self._plays and self._plays[-1]["tasks"]:
            self._plays[-1]["tasks"][-1]["hosts"][result._host.get_name()] = outcome

    def v2_runner_on_ok(self, result) -> None:
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result) -> None:
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result) -> None:
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = sorted(stats.processed.keys())
        summary = {host: stats.summarize(host) for host in hosts}
        self._display.display(json.dumps({"plays": self._plays, "stats": summary}, default=str))
