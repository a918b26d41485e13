"""Check every request and response against Grafana's OpenAPI description.

The spec (``tests/specs/grafana-openapi3.json``, vendored) is loaded and checked once
per process (:func:`load_validator`, about 1.2 s); every stand-in server shares
the result. The spec's server URL is the relative ``/api``, which openapi-core
resolves against each request's host, so one instance serves any port.

Leniencies, and only these (Grafana's behaviour as measured for this project, see README.md):

1. ``null`` fields are dropped from request bodies before validating
   (Go's JSON decoding treats them as absent; clients send ``"parentUid": null``);
2. ``/api/health`` and ``/api/frontend/settings`` are not described: their
   requests and responses are not validated;
3. the 404s Grafana answers where the spec lists none (``UNDOCUMENTED_STATUSES``
   marked *grafana.md*); their bodies must still be Grafana error bodies;
4. ``X-Grafana-Org-Id`` is not described: openapi-core ignores undeclared
   headers, so nothing needs relaxing.

Authentication is not judged here: the spec's security (``basic`` or an
``api_key`` in ``Authorization``) is Grafana's own auth layer's business, so the
stand-in answers 401/403 itself exactly as Grafana does instead of a 400.

Spec gaps met beyond those leniencies are listed below with their source; a
response that hits one is recorded in ``spec_gaps`` instead of ``violations``
(the body still has to be a valid error body). Anything else that does not
match the spec is a violation.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_schema_validator import OAS30Validator
from werkzeug.wrappers import Request, Response

from tests.api_standin.validation import (
    OpenApiValidator,
    ResponseCheck,
    SpecGap,
    Violation,
    read_spec,
    spec_file,
)

__all__ = ["SpecGap", "SpecValidator", "Violation", "load_validator"]

SPEC_ENV = "POWERVIEW_GRAFANA_SPEC"
# Vendored under tests/specs/ (origin and licence in its README).
DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "specs" / "grafana-openapi3.json"

# Leniency 2: described nowhere in the spec.
UNDESCRIBED_PATHS = frozenset({"/api/health", "/api/frontend/settings"})

# (method, spec path, status) -> why Grafana answers it although the spec lists no such response.
UNDOCUMENTED_STATUSES: dict[tuple[str, str, int], str] = {
    ("GET", "/orgs/name/{org_name}", 404): "grafana.md leniency: unknown org name",
    ("GET", "/orgs/{org_id}", 404): "grafana.md leniency (lookups): unknown org id",
    ("GET", "/datasources/name/{name}", 404): "grafana.md leniency: unknown datasource name",
    # Required by grafana.md section 2 (pkg/services/team/teamapi/team_members.go).
    ("POST", "/teams/{team_id}/members", 400): "spec gap: user is already in the team",
    # Required by grafana.md section 2 (pkg/api/apierrors/folder.go, ErrFolderVersionMismatch).
    ("PUT", "/folders/{folder_uid}", 412): "spec gap: stale folder version",
    # pkg/api/folder_permission.go validatePermissionsUpdate (user and team, or role with either).
    ("POST", "/folders/{folder_uid}/permissions", 400): "spec gap: invalid permission item",
    # pkg/api/org_users.go addOrgUserHelper.
    ("POST", "/orgs/{org_id}/users", 400): "spec gap: invalid role",
    ("POST", "/orgs/{org_id}/users", 404): "spec gap: unknown login or email",
    ("POST", "/orgs/{org_id}/users", 409): "spec gap: user already in the org",
    ("POST", "/org/users", 400): "spec gap: invalid role",
    ("POST", "/org/users", 404): "spec gap: unknown login or email",
    ("POST", "/org/users", 409): "spec gap: user already in the org",
    # pkg/api/datasources.go: update of a missing datasource, stale version, name taken.
    ("PUT", "/datasources/uid/{uid}", 404): "spec gap: unknown datasource",
    ("PUT", "/datasources/uid/{uid}", 409): "spec gap: stale version or name taken",
    ("PUT", "/datasources/{id}", 404): "spec gap: unknown datasource",
    ("PUT", "/datasources/{id}", 409): "spec gap: stale version or name taken",
    # pkg/api/ds_query.go handleQueryMetricsError: datasource not in the caller's org.
    ("POST", "/ds/query", 404): "spec gap: datasource not found in the caller's org",
    # The spec types these ids as strings; Grafana parses them and answers 400 "... is invalid".
    ("PUT", "/datasources/{id}", 400): "spec gap: id is not a number",
    ("DELETE", "/datasources/{id}", 400): "spec gap: id is not a number",
    **{
        (method, path, 400): "spec gap: teamId is not a number"
        for method, path in (
            ("GET", "/teams/{team_id}"),
            ("PUT", "/teams/{team_id}"),
            ("DELETE", "/teams/{team_id}"),
            ("GET", "/teams/{team_id}/members"),
            ("DELETE", "/teams/{team_id}/members/{user_id}"),
        )
    },
}

# (method, spec path, status) -> schema error paths tolerated in a 2xx body.
# Grafana returns the dashboard JSON as saved, where panels and links are arrays;
# the spec's legacy Dashboard schema types both as objects.
TOLERATED_SCHEMA_ERRORS: dict[tuple[str, str, int], frozenset[tuple[str, ...]]] = {
    ("GET", "/dashboards/uid/{uid}", 200): frozenset(
        {("dashboard", "panels"), ("dashboard", "links")}
    ),
}


def drop_nulls(value: Any) -> Any:
    """Leniency 1: remove ``null`` members from objects, recursively."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


