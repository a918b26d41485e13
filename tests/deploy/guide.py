"""The shell blocks of deploy/README.md that the deployment test runs, as the guide has them.

A block is run when the line before its ```sh fence is
`<!-- deploy-test: VARIANT [STAGE] -->`; STAGE `check` marks the blocks run
after the test's upload (the guide's final check). Everything else in the
guide is prose for the operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[2] / "deploy" / "README.md"
BLOCK = re.compile(
    r"^<!-- deploy-test: (?P<variant>[\w-]+)(?: (?P<stage>[\w-]+))? -->\n```sh\n(?P<body>.*?)^```$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    variant: str
    stage: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"deploy/README.md:{self.line}"


def blocks(variant: str) -> list[Block]:
    text = GUIDE.read_text()
    found = [
        Block(m["variant"], m["stage"] or "setup", m["body"], text.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(text)
    ]
    return [block for block in found if block.variant == variant]


# The guide's absolute paths that the test moves under its prefix (`powerview deploy --root`).
MOVED = re.compile(r"(?<![\w./-])/(etc|srv|var|opt)/")


def relocate(text: str, root: Path) -> str:
    return MOVED.sub(lambda m: f"{root}/{m.group(1)}/", text)


def substitute(texts: list[str], root: Path, replacements: dict[str, str]) -> list[str]:
    """The blocks with the test's prefix, then its names, ports and paths.

    Every replacement must be used: a guide that stops saying what the test
    replaces has drifted (the test would otherwise run something else).
    """
    moved = [relocate(text, root) for text in texts]
    unused = [old for old in replacements if not any(old in text for text in moved)]
    assert unused == [], f"deploy/README.md no longer says {unused}: update the guide or the test"
    out = []
    for text in moved:
        for old, new in replacements.items():
            text = text.replace(old, new)
        out.append(text)
    return out
