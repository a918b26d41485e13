"""Helpers for the stand-ins' pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

V = TypeVar("V")


def loaded_spec(load_validator: Callable[[], V]) -> V:
    """The stand-in's validator; a missing spec fails the test with the reason, no traceback."""
    try:
        return load_validator()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
