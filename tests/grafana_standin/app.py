"""The WSGI application: validate, authenticate, route, validate the answer.

For every call:

1. the request is checked against the spec (``validation.py``); a mismatch
   is recorded in ``violations`` and answered 400 (404 for an operation the
   spec does not describe), as a strict server would;
2. the caller is authenticated (``auth.py``), Grafana's 401 otherwise;
3. the handler (``routes.py``) answers with Grafana's behaviour, under the
   state lock; an operation the spec describes but the stand-in does not
   implement is a 501 recorded as ``unimplemented``; a handler crash is a 500
   recorded as ``crash``;
4. the response is checked against the spec; a mismatch is recorded (the
   answer still goes out, so the test sees what the stand-in did).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .auth import authenticate
from .errors import ApiError
from .routes import ROUTES, Call, Route
from .state import State
from .validation import UNDESCRIBED_PATHS, SpecGap, SpecValidator, Violation, ViolationKind

API_PREFIX = "/api"
log = logging.getLogger(__name__)


def json_response(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _rule(route: Route, index: int) -> Rule:
    path = API_PREFIX + route.path.replace("{", "<").replace("}", ">")
    return Rule(path, methods=[route.method], endpoint=index)


@dataclass
class Recorder:
    """What the tests inspect: spec violations and documented spec gaps hit."""

    violations: list[Violation] = field(default_factory=list)
    spec_gaps: list[SpecGap] = field(default_factory=list)


class StandinApp:
    """A WSGI callable serving Grafana's HTTP API from a :class:`State`."""

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
        log.warning(
            "Grafana stand-in %s violation: %s %s: %s", kind, request.method, request.path, message
        )
        self.recorder.violations.append(
            Violation(kind, request.method, request.full_path.rstrip("?"), status, message)
        )

    def handle(self, request: Request) -> Response:
        described = request.path not in UNDESCRIBED_PATHS
        if described:
            check = self.validator.check_request(request)
            if check.unknown_operation:
                self._violation("request", request, 404, "; ".join(check.errors))
                return json_response(404, {"message": "Not found"})
            if check.errors:
                message = "; ".join(check.errors)
                self._violation("request", request, 400, message)
                return json_response(
                    400, {"message": f"request does not match the spec: {message}"}
                )

        try:
            endpoint, params = self.url_map.bind_to_environ(request.environ).match()
        except HTTPException:
            message = "described by the spec but not implemented by the stand-in"
            self._violation("unimplemented", request, 501, message)
            return json_response(501, {"message": message})

        route = ROUTES[endpoint]
        try:
            principal = None if route.public else authenticate(self.state, request)
            path_params = {name: str(value) for name, value in params.items()}
            body = route.handler(Call(self.state, request, path_params, principal))
            response = json_response(200, body)
        except ApiError as exc:
            response = json_response(exc.status, exc.body)
        except Exception as exc:  # a stand-in bug: make it loud, not an HTML page
            log.exception("Grafana stand-in handler crashed")
            message = f"stand-in handler crashed: {type(exc).__name__}: {exc}"
            self._violation("crash", request, 500, message)
            return json_response(500, {"message": message})

        if described:
            result = self.validator.check_response(request, response, route.path)
            if result.gap is not None:
                self.recorder.spec_gaps.append(result.gap)
            if result.errors:
                self._violation("response", request, response.status_code, "; ".join(result.errors))
        return response