class _LenientRequest(WerkzeugOpenAPIRequest):
    """The Werkzeug request as openapi-core sees it, with the body after leniency 1."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        raw = request.get_data(as_text=False)
        self._body = raw
        if raw and (request.mimetype or "").endswith("json"):
            # Broken JSON is left as is: the validator reports it.
            with contextlib.suppress(ValueError):
                self._body = json.dumps(drop_nulls(json.loads(raw))).encode()

    @property
    def body(self) -> bytes | None:
        return self._body


def _describe(error: Exception) -> list[str]:
    """Readable lines for one openapi-core error."""
    details = getattr(error, "details", None)
    if isinstance(details, dict) and details.get("schema_errors"):
        prefix = str(details.get("error_type", type(error).__name__))
        return [
            f"{prefix}: {'/'.join(map(str, e['path'])) or '(root)'}: {e['message']}"
            for e in details["schema_errors"]
        ]
    return [str(error) or type(error).__name__]


def _schema_error_paths(error: Exception) -> list[tuple[str, ...]]:
    cause = error.__cause__
    schema_errors: Iterable[Any] = getattr(cause, "schema_errors", None) or ()
    return [tuple(str(p) for p in getattr(e, "absolute_path", ())) for e in schema_errors]


class SpecValidator(OpenApiValidator):
    """Request and response checks against the loaded spec, with Grafana's leniencies."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self._error_body = OAS30Validator(spec["components"]["schemas"]["ErrorResponseBody"])

    def openapi_request(self, request: Request) -> WerkzeugOpenAPIRequest:
        return _LenientRequest(request)

    def describe(self, error: Exception) -> list[str]:
        return _describe(error)

    def check_response(self, request: Request, response: Response, spec_path: str) -> ResponseCheck:
        key = (request.method, spec_path, response.status_code)
        errors: list[str] = []
        gap: SpecGap | None = None
        tolerated = TOLERATED_SCHEMA_ERRORS.get(key, frozenset())
        for error in self._response.iter_errors(
            self.openapi_request(request), WerkzeugOpenAPIResponse(response)
        ):
            if isinstance(error, ResponseNotFound) and key in UNDOCUMENTED_STATUSES:
                return self._check_undocumented(response, key)
            paths = _schema_error_paths(error)
            if paths and all(p in tolerated for p in paths):
                reason = "spec gap: Dashboard.panels/links are arrays in real dashboards"
                gap = SpecGap(request.method, spec_path, response.status_code, reason)
                continue
            errors.extend(self.describe(error))
        return ResponseCheck(errors=tuple(errors), gap=gap)

    def _check_undocumented(self, response: Response, key: tuple[str, str, int]) -> ResponseCheck:
        method, spec_path, status = key
        gap = SpecGap(method, spec_path, status, UNDOCUMENTED_STATUSES[key])
        try:
            body = json.loads(response.get_data())
        except ValueError:
            return ResponseCheck(errors=("undocumented status without a JSON body",), gap=gap)
        errors = [
            f"error body: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in self._error_body.iter_errors(body)
        ]
        return ResponseCheck(errors=tuple(errors), gap=gap)


def spec_path() -> Path:
    return spec_file(SPEC_ENV, DEFAULT_SPEC)


@functools.cache
def load_validator() -> SpecValidator:
    """The process-wide validator (loading and checking the spec takes about 1.2 s)."""
    return SpecValidator(read_spec(SPEC_ENV, DEFAULT_SPEC, "Grafana"))
