"""The WSGI application shape of a stand-in: validate, route, answer, validate the answer.

For every call:

1. the request is checked against the spec (unless the stand-in says the path
   is not described); a mismatch is recorded in ``violations`` and answered 400
   (404 for an operation the spec does not describe), as a strict server would;
2. the stand-in's :meth:`SpecApp.dispatch` authenticates the caller and runs the
   route's handler under the state lock; an operation the spec describes but the
   stand-in does not implement is a 501 recorded as ``unimplemented``; a handler
   crash is a 500 recorded as ``crash``; an :class:`ApiError` is the vendor's answer;
3. the response is checked against the spec; a mismatch is recorded (the answer
   still goes out, so the test sees what the stand-in did).

The vendor's error bodies and its auth come from the subclass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from .errors import ApiError
from .validation import OpenApiValidator, SpecGap, Violation, ViolationKind

log = logging.getLogger(__name__)


class Locked(Protocol):
    """A stand-in's state: handlers run while its lock is held."""

    @property
    def lock(self) -> AbstractContextManager[Any]: ...


class Route(Protocol):
    """What the app needs of a stand-in's route: the method and the spec's path template."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...


S = TypeVar("S", bound=Locked)
R = TypeVar("R", bound=Route)


def json_response(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


@dataclass
class Recorder:
    """What the tests inspect: spec violations and documented spec gaps hit."""

    violations: list[Violation] = field(default_factory=list)
    spec_gaps: list[SpecGap] = field(default_factory=list)


class SpecApp(Generic[S, R]):
    """A WSGI callable serving a vendor's API from a state ``S``, every call checked."""

    vendor: ClassVar[str]  # for log lines: "Grafana", "SFTPGo"
    api_prefix: ClassVar[str]  # where the spec's paths live: "/api", "/api/v2"
    routes: Sequence[R]  # the implemented operations, set by the subclass

    def __init__(self, state: S, validator: OpenApiValidator, recorder: Recorder) -> None:
        self.state = state
        self.validator = validator
        self.recorder = recorder
        self.url_map = Map(
            [self._rule(route, i) for i, route in enumerate(self.routes)],
            strict_slashes=False,
            merge_slashes=False,
        )

    def _rule(self, route: R, index: int) -> Rule:
        path = self.api_prefix + route.path.replace("{", "<").replace("}", ">")
        return Rule(path, methods=[route.method], endpoint=index)

    # ------------------------------------------------------ vendor-specific
    def dispatch(self, route: R, request: Request, params: dict[str, str]) -> Response:
        """Authenticate unless the route is public, run its handler, answer."""
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        """The vendor's body for the stand-in's own 501 and 500 answers."""
        raise NotImplementedError

    def unknown_operation_body(self) -> Any:
        """The vendor's body for a 404 on an operation its spec does not describe."""
        raise NotImplementedError

    def invalid_request_body(self, message: str) -> Any:
        """The vendor's body for a 400 on a request that does not match the spec."""
        raise NotImplementedError

    def described(self, request: Request) -> bool:
        """Whether the spec describes this path, so that request and response are checked."""
        return True

    def received(self, request: Request) -> None:
        """Called first for every request (a stand-in may record it)."""

    # ------------------------------------------------------------- shared
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self.state.lock:
            response = self.handle(request)
        return response(environ, start_response)

    def _violation(
        self, kind: ViolationKind, request: Request, status: int | None, message: str
    ) -> None:
        log.warning("%s stand-in %s violation: %s %s: %s", self.vendor, kind, request.method,
                    request.path, message)  # fmt: skip
        self.recorder.violations.append(
            Violation(kind, request.method, request.full_path.rstrip("?"), status, message)
        )

    def handle(self, request: Request) -> Response:
        self.received(request)
        described = self.described(request)
        if described:
            check = self.validator.check_request(request)
            if check.unknown_operation:
                self._violation("request", request, 404, "; ".join(check.errors))
                return json_response(404, self.unknown_operation_body())
            if check.errors:
                message = "; ".join(check.errors)
                self._violation("request", request, 400, message)
                return json_response(400, self.invalid_request_body(message))

        try:
            endpoint, params = self.url_map.bind_to_environ(request.environ).match()
        except HTTPException:
            message = "described by the spec but not implemented by the stand-in"
            self._violation("unimplemented", request, 501, message)
            return json_response(501, self.error_body(501, message))

        route = self.routes[endpoint]
        try:
            path_params = {name: str(value) for name, value in params.items()}
            response = self.dispatch(route, request, path_params)
        except ApiError as exc:
            response = json_response(exc.status, exc.body)
        except Exception as exc:  # a stand-in bug: make it loud, not an HTML page
            log.exception("%s stand-in handler crashed", self.vendor)
            message = f"stand-in handler crashed: {type(exc).__name__}: {exc}"
            self._violation("crash", request, 500, message)
            return json_response(500, self.error_body(500, message))

        if described:
            result = self.validator.check_response(request, response, route.path)
            if result.gap is not None:
                self.recorder.spec_gaps.append(result.gap)
            if result.errors:
                self._violation("response", request, response.status_code, "; ".join(result.errors))
        return response
