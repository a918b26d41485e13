"""Generated device exports: realistic files of any size, and nasty variants.

Used by the tests and by bench/ so that big fixtures are made, not committed.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

V003_METADATA = {
    "DataZoneCode": 3,
    "DataTypeCode": 2,
    "DataTimeSettings": "UTC",
    "TimeZone": "CET-1CEST,M3.5.0,M10.5.0/3",
    "TimeZoneName": "Europe/Paris",
    "FileVersion": 3,
    "MasterType": "Tri",
}


@dataclass
class Export:
    """The shape of a T302 export; `lines()` renders it."""

    master_sn: str = "02009999"
    slaves: tuple[str, ...] = ()
    slave_channels: int = 6
    phase: str = "tri"
    master_channels: int = 3
    tag: str = "MV_T302_V003"
    block: bool = True
    rows: int = 10
    start: dt.datetime = dt.datetime(2026, 1, 20, 0, 0, 0)
    step_s: int = 600
    seed: int = 1
    metadata: dict[str, object] = field(default_factory=lambda: dict(V003_METADATA))

    def header_lines(self) -> list[str]:
        voltages = ["Ph 1 V", "Ph 2 V", "Ph 3 V"] if self.phase == "tri" else ["Ph 1 V"]
        labels = voltages + [f"Voie{i} W" for i in range(1, self.master_channels + 1)]
        serials = [self.master_sn] * len(labels)
        for slave in self.slaves:
            labels += [f"Voie{i} W" for i in range(1, self.slave_channels + 1)]
            serials += [slave] * self.slave_channels
        return [
            "\t".join([self.master_sn, *serials]),
            "\t".join([self.tag, *labels]),
        ]

    @property
    def width(self) -> int:
        voltages = 3 if self.phase == "tri" else 1
        return voltages + self.master_channels + len(self.slaves) * self.slave_channels

    def data_lines(self) -> Iterator[str]:
        rng = random.Random(self.seed)
        voltages = 3 if self.phase == "tri" else 1
        for i in range(self.rows):
            when = self.start + dt.timedelta(seconds=i * self.step_s)
            values = [f"{rng.uniform(225, 250):.2f}" for _ in range(voltages)]
            values += [f"{rng.uniform(-50, 5000):.1f}" for _ in range(self.width - voltages)]
            yield when.strftime("%d/%m/%y %H:%M:%S") + "\t" + "\t".join(values)

    def lines(self) -> Iterator[str]:
        if self.block:
            meta = dict(self.metadata)
            meta["MasterType"] = "Tri" if self.phase == "tri" else "Mono"
            yield from ("START_HEADER", json.dumps(meta, separators=(",", ":")), "END_HEADER")
            yield "START_DATA"
        yield from self.header_lines()
        yield from self.data_lines()
        if self.block:
            yield "END_DATA"

    def text(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="\n") as out:
            for line in self.lines():
                out.write(line + "\n")
        return path


def big_export(rows: int, slaves: int = 4, block: bool = False) -> Export:
    """A 30-channel export (3-phase master with 3 channels + 4 slaves x 6)."""
    return Export(
        master_sn="02001171",
        slaves=tuple(f"0400{i:04d}" for i in range(466, 466 + slaves)),
        rows=rows,
        block=block,
        tag="MV_T302_V003" if block else "MV_T302_V002",
        step_s=10,
    )
