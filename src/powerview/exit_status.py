"""The exit statuses of `powerview`, named in one place.

0 everything done, 1 some files rejected (their reasons are in the report),
2 usage, configuration or infrastructure error (nothing was lost: retry),
130 interrupted by Ctrl-C.
"""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    REJECTED = 1
    ERROR = 2
    INTERRUPTED = 130
