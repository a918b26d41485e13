"""Pytest fixtures for the SFTPGo stand-in.

Registered for the whole suite in ``tests/conftest.py``:

* ``sftpgo_spec`` (session): the spec, loaded and checked once per process;
* ``sftpgo`` (function): a fresh, running :class:`SftpgoStandin`, stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api_standin.fixtures import loaded_spec

from .server import SftpgoStandin
from .validation import SpecValidator, load_validator


@pytest.fixture(scope="session")
def sftpgo_spec() -> SpecValidator:
    return loaded_spec(load_validator)


@pytest.fixture
def sftpgo(sftpgo_spec: SpecValidator) -> Iterator[SftpgoStandin]:
    """A running SFTPGo stand-in; assert ``sftpgo.violations == []`` in your test."""
    with SftpgoStandin(validator=sftpgo_spec) as server:
        yield server
