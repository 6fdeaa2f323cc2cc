"""Small JSON files that other processes read while they are written: atomic writes, forgiving reads."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, obj) -> None:
    """Write obj as JSON atomically (a temp file named by pid, then rename): readers never see half a file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def read_json(path: Path) -> dict | None:
    """The JSON in path, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
