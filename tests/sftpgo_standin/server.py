"""The running SFTPGo stand-in (``tests/api_standin/server.py``) and its test helpers."""

from __future__ import annotations

import secrets
from typing import Any

from tests.api_standin.server import StandinServer

from .app import Recorder, StandinApp
from .state import State
from .validation import SpecValidator, load_validator


class SftpgoStandin(StandinServer):
    """An SFTPGo REST API stand-in with in-memory state, validated against the spec.

    Use as a context manager (or ``start()``/``stop()``). The admin is
    ``admin_user`` with ``admin_password`` (random unless given); ``api_key`` is
    a valid ``X-SFTPGO-API-KEY`` of that admin. The base URL ``url`` is as
    SFTPGo's is configured (the REST API lives under ``/api/v2``).
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
        self.api_key = f"{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(24)}"
        self.state = State(self.admin_user, self.admin_password, api_keys={self.api_key})
        self._recorder = Recorder()
        super().__init__(StandinApp(self.state, validator or load_validator(), self._recorder))

    @property
    def requests(self) -> list[tuple[str, str, Any]]:
        """Every request answered: (method, path, JSON body or None)."""
        return self._recorder.requests

    def writes(self) -> list[tuple[str, str, Any]]:
        """The requests that could change something (not GET)."""
        return [r for r in self.requests if r[0] != "GET"]

    def revoke_tokens(self) -> None:
        """Expire every JWT handed out (what a restart or the 20 minutes do)."""
        with self.state.lock:
            self.state.tokens.clear()
