"""The error a route handler raises to answer with a vendor's error status and body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answer; each stand-in subclasses it to build its vendor's body."""

    def __init__(self, status: int, body: Any, summary: str) -> None:
        super().__init__(f"{status} {summary}")
        self.status = status
        self.body = body
