"""Files only their owner may read (tokens, passwords, the stack's admin settings).

Written to a temporary name beside the target, then renamed: a reader never
sees half a secret, and a crash leaves the old file whole.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically; the folder must exist."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # a leftover temporary file keeps its old mode through O_CREAT
    os.replace(tmp, path)
