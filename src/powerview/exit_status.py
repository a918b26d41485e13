"""The exit statuses of `powerview`, named in one place, and the error → status map.

0 everything done, 1 some files rejected (their reasons are in the report; for
`verify`: some ingested files' points missing from InfluxDB, each one listed),
2 usage, configuration, infrastructure or unexpected error (one line on stderr;
nothing was lost: fix and retry), 130 interrupted (Ctrl-C, SIGINT).
`powerview health` keeps the monitoring-plugin statuses instead (health.Status:
0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN); an error that stops it is UNKNOWN.

"Files rejected" is only ever a command's own result: no exception maps to 1,
so a crash can never pass for bad input (httpie's `raw_main`, pip's
`UNKNOWN_ERROR`).
"""

from __future__ import annotations

import sqlite3
from enum import IntEnum

from powerview.exceptions import (
    ConfigError,
    InfluxRequestError,
    InfrastructureError,
    NameRuleError,
    PowerViewError,
)


class ExitStatus(IntEnum):
    OK = 0
    REJECTED = 1
    MISSING = 1  # `powerview verify`: the command's own finding, like REJECTED
    ERROR = 2
    INTERRUPTED = 130


# Most specific first: the first class an error is an instance of names its kind.
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (ConfigError, "configuration error"),
    (InfluxRequestError, "configuration error"),
    (NameRuleError, "usage error"),
    (InfrastructureError, "infrastructure error"),
    (PowerViewError, "error"),
    (sqlite3.Error, "queue database error"),
    (OSError, "file system error"),
)


def describe(exc: BaseException) -> str:
    """One line for an error that ended a command: its kind, then what happened.

    Multi-line messages (a server's log tail) are joined so monitoring that
    reads one line of stderr (SFTPGo's hook log, cron mail subjects) sees it all.
    """
    kind = next((label for cls, label in _KINDS if isinstance(exc, cls)), None)
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if kind is None:
        # Not an error PowerView expects: name the type, point at --traceback.
        kind = "unexpected error"
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        text += " (run again with --traceback for details)"
    return f"{kind}: {text or type(exc).__name__}"
