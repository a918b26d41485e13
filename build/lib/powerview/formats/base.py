"""What a device format is, and what it yields: a header describing the
columns, then batches of rows, plus the counts of everything that was rejected
on the way, and the labels the schema gives its channels.

Rows come out in bounded batches so that memory does not grow with the file;
each value is kept as its line-protocol-ready decimal text (or None when it
was invalid), so the encoder never has to format a float again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

Phase = Literal["mono", "tri"]
Role = Literal["master", "slave"]


@dataclass(frozen=True, slots=True)
class Column:
    """One measured channel as the file labels it (`Ph 1 V` on module `04000466`)."""

    index: int  # position in a data row, 1-based (0 is the timestamp)
    serial: str  # serial of the module that measured it
    name: str  # label without its unit: `Ph 1`, `Voie1`
    unit: str  # `V`, `W`, `A`, ...


@dataclass(frozen=True)
class Header:
    """Everything a file says about itself before its first data row."""

    model_tag: str  # `MV_T302_V003`
    layout: Literal["plain", "block"]  # block = START_HEADER/START_DATA markers
    master_sn: str
    phase: Phase
    columns: tuple[Column, ...]
    metadata: dict[str, Any] = field(default_factory=dict)  # the JSON header, if any
    time_zone: str = "UTC"


@dataclass
class RowBatch:
    """Up to a few thousand consecutive valid rows (a row with a valid timestamp).

    `values` is flat, row after row, `width` values a row: column `j` is
    `values[j::width]`, a C-speed slice for statistics and encoding alike.
    """

    epochs: list[int]  # seconds since 1970, UTC
    values: list[str | None]  # decimal text, None where the value was invalid
    width: int
    clean: bool  # no None anywhere: the encoder's fast path

    def rows(self) -> list[list[str | None]]:
        """The values row by row (for display, not for hot paths)."""
        w = self.width
        return [self.values[i * w : (i + 1) * w] for i in range(len(self.epochs))]


@dataclass
class ParseCounts:
    """Every kind of row or value the parser set aside, counted (never raised)."""

    nb_rows: int = 0  # data lines seen (blank lines excluded)
    nb_valid_rows: int = 0  # rows whose timestamp is usable
    nb_invalid_timestamps: int = 0
    nb_invalid_values: int = 0  # single values skipped (N/A, empty, nan, inf, overflow)
    nb_short_rows: int = 0  # fewer columns than the header (row rejected)
    nb_long_rows: int = 0  # more columns than the header (row rejected)
    nb_truncated_lines: int = 0  # last line cut short (row rejected)
    nb_out_of_window: int = 0  # timestamp outside the sane time window (row rejected)
    nb_duplicate_timestamps: int = 0  # same time as the row before (later row wins)
    nb_out_of_order: int = 0  # earlier than the row before (kept)
    nb_decimal_comma: int = 0  # values written with a French decimal comma (accepted)
    nb_undecodable_lines: int = 0  # not UTF-8 or binary (row rejected)
    nb_dst_gap: int = 0  # local times that do not exist (spring forward)
    nb_dst_ambiguous: int = 0  # local times that exist twice (fall back)
    nb_blank_lines: int = 0
    nb_lines_after_end: int = 0  # lines after END_DATA (ignored)

    @property
    def nb_rejected_rows(self) -> int:
        return (
            self.nb_short_rows
            + self.nb_long_rows
            + self.nb_truncated_lines
            + self.nb_out_of_window
            + self.nb_undecodable_lines
            + self.nb_invalid_timestamps
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class DeviceFile(Protocol):
    """An opened device file: its header, then its rows, streamed once."""

    header: Header
    counts: ParseCounts
    warnings: list[str]

    def batches(self, batch_rows: int | None = None) -> Iterator[RowBatch]: ...


@dataclass(frozen=True, slots=True)
class Channel:
    """How the schema names one column: what a device family says of it (ARCHITECTURE §5).

    `role` picks the channel id's shape: a master's `M<master>_<label>`, a
    slave's `M<master>_S<serial>_<label>`; `subtype` is the `device_subtype`
    tag, left out when None.
    """

    label: str  # `U1`, `Ch3`
    role: Role
    subtype: str | None = None  # `mono`, `tri` on an MV master


class LineSource(Protocol):
    """Lines with their line ends: `readline()` for the header, iteration for the rows."""

    def readline(self) -> str: ...

    def __iter__(self) -> Iterator[str]: ...


class Head(Protocol):
    """A file's first lines, read as far as a sniffer asks (formats/head.py)."""

    def line(self, index: int) -> str | None:
        """Line `index` (0-based), line end and BOM stripped; None past the end."""
        ...


class DeviceFormat(Protocol):
    """A device file family: recognises its files, opens them, labels their channels.

    Everything family-specific the schema needs comes from here (`device`,
    `channels`), so a new family is a new format object, not a schema change.
    """

    name: str  # the registry key: `mv`
    device: str  # the `device` tag value: `MV2`
    model_tags: frozenset[str]  # the tags it reads, named when a file has another

    def sniff(self, head: Head) -> bool:
        """True when the file whose first lines are `head` is this family's."""
        ...

    def open(
        self, stream: LineSource, options: ParseOptions, tail: str | None = None
    ) -> DeviceFile:
        """Read the header from `stream` (raises FormatError) and prepare the rows.

        `tail` is the end of the file when known, so a cut file fails at once.
        """
        ...

    def channels(self, header: Header) -> tuple[Channel, ...]:
        """One Channel per column of `header`, in column order."""
        ...


@dataclass(frozen=True)
class ParseOptions:
    """Policy knobs from the settings; defaults are the documented behaviour."""

    earliest_epoch: int = 1_609_459_200  # 2021-01-01T00:00:00Z: older rows are clock resets
    latest_epoch: int | None = None  # None: no upper bound
    headerless_time_zone: str = "UTC"  # plain-layout files carry no time setting
    batch_rows: int = 2000
    # Limits on what a client's file may make the reader hold (issue 10); a file
    # breaking one is refused with a FormatError naming the setting. Why these
    # defaults: see the settings (POWERVIEW_MAX_*) in settings.py.
    max_line_bytes: int = 64 * 1024
    max_header_bytes: int = 1024 * 1024
    max_columns: int = 1024
    max_file_bytes: int = 1024**3
