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
