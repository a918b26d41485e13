"""Names and file contents shown as plain, visible text: on the terminal and in logs.

A client chooses its file names, labels and contents. Printed through Rich,
`[/x]` is markup (a crash, or another style) and `:smile:` an emoji; written to
a terminal, `\\x1b[2J` clears it and `\\r` overwrites a line. So every string
PowerView prints goes through `PlainConsole`, which turns markup and emoji
codes off and shows control characters as escapes (`\\x1b`), and log lines go
through `VisibleFormatter`, which does the same.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rich.console import Console
from rich.text import Text

from powerview.settings import mask_passwords_in

# C0 controls but tab and line feed, DEL, C1 controls, and the bidirectional
# overrides and isolates that reorder what a terminal shows.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character written out (`\\x1b`, `\\u202e`)."""
    return _INVISIBLE.sub(_escape, text)


class PlainConsole(Console):
    """A Console for text that may come from a client: no markup, no emoji, controls shown.

    Every str Rich prints, whether given to `print` or held in a Table cell, goes
    through `render_str`, so this one override covers both.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs.update(markup=False, emoji=False)
        return super().render_str(visible(text), **kwargs)


class VisibleFormatter(logging.Formatter):
    """Log records with control characters shown, so a name cannot forge or hide a line,
    and passwords inside URLs masked (`user:***@`), whoever logged them."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(mask_passwords_in(super().format(record)))
