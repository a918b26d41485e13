"""The running Grafana stand-in (``tests/api_standin/server.py``) and its test helpers."""

from __future__ import annotations

import secrets
from typing import Any

from grafana_client.api import GrafanaApi

from tests.api_standin.server import StandinServer

from .app import Recorder, StandinApp
from .state import Role, State, User
from .validation import SpecGap, SpecValidator, load_validator


class GrafanaStandin(StandinServer):
    """A Grafana stand-in server with in-memory state, validated against the spec.

    Use as a context manager (or ``start()``/``stop()``). The server admin is
    ``admin_user`` with ``admin_password`` (random unless given), a member of
    org 1 ("Main Org.") with the Admin role, like a fresh Grafana. The base URL
    ``url`` is as Grafana clients expect it (the API lives under ``/api``).
    """

    def __init__(
        self,
        *,
        admin_user: str = "admin",
        admin_password: str | None = None,
        validator: SpecValidator | None = None,
    ) -> None:
        self.admin_user = admin_user
        self.admin_password = admin_password or secrets.token_urlsafe(18)
        self.state = State(self.admin_user, self.admin_password)
        self._recorder = Recorder()
        super().__init__(StandinApp(self.state, validator or load_validator(), self._recorder))

    # ------------------------------------------------------------ findings
    @property
    def spec_gaps(self) -> list[SpecGap]:
        """Responses that used a documented gap between Grafana and its spec."""
        return self._recorder.spec_gaps

    # ------------------------------------------------------------- helpers
    def client(
        self,
        org_id: int | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> GrafanaApi:
        """A ``grafana_client.GrafanaApi`` on this server.

        Basic auth as ``user`` (default: the server admin), or a bearer
        ``token``; ``org_id`` makes every call send ``X-Grafana-Org-Id``.
        """
        auth: Any = (
            token
            if token is not None
            else (
                user or self.admin_user,
                password if password is not None else self.admin_password,
            )
        )
        return GrafanaApi(
            auth=auth,
            host="127.0.0.1",
            port=self.port,
            protocol="http",
            organization_id=org_id,
            timeout=kwargs.pop("timeout", 10),
            **kwargs,
        )

    def create_service_account_token(
        self, org_id: int, role: Role | str = Role.VIEWER, name: str | None = None
    ) -> str:
        """A bearer token of a new service account with ``role`` in ``org_id``."""
        with self.state.lock:
            if org_id not in self.state.orgs:
                raise ValueError(f"no org {org_id}")
            return self.state.add_service_account_token(
                org_id, Role(role), name or f"sa{self.state.next_id('sa-name')}"
            )

    def revoke_token(self, token: str) -> None:
        with self.state.lock:
            self.state.tokens[token].revoked = True

    def add_user(
        self,
        login: str,
        password: str,
        *,
        org_id: int = 1,
        role: Role | str = Role.VIEWER,
        email: str = "",
    ) -> User:
        """Create a user directly (what ``POST /api/admin/users`` plus an org role does)."""
        with self.state.lock:
            return self.state.add_user(login, password, org_id=org_id, role=Role(role), email=email)
