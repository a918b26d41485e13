"""Device file formats: one `DeviceFormat` object per family, registered in `FORMATS`.

A format has a `name`, the `device` tag value and `model_tags` it reads, a
`sniff(head)` that recognises its files by their first lines, an
`open(stream, options, tail)` that reads the header and returns a `DeviceFile`
whose `batches()` streams the rows, and `channels(header)` labelling the
columns for the schema. Adding a family is one module plus one line in
`FORMATS`, plus its tests and golden cases (tests/unit/testdata/formats/<name>/).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, TextIO

from powerview.exceptions import FormatError
from powerview.formats.base import (
    Channel,
    Column,
    DeviceFile,
    DeviceFormat,
    Head,
    Header,
    LineSource,
    ParseCounts,
    ParseOptions,
    RowBatch,
)
from powerview.formats.head import TAG_SHAPE, PeekedLines, model_tag
from powerview.formats.lines import BoundedLines
from powerview.formats.mv import MVFormat


def registry(*formats: DeviceFormat) -> dict[str, DeviceFormat]:
    """Formats by name, tried in this order; a name registered twice is a bug."""
    result: dict[str, DeviceFormat] = {}
    for fmt in formats:
        if fmt.name in result:
            raise ValueError(f"two device formats named {fmt.name!r}")
        result[fmt.name] = fmt
    return result


FORMATS: dict[str, DeviceFormat] = registry(
    MVFormat(),
)

_HEAD_BYTES = 8192
_TAIL_BYTES = 256

__all__ = [
    "FORMATS",
    "BoundedLines",
    "Channel",
    "Column",
    "DeviceFile",
    "DeviceFormat",
    "Head",
    "Header",
    "LineSource",
    "ParseCounts",
    "ParseOptions",
    "PeekedLines",
    "RowBatch",
    "detect",
    "format_for_tag",
    "open_device_file",
    "open_stream",
    "registry",
]


def detect(head: PeekedLines, formats: Mapping[str, DeviceFormat] = FORMATS) -> DeviceFormat:
    """The format whose sniff accepts `head`, or a FormatError saying why none did.

    A device export with a tag no format reads is named by its tag, when the
    field where tags stand (formats/head.py) has the shape of one.
    """
    for fmt in formats.values():
        if fmt.sniff(head):
            return fmt
    first = head.line(0)
    if first is None:
        raise FormatError("empty file")
    tag = model_tag(head)
    if tag is not None and TAG_SHAPE.fullmatch(tag):
        raise _unknown_tag(tag, formats)
    raise FormatError(f"not a known device export (first line: {first[:60]!r})")


def format_for_tag(tag: str, formats: Mapping[str, DeviceFormat] = FORMATS) -> DeviceFormat:
    """The format reading files with model tag `tag` (a header's `model_tag`)."""
    for fmt in formats.values():
        if tag in fmt.model_tags:
            return fmt
    raise _unknown_tag(tag, formats)


def _unknown_tag(tag: str, formats: Mapping[str, DeviceFormat]) -> FormatError:
    known = ", ".join(sorted(t for fmt in formats.values() for t in fmt.model_tags))
    return FormatError(f"unknown format tag {tag!r} (known: {known})")


def open_stream(
    stream: TextIO | BinaryIO | BoundedLines,
    options: ParseOptions,
    tail: str | None = None,
    formats: Mapping[str, DeviceFormat] = FORMATS,
) -> DeviceFile:
    """Open a stream (binary, or text, or already bounded lines); it need not seek.

    Every line is read within `options`' limits (see formats/lines.py); the
    lines the sniffers looked at are handed to the chosen format unread.
    """
    lines = stream if isinstance(stream, BoundedLines) else BoundedLines(stream, options)
    head = PeekedLines(lines)
    return detect(head, formats).open(head, options, tail)


@contextlib.contextmanager
def open_device_file(
    source: Path | BinaryIO,
    options: ParseOptions,
    formats: Mapping[str, DeviceFormat] = FORMATS,
) -> Iterator[DeviceFile]:
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
        yield open_stream(raw, options, tail, formats)
