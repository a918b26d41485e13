"""MV power-meter exports (T302, T202): two header lines, then tab-separated rows.

    02001171  02001171  ...  04000466          line 1: serial of the module per column
    MV_T302_V002  Ph 1 V  ...  Voie1 W         line 2: model tag, `<name> <unit>` labels
    03/08/25 03:20:00  242.25  ...  163.8      rows: DD/MM/YY HH:MM:SS, one value per column

`MV_T302_V003` (and `MV_T302_V002` in recent firmware) wraps this in blocks:
START_HEADER / one JSON line / END_HEADER / START_DATA / the layout above /
END_DATA (formats/block.py). A block file without its final END_DATA is
incomplete. A file is this family's when its label line is led by one of
`MODEL_TAGS`, in either layout.

Channels (ARCHITECTURE §5): on the master, three-phase → `U1..U3` then
`Ch1..`, single-phase → `U1` then `Ch1..`; on a slave → `Ch1..` counted per
slave. The `device` tag is `MV2`.

Time: a block file with `DataTimeSettings` `UTC` is UTC; any other setting is
local time in `TimeZoneName`, converted to UTC (a time in a DST gap is read with
the offset before the change; a time that exists twice is given the earliest
reading not before the previous row). Plain files carry no setting and use
`ParseOptions.headerless_time_zone` (UTC by default).

Values: plain decimals are passed through as written (so `-0.0` stays `-0.0`);
`N/A`, empty, `nan`, `inf` and overflowing values are counted and skipped; a
French decimal comma (`12,5`) is unambiguous in a tab-separated file and is
accepted as `12.5`, and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerview.exceptions import FormatError, IncompleteFileError
from powerview.formats.base import (
    Channel,
    Column,
    Head,
    Header,
    LineSource,
    ParseCounts,
    ParseOptions,
    Phase,
    RowBatch,
)
from powerview.formats.block import END_DATA, ends_block, is_block_start, read_header_lines
from powerview.formats.head import model_tag

MODEL_TAGS = frozenset({"MV_T302_V002", "MV_T302_V003", "MV_T202_V002", "MV_T202_V003"})
_SERIAL = re.compile(r"[0-9A-Za-z]{1,32}")
# re.ASCII: \d must not match other scripts' digits, which would reach the line protocol.
_DECIMAL = re.compile(r"-?\d{1,15}(?:\.\d{1,15})?", re.ASCII)
_TIMESTAMP = re.compile(r"(\d{2})/(\d{2})/(\d{2}|\d{4}) (\d{2}):(\d{2}):(\d{2})", re.ASCII)
_THREE_PHASES = frozenset({"Ph 1", "Ph 2", "Ph 3"})
_EPOCH_DAY = dt.date(1970, 1, 1)
_UTC_NAMES = frozenset({"utc", "gmt", "z"})
_DST_SLOT_S = 900  # every DST change in the tz database falls on a quarter hour


class MVFormat:
    """The MV family (a `DeviceFormat`): T302 and T202 meters and their slaves."""

    name = "mv"
    device = "MV2"
    model_tags = MODEL_TAGS

    def sniff(self, head: Head) -> bool:
        """A plain or block file whose label line is led by an MV tag."""
        return model_tag(head) in MODEL_TAGS

    def open(self, stream: LineSource, options: ParseOptions, tail: str | None = None) -> MVFile:
        """Read the header; `tail` (the file's last bytes) lets a cut file fail before any row."""
        return MVFile(stream, options, tail)

    def channels(self, header: Header) -> tuple[Channel, ...]:
        """`U1..` for the master's voltages (one, three in three-phase), then `Ch1..`."""
        master = header.master_sn
        voltages = 3 if header.phase == "tri" else 1
        master_seen = 0
        per_slave: Counter[str] = Counter()
        result = []
        for column in header.columns:
            if column.serial == master:
                master_seen += 1
                if master_seen <= voltages:
                    label = f"U{master_seen}"
                else:
                    label = f"Ch{master_seen - voltages}"
                result.append(Channel(label, "master", header.phase))
            else:
                per_slave[column.serial] += 1
                result.append(Channel(f"Ch{per_slave[column.serial]}", "slave"))
        return tuple(result)


class MVFile:
    """One MV export: `header` on construction, then `batches()` streams the rows once."""

    def __init__(self, stream: LineSource, options: ParseOptions, tail: str | None) -> None:
        self._stream = stream
        self._options = options
        self.counts = ParseCounts()
        self.warnings: list[str] = []
        self.header = self._read_header()
        if self.header.layout == "block" and tail is not None and not ends_block(tail):
            raise IncompleteFileError(
                "incomplete file: no END_DATA at its end (upload still running or cut short)"
            )
        width = len(self.header.columns)
        self._ncols = width
        self._fast_row = re.compile(
            r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d(?:\t-?\d{1,15}(?:\.\d{1,15})?)" f"{{{width}}}",
            re.ASCII,
        )
        zone = self.header.time_zone
        self._tz: ZoneInfo | None = None if zone.lower() in _UTC_NAMES else ZoneInfo(zone)
        self._day_cache: dict[str, int | None] = {}
        self._tod_cache: dict[str, int | None] = {}
        self._offset_cache: dict[int, int | None] = {}
        self._last_epoch: int | None = None

    # -- header ---------------------------------------------------------------

    def _next_line(self) -> str | None:
        line = self._stream.readline()
        if not line:
            return None
        return line.rstrip("\r\n")

    def _read_header(self) -> Header:
        first = self._next_line()
        if first is None:
            raise FormatError("empty file")
        first = first.lstrip("\ufeff")
        metadata: dict[str, Any] = {}
        layout: Literal["plain", "block"] = "plain"
        if is_block_start(first):
            layout = "block"
            metadata = self._read_json_block()
            serial_line = self._next_line()
        else:
            serial_line = first
        # Counted before anything is split (the sniff read the label line, within the
        # header budget, but split off its tag only).
        width = serial_line.count("\t") if serial_line is not None else 0
        if width > self._options.max_columns:
            raise FormatError(
                f"the header has {width} columns, more than {self._options.max_columns}"
                " (POWERVIEW_MAX_COLUMNS)"
            )
        label_line = self._next_line()
        if serial_line is None or label_line is None:
            raise FormatError("header cut short: the serial and label lines are missing")
        _reject_binary(serial_line + label_line)
        serials = [s.strip() for s in serial_line.split("\t")]
        labels = [s.strip() for s in label_line.split("\t")]
        tag = labels[0]
        if tag not in MODEL_TAGS:
            known = ", ".join(sorted(MODEL_TAGS))
            raise FormatError(f"unknown format tag {tag!r} (known: {known})")
        if len(serials) != len(labels):
            raise FormatError(
                f"header width mismatch: {len(serials) - 1} serials for {len(labels) - 1} labels"
            )
        if len(labels) < 2:
            raise FormatError("no measurement columns in the header")
        for serial in serials:
            if not _SERIAL.fullmatch(serial):
                raise FormatError(f"invalid module serial {serial!r} in the header")
        columns = tuple(_column(i, serials[i], labels[i]) for i in range(1, len(labels)))
        master_sn = serials[0]
        return Header(
            model_tag=tag,
            layout=layout,
            master_sn=master_sn,
            phase=self._phase(metadata, columns, master_sn),
            columns=columns,
            metadata=metadata,
            time_zone=self._time_zone(metadata, layout),
        )

    def _read_json_block(self) -> dict[str, Any]:
        parts = read_header_lines(self._next_line)
        try:
            metadata = json.loads("\n".join(parts))
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise FormatError(f"header block is not valid JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise FormatError("header block is not a JSON object")
        return metadata

    def _phase(self, metadata: dict[str, Any], columns: tuple[Column, ...], master: str) -> Phase:
        master_type = str(metadata.get("MasterType", "")).strip().lower()
        names = {c.name for c in columns if c.serial == master}
        by_labels: Phase = "tri" if names >= _THREE_PHASES else "mono"
        if master_type in ("tri", "mono"):
            if master_type != by_labels:
                self.warnings.append(
                    f"MasterType {metadata['MasterType']!r} but the labels look {by_labels}-phase;"
                    " MasterType wins"
                )
            return "tri" if master_type == "tri" else "mono"
        if master_type:
            self.warnings.append(f"unknown MasterType {metadata['MasterType']!r}; labels used")
        return by_labels

    def _time_zone(self, metadata: dict[str, Any], layout: str) -> str:
        if layout == "plain":
            return self._options.headerless_time_zone
        setting = str(metadata.get("DataTimeSettings", "UTC")).strip()
        if "DataTimeSettings" not in metadata:
            self.warnings.append("no DataTimeSettings in the header: times read as UTC")
        if setting.lower() in _UTC_NAMES:
            return "UTC"
        zone = str(metadata.get("TimeZoneName", "")).strip()
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: `Europe` is a folder
            raise FormatError(
                f"DataTimeSettings {setting!r} (local time) but no usable TimeZoneName ({zone!r})"
            ) from None
        self.warnings.append(f"local times converted to UTC from {zone}")
        return zone

    # -- rows -----------------------------------------------------------------

    def batches(self, batch_rows: int | None = None) -> Iterator[RowBatch]:
        """Stream the valid rows in batches of `batch_rows`; all set aside is counted."""
        # Hot loop: a row of plain decimals is checked by one compiled regex and
        # its values kept as one string; a batch is split in one call at the end.
        # Anything else takes the careful path in _slow_row.
        counts = self.counts
        fast_row = self._fast_row.fullmatch
        day_epoch = self._day_epoch
        time_of_day = self._time_of_day
        earliest = self._options.earliest_epoch
        latest = self._options.latest_epoch if self._options.latest_epoch is not None else 2**62
        block = self.header.layout == "block"
        local = self._tz is not None
        size = batch_rows or self._options.batch_rows
        width = self._ncols
        epochs: list[int] = []
        flat: list[str | None] = []
        texts: list[str] = []  # value strings of fast rows not yet split into `flat`
        clean = True
        ended = False
        last = -1
        for line in self._stream:
            complete = line.endswith("\n")
            body = line[:-1] if complete else line
            if fast_row(body) is not None and not ended:
                counts.nb_rows += 1
                day = day_epoch(body[:8])
                tod = time_of_day(body[9:17])
                if day is None or tod is None:
                    counts.nb_invalid_timestamps += 1
                    continue
                epoch = day + tod
                values: str | list[str | None] = body[18:]
            else:
                parsed = self._slow_row(body, complete, block, ended)
                if parsed is None:
                    continue
                if parsed is _END:
                    ended = True
                    continue
                epoch, values = parsed  # type: ignore[misc]
            if local:
                epoch = self._to_utc(epoch, last)
            if epoch < earliest or epoch > latest:
                counts.nb_out_of_window += 1
                continue
            counts.nb_valid_rows += 1
            if epoch <= last:
                if epoch == last:
                    counts.nb_duplicate_timestamps += 1
                else:
                    counts.nb_out_of_order += 1
            last = epoch
            epochs.append(epoch)
            if isinstance(values, str):
                texts.append(values)
            else:
                if texts:
                    flat.extend("\t".join(texts).split("\t"))
                    texts.clear()
                flat.extend(values)
                clean = clean and None not in values
            if len(epochs) >= size:
                if texts:
                    flat.extend("\t".join(texts).split("\t"))
                    texts.clear()
                yield RowBatch(epochs, flat, width, clean)
                epochs, flat, clean = [], [], True
        if texts:
            flat.extend("\t".join(texts).split("\t"))
        if epochs:
            yield RowBatch(epochs, flat, width, clean)
        if block and not ended:
            raise IncompleteFileError(
                "incomplete file: no END_DATA at its end (upload still running or cut short)"
            )

    def _slow_row(
        self, body: str, complete: bool, block: bool, ended: bool
    ) -> tuple[int, list[str | None]] | object | None:
        """Classify a line the fast path refused; None when it yields no row."""
        counts = self.counts
        stripped = body.strip()
        if not stripped:
            counts.nb_blank_lines += 1
            return None
        if block and stripped == END_DATA:
            if ended:
                counts.nb_lines_after_end += 1
                return None
            return _END
        if ended:
            counts.nb_lines_after_end += 1
            return None
        counts.nb_rows += 1
        if "\x00" in body or any("\udc80" <= ch <= "\udcff" for ch in body):
            counts.nb_undecodable_lines += 1
            return None
        parts = body.split("\t")
        if len(parts) != self._ncols + 1:
            if not complete:
                counts.nb_truncated_lines += 1
            elif len(parts) < self._ncols + 1:
                counts.nb_short_rows += 1
            else:
                counts.nb_long_rows += 1
            return None
        epoch = self._parse_timestamp(parts[0].strip())
        if epoch is None:
            counts.nb_invalid_timestamps += 1
            return None
        values = [self._value(text) for text in parts[1:]]
        invalid = values.count(None)
        if invalid and not complete:
            counts.nb_truncated_lines += 1  # the last value of a cut last line
            return None
        counts.nb_invalid_values += invalid
        return epoch, values

    def _value(self, text: str) -> str | None:
        text = text.strip()
        if _DECIMAL.fullmatch(text):
            return text
        if text.count(",") == 1 and "." not in text:
            candidate = text.replace(",", ".")
            if _DECIMAL.fullmatch(candidate):
                self.counts.nb_decimal_comma += 1
                return candidate
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        return repr(number)

    def _parse_timestamp(self, text: str) -> int | None:
        """Naive seconds since 1970 (UTC or local wall clock), None if invalid."""
        match = _TIMESTAMP.fullmatch(text)
        if match is None:
            return None
        day = self._day_epoch(text[:8]) if len(text) == 17 else _long_day(match)
        tod = self._time_of_day(text[-8:])
        if day is None or tod is None:
            return None
        return day + tod

    def _day_epoch(self, text: str) -> int | None:
        """`DD/MM/YY` → seconds at midnight, cached (a file spans few days)."""
        cached = self._day_cache.get(text, -1)
        if cached != -1:
            return cached
        try:
            day = dt.date(2000 + int(text[6:8]), int(text[3:5]), int(text[0:2]))
            value: int | None = (day - _EPOCH_DAY).days * 86_400
        except ValueError:
            value = None
        if len(self._day_cache) < 100_000:
            self._day_cache[text] = value
        return value

    def _time_of_day(self, text: str) -> int | None:
        """`HH:MM:SS` → seconds, cached (at most 86,400 keys)."""
        cached = self._tod_cache.get(text, -1)
        if cached != -1:
            return cached
        try:
            hours, minutes, seconds = int(text[0:2]), int(text[3:5]), int(text[6:8])
        except ValueError:
            value = None
        else:
            ok = text[2] == ":" and text[5] == ":" and hours < 24 and minutes < 60 and seconds < 60
            value = hours * 3600 + minutes * 60 + seconds if ok else None
        self._tod_cache[text] = value
        return value

    def _to_utc(self, wall: int, previous: int) -> int:
        """Local wall-clock seconds → UTC seconds, counting DST gaps and repeats."""
        slot = wall // _DST_SLOT_S
        offset = self._offset_cache.get(slot, -1)
        if offset == -1:
            offset = self._slot_offset(slot)
            self._offset_cache[slot] = offset
        if offset is not None:
            return wall - offset
        naive = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=wall)
        assert self._tz is not None
        first = int(naive.replace(tzinfo=self._tz, fold=0).timestamp())
        second = int(naive.replace(tzinfo=self._tz, fold=1).timestamp())
        if first == second:
            return first
        round_trip = dt.datetime.fromtimestamp(first, self._tz).replace(tzinfo=None)
        if round_trip != naive:
            self.counts.nb_dst_gap += 1
            return first
        self.counts.nb_dst_ambiguous += 1
        low, high = min(first, second), max(first, second)
        return high if low < previous <= high else low

    def _slot_offset(self, slot: int) -> int | None:
        """The UTC offset for a quarter hour, or None if a DST change touches it."""
        assert self._tz is not None
        start = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=slot * _DST_SLOT_S)
        offsets = {
            moment.replace(tzinfo=self._tz, fold=fold).utcoffset()
            for moment in (start, start + dt.timedelta(seconds=_DST_SLOT_S - 1))
            for fold in (0, 1)
        }
        if len(offsets) != 1:
            return None
        offset = offsets.pop()
        assert offset is not None
        return int(offset.total_seconds())


_END = object()


def _column(index: int, serial: str, label: str) -> Column:
    name, _, unit = label.rpartition(" ")
    if not name.strip() or not unit:
        raise FormatError(f"column {index} label {label!r} is not '<name> <unit>'")
    return Column(index=index, serial=serial, name=name.strip(), unit=unit)


def _reject_binary(text: str) -> None:
    if "\x00" in text or any("\udc80" <= ch <= "\udcff" for ch in text):
        raise FormatError("binary or non-UTF-8 content in the header")


def _long_day(match: re.Match[str]) -> int | None:
    """`DD/MM/YYYY` (not seen from devices, accepted all the same)."""
    try:
        day = dt.date(int(match[3]), int(match[2]), int(match[1]))
    except ValueError:
        return None
    return (day - _EPOCH_DAY).days * 86_400
