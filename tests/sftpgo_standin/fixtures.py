"""Pytest fixtures for the SFTPGo stand-in.

Registered for the whole suite in ``tests/conftest.py``:

* ``sftpgo_spec`` (session): the spec, loaded and checked once per process;
* ``sftpgo`` (function): a fresh, running :class:`SftpgoStandin`, stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import SftpgoStandin
from .validation import SpecValidator, load_validator


@pytest.fixture(scope="session")
def sftpgo_spec() -> SpecValidator:
    try:
        return load_validator()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def sftpgo(sftpgo_spec: SpecValidator) -> Iterator[SftpgoStandin]:
    """A running SFTPGo stand-in; assert ``sftpgo.violations == []`` in your test."""
    server = SftpgoStandin(validator=sftpgo_spec)
    server.start()
    try:
        yield server
    finally:
        server.stop()
