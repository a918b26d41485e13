"""Device columns → InfluxDB series, exactly as the original system wrote them.

Measurement `electrical`, one point per (timestamp, channel):
- label: on the master, three-phase → `U1..U3` then `Ch1..`; single-phase →
  `U1` then `Ch1..`; on a slave → `Ch1..` counted per slave;
- `channel_id`: master `M<master_sn>_<label>`, slave `M<master_sn>_S<slave_sn>_<label>`;
- field `<channel_id>_<unit>` holds the value;
- tags: campaign, channel_id, channel_unit, channel_label, channel_name,
  device (`MV2`), device_type, device_subtype (master only), device_master_sn,
  device_sn. No file name tag: it would multiply series cardinality.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from powerview.formats import Column, Header

MEASUREMENT = "electrical"
DEVICE = "MV2"


@dataclass(frozen=True, slots=True)
class Series:
    """Where one file column lands in InfluxDB."""

    column: Column
    channel_id: str
    label: str
    field: str
    tags: dict[str, str]


def series_for(header: Header, campaign: str) -> tuple[Series, ...]:
    """One Series per column of `header`, for a file of `campaign`."""
    master = header.master_sn
    voltages = 3 if header.phase == "tri" else 1
    master_seen = 0
    per_slave: Counter[str] = Counter()
    result = []
    for column in header.columns:
        tags = {"campaign": campaign}
        if column.serial == master:
            master_seen += 1
            if master_seen <= voltages:
                label = f"U{master_seen}"
            else:
                label = f"Ch{master_seen - voltages}"
            channel_id = f"M{master}_{label}"
            tags |= {"device_type": "master", "device_subtype": header.phase}
        else:
            per_slave[column.serial] += 1
            label = f"Ch{per_slave[column.serial]}"
            channel_id = f"M{master}_S{column.serial}_{label}"
            tags["device_type"] = "slave"
        tags |= {
            "channel_id": channel_id,
            "channel_unit": column.unit,
            "channel_label": label,
            "channel_name": column.name,
            "device": DEVICE,
            "device_master_sn": master,
            "device_sn": column.serial,
        }
        result.append(Series(column, channel_id, label, f"{channel_id}_{column.unit}", tags))
    return tuple(result)
