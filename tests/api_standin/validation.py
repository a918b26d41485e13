"""Check requests and responses against a vendor's OpenAPI description (openapi-core).

Loading and checking a spec takes a second or more, so each stand-in loads its
spec once per process (:func:`read_spec` in a cached ``load_validator``). A
spec's server URL is relative (``/api``, ``/api/v2``), which openapi-core
resolves against each request's host, so one validator serves any port.

Authentication is never judged here: each stand-in's auth layer answers its
vendor's 401/403 itself instead of a 400.
"""

from __future__ import annotations

import json
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
class SpecGap:
    """A documented mismatch between the real server and its spec that a response hit."""

    method: str
    path: str
    status: int
    reason: str


@dataclass(frozen=True)
class RequestCheck:
    unknown_operation: bool
    errors: tuple[str, ...]


@dataclass(frozen=True)
class ResponseCheck:
    errors: tuple[str, ...]
    gap: SpecGap | None = None


def describe_error(error: Exception) -> list[str]:
    """Readable lines for one openapi-core error, from the schema errors that caused it."""
    cause = error.__cause__
    schema_errors = getattr(cause, "schema_errors", None)
    if schema_errors:
        return [
            f"{type(cause).__name__}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: "
            f"{e.message}"
            for e in schema_errors
        ]
    return [f"{type(error).__name__}: {error}" + (f": {cause}" if cause else "")]


class OpenApiValidator:
    """Request and response checks against one loaded copy of a spec, without leniency.

    A stand-in with leniencies overrides :meth:`openapi_request` (what the
    validator sees of a request), :meth:`describe` or :meth:`check_response`.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        api = OpenAPI.from_dict(spec)  # validates the document itself (the slow part) once
        path: SchemaPath = api.spec
        self._params = V30RequestParametersValidator(path)
        self._body = V30RequestBodyValidator(path)
        self._response = V30ResponseValidator(path)

    def openapi_request(self, request: Request) -> WerkzeugOpenAPIRequest:
        return WerkzeugOpenAPIRequest(request)

    def describe(self, error: Exception) -> list[str]:
        return describe_error(error)

    def check_request(self, request: Request) -> RequestCheck:
        oas_request = self.openapi_request(request)
        errors: list[str] = []
        for validator in (self._params, self._body):
            for error in validator.iter_errors(oas_request):
                if isinstance(error, PathNotFound | OperationNotFound):
                    return RequestCheck(unknown_operation=True, errors=(str(error),))
                if isinstance(error, SecurityValidationError):
                    continue  # the stand-in's auth layer answers 401/403 like the vendor
                errors.extend(self.describe(error))
        return RequestCheck(unknown_operation=False, errors=tuple(errors))

    def check_response(self, request: Request, response: Response, spec_path: str) -> ResponseCheck:
        """Every mismatch of ``response`` (to the operation at ``spec_path``) is an error."""
        errors: list[str] = []
        for error in self._response.iter_errors(
            self.openapi_request(request), WerkzeugOpenAPIResponse(response)
        ):
            errors.extend(self.describe(error))
        return ResponseCheck(errors=tuple(errors))


def spec_file(env: str, default: Path) -> Path:
    """The spec named by the environment variable ``env``, else the vendored ``default``."""
    configured = os.environ.get(env)
    return Path(configured) if configured else default


def read_spec(env: str, default: Path, vendor: str) -> dict[str, Any]:
    """The parsed spec (JSON, or YAML by suffix); a clear error when the file is missing."""
    path = spec_file(env, default)
    if not path.is_file():
        raise FileNotFoundError(f"{vendor} OpenAPI spec not found: {path} (set {env})")
    text = path.read_text(encoding="utf-8")
    spec = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError(f"{vendor} OpenAPI spec {path} is not a mapping")
    return spec
