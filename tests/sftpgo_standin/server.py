"""A running stand-in: Werkzeug's server on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import secrets
import threading
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import Recorder, StandinApp
from .state import State
from .validation import SpecValidator, Violation, load_validator


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: failures show up as violations, not as noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SftpgoStandin:
    """An SFTPGo REST API stand-in with in-memory state, validated against the spec.

    Use as a context manager (or ``start()``/``stop()``). The admin is
    ``admin_user`` with ``admin_password`` (random unless given); ``api_key`` is
    a valid ``X-SFTPGO-API-KEY`` of that admin.
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
        self._app = StandinApp(self.state, validator or load_validator(), self._recorder)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sftpgo-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

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

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the SFTPGo stand-in is not running")
        return int(self._server.port)

    @property
    def url(self) -> str:
        """Base URL, as SFTPGo's is configured (the REST API lives under ``/api/v2``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def violations(self) -> list[Violation]:
        """Requests and responses that did not match the spec (should stay empty)."""
        return self._recorder.violations

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
