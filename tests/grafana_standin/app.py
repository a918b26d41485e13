"""The WSGI application: Grafana's auth, routes and error bodies on the shared shape.

``tests/api_standin/app.py`` validates each request and response against the
spec and records violations; this module adds Grafana's part: the
caller is authenticated (``auth.py``, Grafana's 401 otherwise), the handler
(``routes.py``) answers 200 with its body or raises Grafana's error, the paths
the spec does not describe (leniency 2) are not validated, and the stand-in's
own refusals carry Grafana's ``{"message": ...}`` body.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from tests.api_standin.app import Recorder, SpecApp, json_response

from .auth import authenticate
from .routes import ROUTES, Call, Route
from .state import State
from .validation import UNDESCRIBED_PATHS

__all__ = ["Recorder", "StandinApp"]


class StandinApp(SpecApp[State, Route]):
    """A WSGI callable serving Grafana's HTTP API from a :class:`State`."""

    vendor = "Grafana"
    api_prefix = "/api"
    routes = ROUTES

    def dispatch(self, route: Route, request: Request, params: dict[str, str]) -> Response:
        principal = None if route.public else authenticate(self.state, request)
        return json_response(200, route.handler(Call(self.state, request, params, principal)))

    def described(self, request: Request) -> bool:
        return request.path not in UNDESCRIBED_PATHS

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def unknown_operation_body(self) -> Any:
        return {"message": "Not found"}

    def invalid_request_body(self, message: str) -> Any:
        return {"message": f"request does not match the spec: {message}"}
