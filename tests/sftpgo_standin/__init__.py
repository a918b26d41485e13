"""A stand-in for SFTPGo's REST API, for tests only (never shipped).

SFTPGo cannot be downloaded on the test machines. This package serves the part
of its REST API PowerView uses (token, users, event actions and rules) from
memory and checks every request and response against SFTPGo's own OpenAPI
description. See ``README.md``.
"""

from .server import SftpgoStandin
from .state import State
from .validation import SpecValidator, Violation, load_validator

__all__ = ["SftpgoStandin", "SpecValidator", "State", "Violation", "load_validator"]
