"""Checksums that stored tensor files carry from the moment they are written (chains, shards, stored draws, inputs).

A file's digest is computed from the bytes its writer put there, in memory, while writing them, and stored in the
file's own safetensors metadata (`__metadata__["bif_sha256"]`), so a file damaged afterwards (a flipped byte, a
truncation, an edit) is caught before a run is sealed, and a resume recomputes it instead of sealing it.

Digest: sha256 over, for each tensor in name order, the sha256 of each of its pieces in order. A piece is one draw
(one slice of the first axis) for tensors named `losses.*` or `delta.*` (written draw by draw, in any order), and
the whole tensor otherwise. The digest is independent of the file's layout and of how writes were split.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

KEY = "bif_sha256"
PLACEHOLDER = "0" * 64  # same width as a digest, so a preallocated header can be rewritten in place
PER_DRAW = ("losses.", "delta.")
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "I8": 1, "I16": 2}


def per_draw(name: str) -> bool:
    return name.startswith(PER_DRAW)


class Digest:
    """Accumulates piece digests as a writer writes: `add(name, index, raw_bytes)`; `hexdigest()` at the end."""

    def __init__(self):
        self.pieces: dict[str, dict[int, bytes]] = {}

    def add(self, name: str, index: int, raw) -> None:
        self.pieces.setdefault(name, {})[index] = hashlib.sha256(memoryview(raw).cast("B")).digest()

    def add_array(self, name: str, first: int, arr: np.ndarray) -> None:
        """A block of draws (first axis) of a per-draw tensor, or (first=0) a whole other tensor."""
        arr = np.ascontiguousarray(arr)
        if per_draw(name):
            for j in range(arr.shape[0]):
                self.add(name, first + j, arr[j].tobytes())
        else:
            self.add(name, 0, arr.tobytes())

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.pieces):
            for i in sorted(self.pieces[name]):
                h.update(self.pieces[name][i])
        return h.hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """The digest of tensors about to be saved (their bytes as stored)."""
    d = Digest()
    for name, t in tensors.items():
        raw = t.detach().contiguous().cpu()
        raw = raw.view(torch.uint8) if raw.dtype == torch.bfloat16 else raw
        arr = raw.numpy()
        if per_draw(name) and arr.ndim:
            for j in range(arr.shape[0]):
                d.add(name, j, arr[j].tobytes())
        else:
            d.add(name, 0, arr.tobytes())
    return d.hexdigest()


def save_checked(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    """`files.save_tensors` with the digest in the file's metadata."""
    from bif.core.files import save_tensors

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_tensors(tensors, path, {**(metadata or {}), KEY: tensors_digest(tensors)})


def _read_header(path: Path) -> tuple[dict, int, int]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or 8 + n > size:
            raise ValueError("bad header length")
        return json.loads(f.read(n)), n, size


def problem(path: Path) -> str | None:
    """None when `path` is whole and its bytes match the digest it carries; else what is wrong (a short phrase)."""
    path = Path(path)
    try:
        header, n, size = _read_header(path)
        stored = (header.pop("__metadata__", None) or {}).get(KEY)
        if not stored or stored == PLACEHOLDER:
            return "it carries no checksum (written before checksums, or never finished)"
        d = Digest()
        with open(path, "rb") as f:
            for name, e in header.items():
                begin, end = e["data_offsets"]
                if 8 + n + end > size:
                    return "it is truncated"
                f.seek(8 + n + begin)
                shape = e["shape"]
                if per_draw(name) and shape:
                    piece = (end - begin) // max(shape[0], 1)
                    for j in range(shape[0]):
                        d.add(name, j, f.read(piece))
                else:
                    d.add(name, 0, f.read(end - begin))
        if 8 + n + max((e["data_offsets"][1] for e in header.values()), default=0) != size:
            return "its size is wrong"
        return None if d.hexdigest() == stored else "its contents do not match its checksum"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"it is unreadable ({e})"


def intact(path: Path) -> bool:
    return Path(path).exists() and problem(path) is None


def seal_if_intact(dist, folder: Path, paths: list[Path], sealed_names: list[str], what: str, again: str) -> None:
    """Check every file of an added set (`paths`) against its own checksum, then seal `folder` (rank 0 only).

    dist: the process group (bif.dist.distributed; is_main, all_ok, barrier). A damaged file is removed and the set
    is refused with a CacheError naming it, `what` the set is ("the new query set") and what to do (`again`).
    """
    from bif.core.files import seal
    from bif.errors import CacheError

    damaged = [p for p in paths if not intact(p)] if dist.is_main else []
    if not dist.all_ok(not damaged):
        for p in damaged:
            p.unlink(missing_ok=True)
        raise CacheError(f"{', '.join(p.name for p in damaged) or 'A file'} of {what} changed on disk before it was "
                         f"sealed (a failing disk, or another program writing there); it was removed. {again}")
    if dist.is_main:
        seal(folder, sealed_names)
    dist.barrier()
