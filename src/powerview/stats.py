"""Per-channel count, min, max and mean over a streamed file, batch by batch."""

from __future__ import annotations

from dataclasses import dataclass

from powerview.formats import RowBatch


@dataclass
class ChannelStats:
    count: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    total: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class FileStats:
    """Accumulates statistics and the time range of the batches of one file."""

    def __init__(self, width: int) -> None:
        self.channels = [ChannelStats() for _ in range(width)]
        self.first_epoch: int | None = None
        self.last_epoch: int | None = None

    def add(self, batch: RowBatch) -> None:
        if not batch.epochs:
            return
        low, high = min(batch.epochs), max(batch.epochs)
        self.first_epoch = low if self.first_epoch is None else min(self.first_epoch, low)
        self.last_epoch = high if self.last_epoch is None else max(self.last_epoch, high)
        width = batch.width
        for j, stats in enumerate(self.channels):
            column = batch.values[j::width]  # a C-level slice of the flat batch
            if batch.clean:
                numbers = list(map(float, column))  # type: ignore[arg-type]
            else:
                numbers = [float(v) for v in column if v is not None]
            if not numbers:
                continue
            stats.count += len(numbers)
            stats.minimum = min(stats.minimum, min(numbers))
            stats.maximum = max(stats.maximum, max(numbers))
            stats.total += sum(numbers)


class DistinctPoints:
    """How many distinct (column, timestamp) pairs hold a value: the points InfluxDB keeps.

    A row repeated in a file (same timestamp, later one wins) is one point per
    column, wherever the repeat is. Full rows set one bit per second in a
    bitmap over the file's time range, so memory is bounded by that range
    (the parser's time window: a few MB), not by the row count; rows with
    missing values keep a column mask per timestamp, up to `max_partial` of
    them, past which they are counted without looking for repeats.
    """

    def __init__(self, width: int, max_partial: int = 1_000_000) -> None:
        self._width = width
        self._bits = bytearray()
        self._base = 0  # epoch of bit 0
        self._partial: dict[int, int] = {}
        self._max_partial = max_partial
        self._uncounted = 0  # points of partial rows past max_partial

    def add(self, batch: RowBatch) -> None:
        if not batch.epochs:
            return
        self._cover(min(batch.epochs), max(batch.epochs))
        bits, base = self._bits, self._base
        if batch.clean:
            for epoch in batch.epochs:
                offset = epoch - base
                bits[offset >> 3] |= 1 << (offset & 7)
            return
        width = batch.width
        values = batch.values
        for i, epoch in enumerate(batch.epochs):
            row = values[i * width : (i + 1) * width]
            if None not in row:
                offset = epoch - base
                bits[offset >> 3] |= 1 << (offset & 7)
                continue
            mask = sum(1 << j for j, value in enumerate(row) if value is not None)
            if epoch in self._partial or len(self._partial) < self._max_partial:
                self._partial[epoch] = self._partial.get(epoch, 0) | mask
            else:
                self._uncounted += mask.bit_count()

    def _cover(self, low: int, high: int) -> None:
        """Grow the bitmap to hold seconds `low` to `high`."""
        if not self._bits:
            self._base = low - low % 8
        if low < self._base:
            shift = (self._base - low + 7) // 8
            self._bits[:0] = bytes(shift)
            self._base -= shift * 8
        need = (high - self._base) // 8 + 1
        if need > len(self._bits):
            self._bits.extend(bytes(need - len(self._bits)))

    @property
    def count(self) -> int:
        full = int.from_bytes(self._bits, "little").bit_count()
        partial = 0
        for epoch, mask in self._partial.items():
            offset = epoch - self._base
            if not self._bits[offset >> 3] >> (offset & 7) & 1:
                partial += mask.bit_count()
        return full * self._width + partial + self._uncounted
