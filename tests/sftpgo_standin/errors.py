"""SFTPGo's error answers: ``{"error": ..., "message": ...}`` (its ``ApiResponse``)."""

from __future__ import annotations

from http import HTTPStatus

from tests.api_standin.errors import ApiError as StandinApiError


class ApiError(StandinApiError):
    """An HTTP error answer as SFTPGo's ``sendAPIResponse`` writes it."""

    def __init__(self, status: int, error: str, message: str = "") -> None:
        super().__init__(
            status, {"error": error, "message": message or HTTPStatus(status).phrase}, error
        )
        self.body: dict[str, str]


def validation_error(detail: str) -> ApiError:
    """SFTPGo's ``ValidationError``: 400 with the reason."""
    return ApiError(400, f"Validation error: {detail}")


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} does not exist")


def conflict(what: str) -> ApiError:
    """A unique name already taken (SFTPGo's ``ErrDuplicatedKey``: 409)."""
    return ApiError(409, f"duplicated key not allowed: {what}")
