"""Grafana's error responses, raised by the route handlers as :class:`ApiError`."""

from __future__ import annotations

import zlib
from typing import Any

from tests.api_standin.errors import ApiError as StandinApiError


class ApiError(StandinApiError):
    """An HTTP error answer with Grafana's JSON body (always at least ``message``)."""

    def __init__(self, http_status: int, message: str, /, **extra: Any) -> None:
        super().__init__(http_status, {"message": message, **extra}, message)
        self.body: dict[str, Any]


def error(http_status: int, message: str, /, **extra: Any) -> ApiError:
    return ApiError(http_status, message, **extra)


def not_found(message: str, /, **extra: Any) -> ApiError:
    return ApiError(404, message, **extra)


def unauthorized(message: str = "Unauthorized", message_id: str | None = None) -> ApiError:
    """401 as Grafana's authn layer writes it (errutil errors carry an id and status)."""
    if message_id is None:
        return ApiError(401, message)
    return ApiError(401, message, messageId=message_id, statusCode=401, traceID="")


def access_denied(action: str) -> ApiError:
    """403 from Grafana's access-control middleware for a missing permission."""
    code = zlib.crc32(action.encode()) % 10**10
    return ApiError(
        403,
        f"You'll need additional permissions to perform this action. Permissions needed: {action}",
        accessErrorId=f"ACE{code:010d}",
        title="Access denied",
    )
