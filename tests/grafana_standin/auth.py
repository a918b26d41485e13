"""Who is calling and in which organization, the way Grafana's authn layer decides it.

* ``Authorization: Basic`` with a user's login (or email) and password; the
  user ``api_key`` with a token as password counts as a token;
* ``Authorization: Bearer <service-account token>``;
* the org is ``X-Grafana-Org-Id`` when set, else the user's current org (a token
  is bound to its own org: another org in the header is a 401);
* a user who is not a member of the requested org stays signed in but with no
  role there (Grafana's ``OrgID -1``): every org-scoped permission check fails.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from werkzeug.wrappers import Request

from .errors import ApiError, access_denied, unauthorized
from .state import Role, State, Token, User

ORG_HEADER = "X-Grafana-Org-Id"
NO_ORG = -1


@dataclass(frozen=True)
class Principal:
    user: User
    org_id: int  # NO_ORG when the user is not a member of the requested org
    role: Role | None
    token: Token | None = None

    @property
    def is_grafana_admin(self) -> bool:
        return self.user.is_grafana_admin and self.token is None

    @property
    def login(self) -> str:
        return self.user.login

    def has_role(self, minimum: Role) -> bool:
        return self.role is not None and self.role.at_least(minimum)

    def require_role(self, minimum: Role, action: str) -> None:
        if not self.has_role(minimum):
            raise access_denied(action)

    def require_grafana_admin(self, action: str) -> None:
        if not self.is_grafana_admin:
            raise access_denied(action)

    def require_member(self, action: str) -> None:
        """Any role in the org, ``None`` included (permissions may come from teams/users)."""
        if self.role is None:
            raise access_denied(action)


def _requested_org(request: Request) -> int:
    raw = request.headers.get(ORG_HEADER, "")
    try:
        return int(raw)
    except ValueError:
        return 0  # Grafana ignores an unparsable header


def _basic_credentials(header: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1], validate=True).decode()
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise unauthorized("Invalid Basic Auth Header", "basic-auth.invalid-header") from exc
    login, sep, password = decoded.partition(":")
    if not sep:
        raise unauthorized("Invalid Basic Auth Header", "basic-auth.invalid-header")
    return login, password


def _token_principal(state: State, key: str, org_id: int) -> Principal:
    token = state.tokens.get(key)
    account = state.users.get(token.service_account_id) if token else None
    if token is None or token.revoked or account is None:
        raise unauthorized("Invalid API key", "api-key.invalid")
    if org_id and org_id != token.org_id:
        raise unauthorized(
            "API key does not belong to the requested organization",
            "api-key.organization-mismatch",
        )
    return Principal(account, token.org_id, state.role_of(account.id, token.org_id), token)


def authenticate(state: State, request: Request) -> Principal:
    """Resolve the caller or raise Grafana's 401."""
    header = request.headers.get("Authorization", "")
    org_id = _requested_org(request)
    scheme = header.split(" ", 1)[0].lower()
    if scheme == "bearer":
        return _token_principal(state, header.split(" ", 1)[1].strip(), org_id)
    if scheme != "basic":
        raise unauthorized()
    login, password = _basic_credentials(header)
    if login == "api_key":
        return _token_principal(state, password, org_id)
    user = state.user_by_login(login)
    if user is None or user.password != password:
        raise unauthorized("Invalid username or password", "password-auth.failed")
    org_id = org_id or user.current_org_id
    role = state.role_of(user.id, org_id)
    return Principal(user, org_id if role is not None else NO_ORG, role)


__all__ = ["ORG_HEADER", "ApiError", "Principal", "authenticate"]
