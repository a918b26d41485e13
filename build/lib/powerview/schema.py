"""Device columns → InfluxDB series, exactly as the original system wrote them.

Measurement `electrical`, one point per (timestamp, channel):
- label and role (master or slave) come from the file's format
  (`DeviceFormat.channels`: for MV, `U1..U3` then `Ch1..` on a three-phase
  master, `U1` then `Ch1..` on a single-phase one, `Ch1..` per slave);
- `channel_id`: master `M<master_sn>_<label>`, slave `M<master_sn>_S<slave_sn>_<label>`;
- field `<channel_id>_<unit>` holds the value;
- tags: campaign, channel_id, channel_unit, channel_label, channel_name,
  device (the format's, `MV2`), device_type (the role), device_subtype (when
  the format gives one: an MV master's phase), device_master_sn, device_sn.
  No file name tag: it would multiply series cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass

from powerview.formats import Column, DeviceFormat, Header, format_for_tag

MEASUREMENT = "electrical"


@dataclass(frozen=True, slots=True)
class Series:
    """Where one file column lands in InfluxDB."""

    column: Column
    channel_id: str
    label: str
    field: str
    tags: dict[str, str]


def series_for(
    header: Header, campaign: str, family: DeviceFormat | None = None
) -> tuple[Series, ...]:
    """One Series per column of `header`, for a file of `campaign`.

    `family` is the format that read the header; by default the registered
    one reading `header.model_tag`.
    """
    if family is None:
        family = format_for_tag(header.model_tag)
    master = header.master_sn
    result = []
    for column, channel in zip(header.columns, family.channels(header), strict=True):
        label = channel.label
        tags = {"campaign": campaign, "device_type": channel.role}
        if channel.subtype is not None:
            tags["device_subtype"] = channel.subtype
        if channel.role == "master":
            channel_id = f"M{master}_{label}"
        else:
            channel_id = f"M{master}_S{column.serial}_{label}"
        tags |= {
            "channel_id": channel_id,
            "channel_unit": column.unit,
            "channel_label": label,
            "channel_name": column.name,
            "device": family.device,
            "device_master_sn": master,
            "device_sn": column.serial,
        }
        result.append(Series(column, channel_id, label, f"{channel_id}_{column.unit}", tags))
    return tuple(result)
