"""The WSGI application: SFTPGo's auth, routes and error bodies on the shared shape.

``tests/api_standin/app.py`` validates each request and response against the
spec and records violations; this module adds SFTPGo's part: every request is
recorded (``requests``), the caller is authenticated with
``Authorization: Bearer <JWT from /token>`` or ``X-SFTPGO-API-KEY`` (SFTPGo's
401 otherwise), the handler (``routes.py``) answers with its status and body or
raises SFTPGo's error, and the stand-in's own refusals carry SFTPGo's
``{"error": ..., "message": ...}`` body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.api_standin.app import Recorder as StandinRecorder
from tests.api_standin.app import SpecApp, json_response

from .errors import ApiError
from .routes import ROUTES, Call, Route
from .state import State
from .validation import SpecValidator

API_KEY_HEADER = "X-SFTPGO-API-KEY"


@dataclass
class Recorder(StandinRecorder):
    """What the tests inspect: spec violations and every request the server answered."""

    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path, JSON


def authenticate(state: State, request: Request) -> None:
    """A live JWT from /token or a known API key, else SFTPGo's 401."""
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        if key not in state.api_keys:
            raise ApiError(401, "the provided api key is not valid", "Unauthorized")
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expiry = state.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if expiry is None or expiry < time.time():
        raise ApiError(401, "no token found" if not header else "invalid token", "Unauthorized")


class StandinApp(SpecApp[State, Route]):
    """A WSGI callable serving SFTPGo's REST API from a :class:`State`, recording requests."""

    vendor = "SFTPGo"
    api_prefix = "/api/v2"
    routes = ROUTES

    def __init__(self, state: State, validator: SpecValidator, recorder: Recorder) -> None:
        super().__init__(state, validator, recorder)
        self.requests = recorder.requests

    def received(self, request: Request) -> None:
        self.requests.append((request.method, request.path, request.get_json(silent=True)))

    def dispatch(self, route: Route, request: Request, params: dict[str, str]) -> Response:
        if not route.public:
            authenticate(self.state, request)
        status, body = route.handler(Call(self.state, request, params))
        return json_response(status, body)

    def error_body(self, status: int, message: str) -> Any:
        return ApiError(status, message).body

    def unknown_operation_body(self) -> Any:
        return self.error_body(404, "not found")

    def invalid_request_body(self, message: str) -> Any:
        return self.error_body(400, message)
