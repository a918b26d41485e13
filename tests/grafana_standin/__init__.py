"""A stand-in for Grafana's HTTP API, for tests only (never shipped).

Grafana cannot be installed on the test machines. This package serves its
HTTP API from memory, checks every request and response against Grafana's
OpenAPI description and reproduces the behaviour the project relies on
(as measured against real Grafana for this project). See ``README.md``.
"""

from .server import GrafanaStandin
from .state import Permission, Role, State
from .validation import SpecGap, SpecValidator, Violation, load_validator

__all__ = [
    "GrafanaStandin",
    "Permission",
    "Role",
    "SpecGap",
    "SpecValidator",
    "State",
    "Violation",
    "load_validator",
]
