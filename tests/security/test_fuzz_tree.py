"""A hostile-tree fuzzer: random data trees of several companies, scanned and
ingested by the real `powerview queue scan` and `powerview worker` against the
real InfluxDB.

Each tree mixes valid exports with what a hostile client can leave below its
own folder: names of any bytes, symbolic links (to a sibling, a parent, another
company's file or folder, the state folder, a file outside the data root), hard
links to another company's file, truncated, binary and oversized files. The
invariants, checked on every tree:

- every point in bucket X comes from a valid file uploaded under X (each valid
  file has a master serial of its own, so a point names its file);
- every valid file is ingested exactly once: gone from where it was uploaded,
  present once in its `parsed/`, all its points in its company's bucket;
- nothing outside a company's own folder changed (other companies' files, the
  state folder, a file outside the data root);
- no process died: `queue scan` and `worker` end with a defined status (0 or 1)
  and no traceback.

CI runs a fixed budget of trees (`POWERVIEW_FUZZ_TREES`, default 12);
`make fuzz` runs many more and prints how many trees and files were tried.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from influxdb_client import InfluxDBClient

from tests.conftest import InfluxInstance
from tests.factories import Export
from tests.integration.helpers_events import delete_bucket, influx_env, make_site, run

TREES = int(os.environ.get("POWERVIEW_FUZZ_TREES", "12"))
# Shrinking a failing tree can take minutes: CI shows the failing tree as found,
# `make fuzz` (POWERVIEW_FUZZ_RANDOM=1) shrinks it to a minimal one.
EXPLORE = os.environ.get("POWERVIEW_FUZZ_RANDOM") == "1"
TRIED: Counter[str] = Counter()  # trees and files tried in this process (printed by make fuzz)

NAME_BYTES = st.binary(min_size=1, max_size=24).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")
)
VALID_NAME = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True).filter(
    lambda s: s not in ("parsed", "error")
)

HOSTILE_KINDS = (
    "truncated",  # a block file cut before END_DATA
    "binary",  # NUL bytes
    "long_line",  # one line far longer than any real row
    "byte_name",  # a valid export under a name of any bytes
    "link_sibling",  # symlink to a valid file beside it
    "link_parent",  # symlink to the device folder's parent
    "link_other_file",  # symlink to another company's valid file
    "link_other_dir",  # the device folder's parsed/ made a symlink into another company
    "link_state",  # symlink to the state folder's queue
    "link_outside",  # symlink to a file outside the data root
    "hardlink_other",  # hard link to another company's valid file
    "dir_link_other",  # a device folder that is a symlink to another company's device folder
)


@dataclass
class Plan:
    """One generated tree: per company, its device folders, valid files and hostile items."""

    companies: list[str]
    devices: dict[str, list[tuple[str, str]]]  # company -> [(campaign, device)]
    valid: list[tuple[int, int, int]]  # (company index, device index, rows)
    hostile: list[tuple[str, int, int, bytes]]  # (kind, company index, device index, name)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    run_id = secrets.token_hex(3)
    count = draw(st.integers(min_value=2, max_value=3))
    companies = [f"fz{run_id}c{i}" for i in range(count)]
    devices = {
        company: draw(st.lists(st.tuples(VALID_NAME, VALID_NAME), min_size=1, max_size=2))
        for company in companies
    }
    valid = draw(
        st.lists(
            st.tuples(
                st.integers(0, count - 1), st.integers(0, 1), st.integers(min_value=1, max_value=6)
            ),
            min_size=1,
            max_size=6,
        )
    )
    hostile = draw(
        st.lists(
            st.tuples(
                st.sampled_from(HOSTILE_KINDS),
                st.integers(0, count - 1),
                st.integers(0, 1),
                NAME_BYTES,
            ),
            max_size=8,
        )
    )
    return Plan(companies, devices, valid, hostile)


@dataclass
class Tree:
    """What was laid out, and what each company's bucket may hold afterwards."""

    root: Path
    # company -> serial -> points: valid uploads, which must all be in.
    expected: dict[str, Counter[str]] = field(default_factory=dict)
    # company -> serials that may be in its bucket or not (a file PowerView may
    # set aside: an odd name, a device folder whose parsed/ a client replaced).
    maybe: dict[str, Counter[str]] = field(default_factory=dict)
    valid_files: list[tuple[Path, bytes]] = field(default_factory=list)
    untouchable: dict[Path, bytes] = field(default_factory=dict)  # must stay byte-identical
    files: int = 0


def _device_dir(root: Path, plan: Plan, company_index: int, device_index: int) -> Path:
    company = plan.companies[company_index]
    folders = plan.devices[company]
    campaign, device = folders[device_index % len(folders)]
    path = root / company / campaign / device
    path.mkdir(parents=True, exist_ok=True)
    return path


