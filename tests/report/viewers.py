"""What a reader opens the report with: Debian's Chromium and poppler, for real.

Chromium runs headless, driven over the DevTools protocol (websocket-client).

The browser starts with a new profile folder, every background service off, and its
DevTools port chosen by itself (`--remote-debugging-port=0`, read back from the
profile's DevToolsActivePort file). Everything it says while a page loads (console
messages, exceptions, log entries, requests, dialogs) is kept as events to assert on.
No browser is downloaded: a machine without chromium or poppler-utils fails the test.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websocket
from PIL import Image

FLAGS = [
    "--headless",
    "--no-sandbox",  # root has no user namespace sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1280,1600",
]
START_TIMEOUT_S = 30
LOAD_TIMEOUT_S = 60


def poppler(tool: str, *args: str) -> str:
    """The text output of one of poppler's tools (pdfinfo, pdftotext, pdftoppm)."""
    if shutil.which(tool) is None:
        pytest.fail(f"no {tool}: the report tests need Debian's poppler-utils (make apt)",
                    pytrace=False)  # fmt: skip
    return subprocess.run([tool, *args], capture_output=True, text=True, check=True).stdout


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "no chromium: the report tests need Debian's chromium (make apt)", pytrace=False
        )
    return found


class Page:
    """One DevTools session on the browser's first tab."""

    def __init__(self, socket: websocket.WebSocket) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self.socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message["result"])
            self.events.append(message)

    def wait_for(self, event: str, timeout_s: float = LOAD_TIMEOUT_S) -> dict[str, Any]:
        """The first `event` seen; a dialog (a script's `alert`) is kept and dismissed,
        since it would hold the page's load until answered."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for message in self.events[seen:]:
                if message.get("method") == event:
                    return message
                if message.get("method") == "Page.javascriptDialogOpening":
                    self.send("Page.handleJavaScriptDialog", accept=True)
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {event} within {timeout_s} s")
            self.socket.settimeout(left)
            try:
                self.events.append(json.loads(self.socket.recv()))
            except websocket.WebSocketTimeoutException:
                raise AssertionError(f"no {event} within {timeout_s} s") from None

    def open(self, url: str) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def named(self, *methods: str) -> list[dict[str, Any]]:
        return [m for m in self.events if m.get("method") in methods]

    def full_screenshot(self) -> bytes:
        """The whole page, not only the window: PNG bytes, one CSS pixel per pixel."""
        width, height = self.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        return base64.b64decode(shot["data"])


@contextmanager
def chromium(profile: Path) -> Iterator[Page]:
    """A headless Chromium with a new profile in `profile`; stopped and reaped after."""
    log = (profile.parent / "chromium.log").open("wb")
    process = subprocess.Popen(
        [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        port = _devtools_port(profile, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        socket = websocket.create_connection(page_url, timeout=LOAD_TIMEOUT_S, suppress_origin=True)
        try:
            yield Page(socket)
        finally:
            socket.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    active = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (profile.parent / "chromium.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"chromium exited with {process.returncode}:\n{tail}")
        lines = active.read_text().splitlines() if active.exists() else []
        if lines and lines[0].isdigit():
            return int(lines[0])
        time.sleep(0.1)
    raise AssertionError(f"chromium wrote no DevToolsActivePort within {START_TIMEOUT_S} s")


def coloured_share(image: Image.Image) -> float:
    """The share of clearly coloured pixels: drawn data (blue, orange, green, red bars
    and lines) is, while axes, text, grid and paper are white, grey or black."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float((spread > 60).mean())
