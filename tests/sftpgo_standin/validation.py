"""Check every request and response against SFTPGo's OpenAPI description.

The spec (``tests/specs/sftpgo-openapi-2.7.0.yaml``, vendored unmodified) is
loaded and checked once per process (:func:`load_validator`, about 1.5 s). Its
server URL is the relative ``/api/v2``, which openapi-core resolves against each
request's host, so one instance serves any port.

No leniency: what does not match the spec is a violation. Authentication is not
judged here (the spec's ``BearerAuth``/``APIKeyAuth``/``BasicAuth``): the
stand-in's auth layer answers SFTPGo's 401 itself instead of a 400.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema_path import SchemaPath
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.request.exceptions import SecurityValidationError
from openapi_core.validation.request.validators import (
    V30RequestBodyValidator,
    V30RequestParametersValidator,
)
from openapi_core.validation.response.validators import V30ResponseValidator
from werkzeug.wrappers import Request, Response

SPEC_ENV = "POWERVIEW_SFTPGO_SPEC"
# Vendored under tests/specs/ (origin and licence in its README).
DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "specs" / "sftpgo-openapi-2.7.0.yaml"

ViolationKind = Literal["request", "response", "unimplemented", "crash"]


@dataclass(frozen=True)
class Violation:
    """A request or response that does not match the spec, an unimplemented call or a crash."""

    kind: ViolationKind
    method: str
    path: str
    status: int | None
    message: str


@dataclass(frozen=True)
class RequestCheck:
    unknown_operation: bool
    errors: tuple[str, ...]


def _describe(error: Exception) -> list[str]:
    """Readable lines for one openapi-core error."""
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        return [
            f"{type(cause).__name__}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: "
            f"{e.message}"
            for e in schema_errors
        ]
    return [f"{type(error).__name__}: {error}" + (f": {cause}" if cause else "")]


class SpecValidator:
    """Request and response checks against one loaded copy of the spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        api = OpenAPI.from_dict(spec)  # validates the document itself (the slow part) once
        path: SchemaPath = api.spec
        self._params = V30RequestParametersValidator(path)
        self._body = V30RequestBodyValidator(path)
        self._response = V30ResponseValidator(path)

    def check_request(self, request: Request) -> RequestCheck:
        oas_request = WerkzeugOpenAPIRequest(request)
        errors: list[str] = []
        for validator in (self._params, self._body):
            for error in validator.iter_errors(oas_request):
                if isinstance(error, PathNotFound | OperationNotFound):
                    return RequestCheck(unknown_operation=True, errors=(str(error),))
                if isinstance(error, SecurityValidationError):
                    continue  # the stand-in's auth layer answers 401 like SFTPGo
                errors.extend(_describe(error))
        return RequestCheck(unknown_operation=False, errors=tuple(errors))

    def check_response(self, request: Request, response: Response) -> tuple[str, ...]:
        errors: list[str] = []
        for error in self._response.iter_errors(
            WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
        ):
            errors.extend(_describe(error))
        return tuple(errors)


def spec_path() -> Path:
    configured = os.environ.get(SPEC_ENV)
    return Path(configured) if configured else DEFAULT_SPEC


@functools.cache
def load_validator() -> SpecValidator:
    """The process-wide validator (loading and checking the spec takes about 1.5 s)."""
    path = spec_path()
    if not path.is_file():
        raise FileNotFoundError(f"SFTPGo OpenAPI spec not found: {path} (set {SPEC_ENV})")
    return SpecValidator(yaml.safe_load(path.read_text(encoding="utf-8")))
