"""Reports what the hostile-tree fuzzer tried (`make fuzz` and CI print it)."""

from __future__ import annotations

import pytest

from tests.security import test_fuzz_tree


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tried = test_fuzz_tree.TRIED
    if tried["trees"]:
        terminalreporter.write_line(
            f"hostile-tree fuzzer: {tried['trees']} trees, {tried['files']} files tried"
        )
