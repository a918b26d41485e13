"""The first lines of a file, read only as far as the sniffers ask, then replayed.

A stream from a client cannot seek back, so the lines a sniffer looked at are
kept and handed again to the format that opens the file. They are read with
`BoundedLines.readline`, counted once against the header budget
(`POWERVIEW_MAX_HEADER_BYTES`): the sniff reads no further than a format's
header would, and never a data line more than the model tag needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from powerview.exceptions import FormatError
from powerview.formats.base import Head, LineSource
from powerview.formats.block import is_block_start, read_header_lines

# What a model tag looks like (`MV_T302_V003`): in a plain file, a label line led
# by such a tag is a device export, known or not.
TAG_SHAPE = re.compile(r"[A-Z0-9]{1,8}_[A-Z0-9]{1,8}_V\d{3}")


class PeekedLines:
    """`source`'s lines, the first ones peekable by index before they are read."""

    def __init__(self, source: LineSource) -> None:
        self._source = source
        self._peeked: list[str] = []  # raw lines, line ends kept, not yet handed on
        self._handed = 0  # lines already handed on by readline/iteration

    def line(self, index: int) -> str | None:
        """Line `index` (0-based) without its line end or BOM; None past the end."""
        if index < self._handed:
            raise IndexError(f"line {index} was already read")
        while len(self._peeked) <= index - self._handed:
            raw = self._source.readline()
            if not raw:
                return None
            self._peeked.append(raw)
        text = self._peeked[index - self._handed].rstrip("\r\n")
        return text.lstrip("\ufeff") if index == 0 else text

    def readline(self) -> str:
        if self._peeked:
            self._handed += 1
            return self._peeked.pop(0)
        return self._source.readline()

    def __iter__(self) -> Iterator[str]:
        while self._peeked:
            self._handed += 1
            yield self._peeked.pop(0)
        yield from self._source


def model_tag(head: Head) -> str | None:
    """The tag leading the label line, or None when the file has no such line.

    Plain layout: line 1 holds tab-separated serials, line 2 the tag and the
    labels. Block layout: the same two lines follow START_DATA; a block broken
    before them raises the error its format would (formats/block.py).
    """
    first = head.line(0)
    if first is None:
        return None
    if is_block_start(first):
        read = 1  # lines of the head walked so far

        def next_line() -> str | None:
            nonlocal read
            read += 1
            return head.line(read - 1)

        read_header_lines(next_line)
        serial, label = head.line(read), head.line(read + 1)
        if serial is None or label is None:
            raise FormatError("header cut short: the serial and label lines are missing")
    else:
        serial, label = first, head.line(1)
        if label is None or "\t" not in serial:
            return None
    return label.split("\t", 1)[0].strip()
