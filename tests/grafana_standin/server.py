"""A running stand-in: Werkzeug's server on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import secrets
import threading
from types import TracebackType
from typing import Any, Self

from grafana_client.api import GrafanaApi
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import Recorder, StandinApp
from .state import Role, State, User
from .validation import SpecGap, SpecValidator, Violation, load_validator


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: failures show up as violations, not as noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class GrafanaStandin:
    """A Grafana stand-in server with in-memory state, validated against the spec.

    Use as a context manager (or ``start()``/``stop()``). The server admin is
    ``admin_user`` with ``admin_password`` (random unless given), a member of
    org 1 ("Main Org.") with the Admin role, like a fresh Grafana.
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
        self._app = StandinApp(self.state, validator or load_validator(), self._recorder)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._serve, name=f"grafana-standin-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self) -> None:
        server = self._server
        if server is not None:
            # A short poll interval so that stop() returns quickly after each test.
            server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Grafana stand-in is not running")
        return int(self._server.port)

    @property
    def url(self) -> str:
        """Base URL, as Grafana clients expect it (the API lives under ``/api``)."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ findings
    @property
    def violations(self) -> list[Violation]:
        """Requests and responses that did not match the spec (should stay empty)."""
        return self._recorder.violations

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