def lay_out(plan: Plan, root: Path, state: Path, outside: Path) -> Tree:
    tree = Tree(
        root=root,
        expected={c: Counter() for c in plan.companies},
        maybe={c: Counter() for c in plan.companies},
    )
    first_valid: dict[int, Path] = {}
    serial_of: dict[Path, tuple[str, str]] = {}  # valid file -> (company, serial)
    for number, (ci, di, rows) in enumerate(plan.valid):
        serial = str(10_000_000 + number)
        export = Export(master_sn=serial, rows=rows, seed=number)
        path = _device_dir(root, plan, ci, di) / f"T302_{number:03d}.tsv"
        export.write(path)
        tree.expected[plan.companies[ci]][serial] += rows * export.width
        tree.valid_files.append((path, path.read_bytes()))
        serial_of[path] = (plan.companies[ci], serial)
        first_valid.setdefault(ci, path)
        tree.files += 1
    secret = outside / "secret.tsv"
    secret.write_bytes(Export(master_sn="66666666").text().encode())
    tree.untouchable[secret] = secret.read_bytes()
    for number, (kind, ci, di, raw_name) in enumerate(plan.hostile):
        tree.files += 1
        folder = _device_dir(root, plan, ci, di)
        others = [i for i in first_valid if i != ci]
        target = first_valid[others[0]] if others else None
        where = folder / f"h{number}_{kind}.tsv"
        if kind == "truncated":
            text = Export(master_sn="77777777", rows=5).text()
            where.write_text(text[: len(text) // 2])
        elif kind == "binary":
            where.write_bytes(b"START_HEADER\n\x00\x01\x02" * 50)
        elif kind == "long_line":
            where.write_bytes(b"0" * (4 << 20) + b"\n")
        elif kind == "byte_name":
            odd = Path(os.fsdecode(os.path.join(os.fsencode(folder), raw_name + b".tsv")))
            if not os.path.lexists(odd):
                serial = str(88_000_000 + number)
                export = Export(master_sn=serial, rows=2)
                export.write(odd)
                tree.maybe[plan.companies[ci]][serial] += 2 * export.width
        elif kind == "link_sibling" and tree.valid_files:
            os.symlink(tree.valid_files[0][0], where)
        elif kind == "link_parent":
            os.symlink(folder.parent, where)
        elif kind == "link_other_file" and target is not None:
            os.symlink(target, where)
        elif kind == "link_other_dir" and target is not None:
            if not os.path.lexists(folder / "parsed"):
                os.symlink(target.parent, folder / "parsed")
        elif kind == "link_state":
            os.symlink(state / "queue.sqlite3", where)
        elif kind == "link_outside":
            os.symlink(secret, where)
        elif kind == "hardlink_other" and target is not None:
            os.link(target, where)
        elif kind == "dir_link_other" and target is not None:
            linked = folder.parent / f"linked{number}"
            if not os.path.lexists(linked):
                os.symlink(target.parent, linked)
    for path, content in list(tree.valid_files):
        company, serial = serial_of[path]
        if path.stat().st_nlink > 1:
            # Hard-linked from elsewhere: not a plain upload any more, refused.
            tree.valid_files.remove((path, content))
            del tree.expected[company][serial]
        elif (path.parent / "parsed").is_symlink():
            # Its parsed/ was replaced by a link: PowerView may ingest it or set it aside.
            tree.valid_files.remove((path, content))
            tree.maybe[company][serial] = tree.expected[company].pop(serial)
    return tree


_BY_SERIAL = """
from(bucket: bucket)
  |> range(start: 0, stop: 2100-01-01T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "electrical")
  |> group(columns: ["device_master_sn"])
  |> count()
"""


def points_by_serial(client: InfluxDBClient, bucket: str) -> Counter[str]:
    if client.buckets_api().find_bucket_by_name(bucket) is None:
        return Counter()
    found: Counter[str] = Counter()
    for table in client.query_api().query(_BY_SERIAL, params={"bucket": bucket}):
        for record in table.records:
            found[str(record.values["device_master_sn"])] += int(record.get_value())
    return found


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@settings(
    max_examples=TREES,
    deadline=None,
    derandomize=not EXPLORE,
    phases=list(Phase) if EXPLORE else [Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=plans())
def test_hostile_trees_keep_every_invariant(plan: Plan, influxdb: InfluxInstance) -> None:
    with tempfile.TemporaryDirectory(prefix="pv-fuzz-") as home_text:
        home = Path(home_text)
        site = make_site(home)
        site.state.mkdir(mode=0o700)
        outside = home / "outside"
        outside.mkdir()
        tree = lay_out(plan, site.data, site.state, outside)
        before = {path: _digest(path) for path in tree.untouchable}
        env = influx_env(site, influxdb, POWERVIEW_MAX_LINE_BYTES="1048576")
        client = influxdb.client()
        try:
            for args in (["queue", "scan"], ["worker", "--until-idle", "--scan-interval", "0"]):
                done, _ = run(args, env, home, timeout=300)
                assert done.returncode in (0, 1), f"{args}: {done.returncode}\n{done.stderr}"
                assert "Traceback" not in done.stderr, done.stderr
            for company in plan.companies:
                found = points_by_serial(client, company)
                for serial, points in found.items():
                    wanted = tree.expected[company].get(serial) or tree.maybe[company].get(serial)
                    assert points == wanted, f"{company}: {points} points of serial {serial}"
                missing = set(tree.expected[company]) - set(found)
                assert not missing, f"{company}: valid files not ingested: {missing}"
            for path, content in tree.valid_files:
                assert not os.path.lexists(path), f"{path} was not ingested"
                copies = [
                    p for p in (path.parent / "parsed").glob("*.tsv") if p.read_bytes() == content
                ]
                assert len(copies) == 1, f"{path}: {len(copies)} copies in parsed/"
            for path, digest in before.items():
                assert path.exists(), f"{path} was removed"
                assert _digest(path) == digest, f"{path} was changed"
            TRIED["trees"] += 1
            TRIED["files"] += tree.files
        finally:
            for company in plan.companies:
                delete_bucket(client, company)
            client.close()
