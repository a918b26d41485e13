"""The block layout: a JSON header between markers, then the rows, then END_DATA.

    START_HEADER
    {"DataTimeSettings": "UTC", ...}      one JSON object, on one line or several
    END_HEADER
    START_DATA
    <the family's own header lines and rows>
    END_DATA

The layout says nothing about the device family: the model tag inside the
data part does (formats/head.py). Both the sniffer and a format reading its
header walk the markers here, so a broken block gets the same error from both.
"""

from __future__ import annotations

from collections.abc import Callable

from powerview.exceptions import FormatError, IncompleteFileError

START_HEADER = "START_HEADER"
END_HEADER = "END_HEADER"
START_DATA = "START_DATA"
END_DATA = "END_DATA"
MAX_HEADER_LINES = 100  # the devices write one JSON line; a bound, not a format rule


def is_block_start(line: str) -> bool:
    """True for the first line of a block file (line end and BOM already stripped)."""
    return line.strip() == START_HEADER


def read_header_lines(next_line: Callable[[], str | None]) -> list[str]:
    """The JSON lines after START_HEADER, reading up to and including START_DATA.

    `next_line` returns the next line without its line end, None at the end.
    A file ending before END_HEADER is an upload still running or cut short.
    """
    parts: list[str] = []
    while (line := next_line()) is not None and line.strip() != END_HEADER:
        parts.append(line)
        if len(parts) > MAX_HEADER_LINES:
            raise FormatError(
                f"{START_HEADER} without {END_HEADER} in the first {MAX_HEADER_LINES} lines"
            )
    if line is None:
        raise IncompleteFileError(f"incomplete file: {START_HEADER} without {END_HEADER}")
    start = next_line()
    if start is None or start.strip() != START_DATA:
        raise FormatError(f"{END_HEADER} not followed by {START_DATA}")
    return parts


def ends_block(tail: str) -> bool:
    """True when the file's last bytes hold END_DATA.

    Not only the last line: lines after END_DATA are counted and ignored, not a cut file.
    """
    return any(line.strip() == END_DATA for line in tail.splitlines())
