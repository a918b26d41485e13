"""The data tree: `<data_root>/<company>/<campaign>/<device_sn>/<file>.tsv`.

Names taken from paths end up in bucket names, Grafana uids, Flux queries,
Ansible variables and shell commands, so they all pass one strict rule here
first. Processed files move to `parsed/` or `error/` in their device folder,
never over an earlier file of the same name, and are never picked up again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from powerview.exceptions import NameRuleError
from powerview.upload_file import OUTCOME_DIRS

NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
NAME_RULE_TEXT = "1 to 63 ASCII letters, digits, '-' or '_', starting with a letter or digit"
# A company name is a bucket name: it may not be PowerView's run-summary bucket
# (its default name; a configured one comes through `check_company`), one of
# InfluxDB's system buckets, an outcome folder, or the name of the downsampled
# buckets a company gets later (`<company>_1h`, `_1d`, `_1w`). Compared without
# case, to stay clear of look-alikes.
RESERVED_COMPANY_NAMES = frozenset({"powerview_meta", "_monitoring", "_tasks", *OUTCOME_DIRS})
RESERVED_COMPANY_SUFFIXES = ("_1h", "_1d", "_1w")
DATA_SUFFIX = ".tsv"
# Temporary names of uploads in progress: SFTPGo atomic mode, WinSCP, rsync-style dot files.
_TEMPORARY_PREFIXES = (".",)
_TEMPORARY_SUFFIXES = (".filepart", ".part", ".tmp")


def check_name(kind: str, value: str) -> str:
    """Return `value` if it follows the name rule, else raise NameRuleError.

    A company name must also not be reserved (see `check_company`).
    """
    if NAME_RULE.fullmatch(value) is None or value in OUTCOME_DIRS:
        raise NameRuleError(f"{kind} name {value!r} is not allowed: use {NAME_RULE_TEXT}")
    if kind == "company":
        _refuse_reserved(value, RESERVED_COMPANY_NAMES)
    return value


def check_company(value: str, reserved: Iterable[str] = ()) -> str:
    """`check_name("company", value)`, also refusing the names the settings reserve.

    `reserved` is `Settings.reserved_company_names`: the configured meta bucket
    and POWERVIEW_RESERVED_NAMES.
    """
    check_name("company", value)
    _refuse_reserved(value, reserved)
    return value


def _refuse_reserved(value: str, reserved: Iterable[str]) -> None:
    lowered = value.lower()
    if lowered in {name.lower() for name in reserved}:
        raise NameRuleError(f"company name {value!r} is reserved: choose another name")
    if lowered.endswith(RESERVED_COMPANY_SUFFIXES):
        raise NameRuleError(
            f"company name {value!r} is reserved: names ending in "
            f"{', '.join(RESERVED_COMPANY_SUFFIXES)} are kept for downsampled buckets"
        )


@dataclass(frozen=True)
class Location:
    """Where a device file sits in the data tree, with its validated names."""

    data_root: Path
    company: str
    campaign: str
    device_sn: str
    path: Path

    @property
    def device_dir(self) -> Path:
        return self.path.parent


def relative_parts(path: Path, data_root: Path) -> tuple[str, ...] | None:
    """The parts of `path` below `data_root`, or None if it is outside."""
    try:
        return path.resolve().relative_to(data_root.resolve()).parts
    except ValueError:
        return None


def locate(path: Path, data_root: Path) -> Location:
    """Validate that `path` is `<company>/<campaign>/<sn>/<file>.tsv` under `data_root`."""
    parts = relative_parts(path, data_root)
    if parts is None:
        raise NameRuleError(f"{path} is outside the data root {data_root}")
    if len(parts) != 4:
        raise NameRuleError(
            f"{path} is not at <company>/<campaign>/<device_sn>/<file>.tsv under {data_root}"
        )
    company, campaign, device_sn, _ = parts
    return Location(
        data_root=data_root,
        company=check_name("company", company),
        campaign=check_name("campaign", campaign),
        device_sn=check_name("device", device_sn),
        path=path,
    )


def is_candidate(path: Path) -> bool:
    """A finished upload waiting to be ingested (not a temporary, not processed).

    Never a symbolic link: a client could plant one pointing at another
    company's file and have it processed.
    """
    name = path.name
    return (
        name.lower().endswith(DATA_SUFFIX)
        and not name.startswith(_TEMPORARY_PREFIXES)
        and not name.lower().endswith(_TEMPORARY_SUFFIXES)
        and path.parent.name not in OUTCOME_DIRS
        and not path.is_symlink()
    )


def find_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The candidate files named by `paths` (files, or folders searched deeply), sorted."""
    for path in paths:
        if path.is_dir():
            found: list[Path] = []
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in OUTCOME_DIRS and not d.startswith("."))
                found.extend(Path(folder) / f for f in files)
            yield from sorted(p for p in found if is_candidate(p))
        else:
            yield path


def data_root_for(paths: tuple[Path, ...], given: Path | None, configured: Path) -> Path:
    """The data root for operator-given paths: `given` (--data-root), else `configured`
    if it holds them all, else the root the first path's place in the layout implies."""
    if given is not None:
        return given
    if all(relative_parts(p, configured) is not None for p in paths):
        return configured
    first = paths[0].resolve()
    if first.is_dir():
        # A data tree, or a company, campaign or device folder in one: the depth of
        # the first file below it (<company>/<campaign>/<sn>/<file> is 4) tells which.
        found = next(find_files([first]), None)
        depth = len(found.relative_to(first).parts) if found is not None else 4
        if 1 <= depth < 4 and len(first.parents) > 3 - depth:
            return first.parents[3 - depth]
        return first
    return first.parents[3] if len(first.parents) > 3 else first.parent
