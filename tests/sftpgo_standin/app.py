"""The WSGI application: validate, authenticate, route, validate the answer.

For every call:

1. the request is checked against the spec (``validation.py``); a mismatch is
   recorded in ``violations`` and answered 400 (404 for an operation the spec
   does not describe), as SFTPGo's own decoding and validation would refuse it;
2. the caller is authenticated: ``Authorization: Bearer <JWT from /token>`` or
   ``X-SFTPGO-API-KEY``; SFTPGo's 401 otherwise;
3. the handler (``routes.py``) answers under the state lock; an operation the
   spec describes but the stand-in does not implement is a 501 recorded as
   ``unimplemented``; a handler crash is a 500 recorded as ``crash``;
4. the response is checked against the spec; a mismatch is recorded (the answer
   still goes out, so the test sees what the stand-in did).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .errors import ApiError
from .routes import ROUTES, Call, Route
from .state import State
from .validation import SpecValidator, Violation, ViolationKind

API_PREFIX = "/api/v2"
API_KEY_HEADER = "X-SFTPGO-API-KEY"
log = logging.getLogger(__name__)


def json_response(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _rule(route: Route, index: int) -> Rule:
    path = API_PREFIX + route.path.replace("{", "<").replace("}", ">")
    return Rule(path, methods=[route.method], endpoint=index)


@dataclass
class Recorder:
    """What the tests inspect: spec violations and every request the server answered."""

    violations: list[Violation] = field(default_factory=list)
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


class StandinApp:
    """A WSGI callable serving SFTPGo's REST API from a :class:`State`."""

    def __init__(self, state: State, validator: SpecValidator, recorder: Recorder) -> None:
        self.state = state
        self.validator = validator
        self.recorder = recorder
        self.url_map = Map(
            [_rule(route, i) for i, route in enumerate(ROUTES)],
            strict_slashes=False,
            merge_slashes=False,
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self.state.lock:
            response = self.handle(request)
        return response(environ, start_response)

    def _violation(
        self, kind: ViolationKind, request: Request, status: int | None, message: str
    ) -> None:
        log.warning("SFTPGo stand-in %s violation: %s %s: %s", kind, request.method,
                    request.path, message)  # fmt: skip
        self.recorder.violations.append(
            Violation(kind, request.method, request.full_path.rstrip("?"), status, message)
        )

    def handle(self, request: Request) -> Response:
        self.recorder.requests.append((request.method, request.path, request.get_json(silent=True)))
        check = self.validator.check_request(request)
        if check.unknown_operation:
            self._violation("request", request, 404, "; ".join(check.errors))
            return json_response(404, {"error": "not found", "message": "Not Found"})
        if check.errors:
            message = "; ".join(check.errors)
            self._violation("request", request, 400, message)
            return json_response(400, {"error": message, "message": "Bad Request"})

        try:
            endpoint, params = self.url_map.bind_to_environ(request.environ).match()
        except HTTPException:
            message = "described by the spec but not implemented by the stand-in"
            self._violation("unimplemented", request, 501, message)
            return json_response(501, {"error": message, "message": "Not Implemented"})

        route = ROUTES[endpoint]
        try:
            if not route.public:
                authenticate(self.state, request)
            path_params = {name: str(value) for name, value in params.items()}
            status, body = route.handler(Call(self.state, request, path_params))
            response = json_response(status, body)
        except ApiError as exc:
            response = json_response(exc.status, exc.body)
        except Exception as exc:  # a stand-in bug: make it loud
            log.exception("SFTPGo stand-in handler crashed")
            message = f"stand-in handler crashed: {type(exc).__name__}: {exc}"
            self._violation("crash", request, 500, message)
            return json_response(500, {"error": message, "message": "Internal Server Error"})

        errors = self.validator.check_response(request, response)
        if errors:
            self._violation("response", request, response.status_code, "; ".join(errors))
        return response
