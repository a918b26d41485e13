"""Kill `powerview ingest` with SIGKILL at random moments, run it again to the end:
every file must end in exactly one place and every point be in InfluxDB once.

The command runs as a real subprocess (the installed console script) with its
settings in the environment, against the session's InfluxDB.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import InfluxInstance
from tests.factories import Export
from tests.integration.helpers_ingest import (
    count_points,
    drop_buckets,
    new_company,
    outcome_path,
    tree_files,
    without_reasons,
)

ROWS = 2000
WIDTH = 12  # three-phase master: 3 voltages + 3 channels, one slave with 6
GOOD_FILES = 35
KILLS = 4
POWERVIEW = Path(sys.executable).parent / "powerview"


@dataclass
class Tree:
    root: Path
    companies: tuple[str, str]
    contents: dict[str, bytes]  # relative path → bytes, as generated
    good: set[str]  # relative paths of the files that must end in parsed/


def _good_export(i: int) -> Export:
    block = i % 2 == 0
    return Export(
        master_sn=f"0200{3000 + i % 7:04d}",
        slaves=(f"0400{5000 + i % 7:04d}",),
        slave_channels=6,
        master_channels=3,
        phase="tri",
        tag="MV_T302_V003" if block else "MV_T302_V002",
        block=block,
        rows=ROWS,
        start=dt.datetime(2025, 1, 1) + dt.timedelta(days=2 * i),  # no overlap between files
        step_s=60,
        seed=i,
    )


def _bad_contents() -> dict[str, bytes]:
    headers_only = Export(master_sn="02003900", rows=0, block=False, tag="MV_T302_V002")
    unknown_tag = Export(master_sn="02003901", rows=5, block=False, tag="XX_T999_V001")
    clock_reset = Export(
        master_sn="02003902",
        rows=50,
        block=False,
        tag="MV_T302_V002",
        start=dt.datetime(2020, 1, 1),
    )
    return {
        "02003899/T302_empty.tsv": b"",
        "02003900/T302_headers_only.tsv": headers_only.text().encode(),
        "02003901/T302_unknown_tag.tsv": unknown_tag.text().encode(),
        "02003902/T302_clock_reset.tsv": clock_reset.text().encode(),
        "02003903/T302_binary.tsv": bytes(random.Random(7).randrange(256) for _ in range(4096)),
    }


def build_tree(root: Path) -> Tree:
    companies = (new_company(), new_company())
    contents: dict[str, bytes] = {}
    good: set[str] = set()
    for i in range(GOOD_FILES):
        export = _good_export(i)
        assert export.width == WIDTH
        relative = (
            f"{companies[i % 2]}/camp{i % 3}/{export.master_sn}/"
            f"T302_{export.start:%y%m%d}_000000_UTC.tsv"
        )
        contents[relative] = export.text().encode()
        good.add(relative)
    for j, (tail, data) in enumerate(sorted(_bad_contents().items())):
        contents[f"{companies[j % 2]}/bad/{tail}"] = data
    for relative, data in contents.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Tree(root, companies, contents, good)


def moved(root: Path) -> int:
    """Files already in a parsed/ or error/ folder."""
    return sum(1 for p in root.rglob("*") if p.is_file() and p.parent.name in ("parsed", "error"))


@pytest.fixture
def crash_env(
    influxdb: InfluxInstance, tmp_path: Path
) -> Iterator[tuple[Tree, dict[str, str], Path]]:
    tree = build_tree(tmp_path / "data")
    meta = f"meta_{uuid.uuid4().hex[:10]}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POWERVIEW_", "INFLUXDB_", "TSV_"))
    }
    env |= {
        "INFLUXDB_URL": influxdb.url,
        "INFLUXDB_ORG": influxdb.org,
        "INFLUXDB_ADMIN_TOKEN": influxdb.token,
        "TSV_META_BUCKET": meta,
        "TSV_REPORT_DIR": str(tmp_path / "reports"),
        "POWERVIEW_STATE_DIR": str(tmp_path / "state"),
    }
    (tmp_path / "work").mkdir()  # no .env or .powerview of the caller's is read
    try:
        yield tree, env, tmp_path / "work"
    finally:
        with influxdb.client() as client:
            drop_buckets(client, [*tree.companies, meta])


def test_runs_killed_at_random_moments_then_rerun_lose_and_double_nothing(
    influxdb: InfluxInstance, crash_env: tuple[Tree, dict[str, str], Path]
) -> None:
    tree, env, workdir = crash_env
    root = tree.root
    command = [str(POWERVIEW), "ingest", str(root), "--data-root", str(root)]
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 0
    for _ in range(KILLS):
        before = moved(root)
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            # Wait until this run has moved a file (so it is mid-run), then a little more.
            while process.poll() is None and moved(root) == before:
                assert time.monotonic() < deadline, "powerview ingest made no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.8))
            if process.poll() is None:
                process.kill()  # SIGKILL: no cleanup of any kind
                kills += 1
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    assert kills >= 2, f"the runs ended before they could be killed (seed {seed})"
    assert moved(root) < len(tree.contents), f"nothing left for the last run (seed {seed})"

    left_bad = any(
        (root / relative).exists() for relative in tree.contents if relative not in tree.good
    )
    final = subprocess.run(
        command, env=env, cwd=workdir, capture_output=True, text=True, timeout=120, check=False
    )
    assert final.returncode == (1 if left_bad else 0), (seed, final.stdout, final.stderr)

    # Every file in exactly one place, under its own name, intact.
    expected = {
        outcome_path(relative, "parsed" if relative in tree.good else "error"): data
        for relative, data in tree.contents.items()
    }
    assert without_reasons(tree_files(root), every_one=False) == expected, f"seed {seed}"

    # Every point once: rows x channels summed over the good files of each company.
    with influxdb.client() as client:
        for company in tree.companies:
            files = [r for r in tree.good if r.startswith(f"{company}/")]
            assert count_points(client, company) == len(files) * ROWS * WIDTH, f"seed {seed}"
