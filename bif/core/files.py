"""Files that other processes read while they are written: atomic JSON and safetensors writes, forgiving JSON
reads, and the checksums that seal a finished run."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from bif.layout import COMPLETE, VERIFIED


def write_json(path: Path, obj) -> None:
    """Write obj as JSON atomically (a temp file named by pid, then rename): readers never see half a file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def save_tensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """Write tensors as safetensors atomically (a temp file, then rename): a reader sees the old file or the new."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.replace(path)


def close_into_place(f, tmp: Path, path: Path) -> Path:
    """Flush and fsync the open file `f` (written at `tmp`), close it and rename it to `path`."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    Path(tmp).replace(path)
    return Path(path)


def read_json(path: Path) -> dict | None:
    """The JSON in path, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------ checksums of finished runs (COMPLETE)

RACY_S = 2.0  # files modified more recently than this are not recorded in VERIFIED

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def seal(folder: Path, names: list[str]) -> None:
    """Write folder/COMPLETE last: {name: sha256} of the given files. Its presence marks the folder finished."""
    write_json(folder / COMPLETE, {n: sha256(folder / n) for n in names})


def changed_files(folder: Path, rehash: bool = False) -> list[str]:
    """The files of a sealed folder that are missing or whose sha256 differs from COMPLETE's.

    A file is hashed again only when its size or modification time differ from the last time it was found
    intact (recorded in folder/VERIFIED, like git's index), so opening a large run twice does not read it twice;
    `rehash` hashes everything. As in git, a file modified less than RACY_S ago is not recorded (timestamps are
    coarse: a same-size edit within the same clock tick would look unchanged). An edit that restores both size
    and mtime is only caught with `rehash`.
    A COMPLETE that is missing or unreadable is itself reported as changed: nothing it sealed can be trusted.
    """
    sums = read_json(folder / COMPLETE)
    if not isinstance(sums, dict):
        return [COMPLETE]
    known = {} if rehash else (read_json(folder / VERIFIED) or {})
    bad, seen = [], {}
    for name, digest in sums.items():
        path = folder / name
        if not path.exists():
            bad.append(name)
            continue
        stamp = _stamp(path)
        if known.get(name) == [*stamp, digest] or sha256(path) == digest:
            if time.time_ns() - stamp[1] > RACY_S * 1e9:
                seen[name] = [*stamp, digest]
        else:
            bad.append(name)
    if seen != known:
        try:
            write_json(folder / VERIFIED, seen)
        except OSError:  # a read-only cache: just hash again next time
            pass
    return bad


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]
