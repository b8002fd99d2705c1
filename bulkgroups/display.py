"""How a path appears in a message: one way everywhere, so the same file reads the same in
an error, a warning and the summary."""

from __future__ import annotations

import os
from pathlib import Path


def shown(path: Path | str) -> str:
    """`path` relative to the current folder when it lies under it (as a user would type
    it), otherwise as it is."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return os.fspath(p)
