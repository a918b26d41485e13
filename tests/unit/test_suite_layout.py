"""The test command runs every test folder: a folder missing from pytest's
`testpaths` would pass CI without ever running (tests/sftpgo_standin once did)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_folder_holding_tests_is_in_testpaths() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    testpaths = set(config["tool"]["pytest"]["ini_options"]["testpaths"])
    holding = {
        str(path.parent.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if "testdata" not in path.parts
    }
    covered = {folder for folder in holding if any(
        folder == top or folder.startswith(f"{top}/") for top in testpaths
    )}  # fmt: skip
    assert holding - covered == set()
    assert all((REPO / top).is_dir() for top in testpaths)
