"""Reading a device file line by line without ever holding more than a bound.

A client controls every byte it uploads: one line of 1 GiB (a sparse file
costs it a few KB of disk) took 2.1 GB of worker memory when read with plain
iteration (issue 10). Here each line is read with `readline(limit)`, so a
line longer than the limit is refused after reading `limit + 1` bytes, and
the reader stops at the file-size limit even when the file grows while read.

`readline()` reads header lines, all counted against one header budget;
iterating reads data lines, each bounded on its own. Line ends are
normalised as a text file opened with `newline=None` would: `\\r\\n` and a
lone `\\r` become `\\n`. Bytes are decoded as UTF-8 with `surrogateescape`:
a stray non-UTF-8 byte costs its row, not the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO, TextIO

from powerview.exceptions import FormatError
from powerview.formats.base import ParseOptions

_BOM = b"\xef\xbb\xbf"


class BoundedLines:
    """Lines of `source` (binary, or text for in-memory tests) within `options`' limits.

    For a binary source the limits count bytes; for a text source, characters.
    """

    def __init__(self, source: BinaryIO | TextIO, options: ParseOptions) -> None:
        self._source = source
        self._binary = not isinstance(source, io.TextIOBase)
        self._max_line = options.max_line_bytes
        self._max_header = options.max_header_bytes
        self._max_file = options.max_file_bytes
        self._header_left = options.max_header_bytes
        self._file_left = options.max_file_bytes
        self._pending: list[str] = []  # lines split at a lone \r, not yet returned
        self._first = True
        self.line_number = 0  # of the last line returned

    def readline(self) -> str:
        """The next header line ('' at the end); the header as a whole is bounded."""
        if self._pending:
            return self._next_pending()
        chunk = self._read(self._header_left)
        if not chunk:
            return ""
        if len(chunk) > self._header_left:
            raise FormatError(
                f"the header is longer than {self._max_header} bytes at line"
                f" {self.line_number + 1} (POWERVIEW_MAX_HEADER_BYTES)"
            )
        self._header_left -= len(chunk)
        return self._lines(chunk)

    def __iter__(self) -> Iterator[str]:
        """The data lines, each bounded by the line limit."""
        limit = self._max_line
        while True:
            if self._pending:
                yield self._next_pending()
                continue
            chunk = self._read(limit)
            if len(chunk) > limit:
                raise FormatError(
                    f"line {self.line_number + 1} is longer than {limit} bytes"
                    " (POWERVIEW_MAX_LINE_BYTES)"
                )
            if not chunk:
                return
            yield self._lines(chunk)

    def _read(self, limit: int) -> bytes | str:
        """Up to `limit + 1` bytes of one line: one more than allowed tells it is too long."""
        chunk = self._source.readline(min(limit, self._file_left) + 1)
        self._file_left -= len(chunk)
        if self._file_left < 0:
            raise FormatError(
                f"the file grew past {self._max_file} bytes while being read"
                " (POWERVIEW_MAX_FILE_BYTES)"
            )
        if self._first and chunk:
            self._first = False
            if isinstance(chunk, bytes) and chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        return chunk

    def _lines(self, chunk: bytes | str) -> str:
        """Decode one chunk into its line (more than one when split at lone \\r)."""
        text = chunk.decode("utf-8", "surrogateescape") if isinstance(chunk, bytes) else chunk
        self.line_number += 1
        if "\r" not in text:
            return text
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        parts = text.split("\n")
        lines = [part + "\n" for part in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        self._pending.extend(lines[1:])
        return lines[0]

    def _next_pending(self) -> str:
        self.line_number += 1
        return self._pending.pop(0)
