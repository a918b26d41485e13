"""Pytest fixtures for the Grafana stand-in.

Register them for the whole suite with one line in ``tests/conftest.py``::

    pytest_plugins = ["tests.grafana_standin.fixtures"]

* ``grafana_spec`` (session): the spec, loaded and checked once per process;
* ``grafana`` (function): a fresh, running :class:`GrafanaStandin` with a
  random admin password, stopped afterwards even when the test fails.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.api_standin.fixtures import loaded_spec

from .server import GrafanaStandin
from .validation import SpecValidator, load_validator


@pytest.fixture(scope="session")
def grafana_spec() -> SpecValidator:
    return loaded_spec(load_validator)


@pytest.fixture
def grafana(grafana_spec: SpecValidator) -> Iterator[GrafanaStandin]:
    """A running Grafana stand-in; assert ``grafana.violations == []`` in your test."""
    with GrafanaStandin(admin_password=secrets.token_urlsafe(18), validator=grafana_spec) as server:
        yield server
