"""Device file formats: one module per family, registered in `FORMATS`.

A format module has a `name`, a `sniff(first_lines)` that recognises its files
and an `open(stream, options, tail)` that reads the header and returns a
`DeviceFile` whose `batches()` streams the rows. Adding a family is one module
plus one line below, plus its tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from powerview.exceptions import FormatError
from powerview.formats import mv
from powerview.formats.base import (
    Column,
    DeviceFile,
    DeviceFormat,
    Header,
    ParseCounts,
    ParseOptions,
    RowBatch,
)
from powerview.formats.lines import BoundedLines

FORMATS: dict[str, DeviceFormat] = {
    mv.name: mv,  # a module satisfies the protocol
}

_HEAD_BYTES = 8192
_TAIL_BYTES = 256

__all__ = [
    "FORMATS",
    "BoundedLines",
    "Column",
    "DeviceFile",
    "DeviceFormat",
    "Header",
    "ParseCounts",
    "ParseOptions",
    "RowBatch",
    "detect",
    "open_device_file",
    "open_stream",
]


def detect(first_lines: list[str]) -> DeviceFormat:
    """The format whose sniff accepts these lines, or a FormatError saying why none did."""
    for fmt in FORMATS.values():
        if fmt.sniff(first_lines):
            return fmt
    first = first_lines[0][:60] if first_lines else ""
    raise FormatError(f"not a known device export (first line: {first!r})")


def open_stream(
    stream: TextIO | BinaryIO | BoundedLines, options: ParseOptions, tail: str | None = None
) -> DeviceFile:
    """Open a stream (binary, or text); it must support readline(limit) (not seek).

    Every line is read within `options`' limits (see formats/lines.py).
    """
    first: list[str] = []
    lines = stream if isinstance(stream, BoundedLines) else BoundedLines(stream, options)
    # Peek at the first lines without consuming them, for streams that cannot seek.
    buffered = _PeekStream(lines)
    for _ in range(2):
        line = buffered.peek_line()
        if line is None:
            break
        first.append(line.rstrip("\r\n").lstrip("\ufeff"))
    if not first:
        raise FormatError("empty file")
    return detect(first).open(buffered, options, tail)  # type: ignore[arg-type]


@contextlib.contextmanager
def open_device_file(source: Path | BinaryIO, options: ParseOptions) -> Iterator[DeviceFile]:
    """Open a device file for streaming; binary content, empty and too large files fail at once.

    `source` is a path (operator tools) or a binary file object already opened
    (the worker's upload, opened once without following links): the content
    is read from that object only, never reopened by name. Only a bounded
    head and tail are read before parsing starts.
    """
    with contextlib.ExitStack() as stack:
        raw = source if not isinstance(source, Path) else stack.enter_context(source.open("rb"))
        fd = raw.fileno()
        size = os.fstat(fd).st_size
        if size > options.max_file_bytes:
            raise FormatError(
                f"the file is {size} bytes, more than {options.max_file_bytes}"
                " (POWERVIEW_MAX_FILE_BYTES)"
            )
        head = os.pread(fd, _HEAD_BYTES, 0)
        if not head:
            raise FormatError("empty file")
        if b"\x00" in head:
            raise FormatError("binary content (NUL bytes), not a device export")
        start = max(0, size - _TAIL_BYTES)
        tail = os.pread(fd, size - start, start).decode("utf-8", errors="replace")
        raw.seek(0)
        yield open_stream(raw, options, tail)


class _PeekStream:
    """A text stream whose first lines can be looked at before the format reads them."""

    def __init__(self, stream: BoundedLines) -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._peeked = 0

    def peek_line(self) -> str | None:
        if self._peeked < len(self._pending):
            line = self._pending[self._peeked]
        else:
            line = self._stream.readline()
            if not line:
                return None
            self._pending.append(line)
        self._peeked += 1
        return line

    def readline(self) -> str:
        if self._pending:
            return self._pending.pop(0)
        return self._stream.readline()

    def __iter__(self) -> Iterator[str]:
        while self._pending:
            yield self._pending.pop(0)
        yield from self._stream
