"""A stand-in's WSGI app served by Werkzeug on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import threading
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import SpecApp
from .validation import Violation


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: failures show up as violations, not as noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class StandinServer:
    """Runs ``app`` on loopback; use as a context manager (or ``start()``/``stop()``)."""

    def __init__(self, app: SpecApp[Any, Any]) -> None:
        self._app = app
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
            target=self._server.serve_forever,
            # A short poll interval so that stop() returns quickly after each test.
            kwargs={"poll_interval": 0.05},
            name=f"{self._app.vendor.lower()}-standin-{self.port}",
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

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self._app.vendor} stand-in is not running")
        return int(self._server.port)

    @property
    def url(self) -> str:
        """Base URL, as the vendor's clients are configured (the API lives under a prefix)."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ findings
    @property
    def violations(self) -> list[Violation]:
        """Requests and responses that did not match the spec (should stay empty)."""
        return self._app.recorder.violations
