"""Chain files read lazily: `open_chain` maps every tensor of a safetensors file read-only, `ChainStack` views one
mapped (D, n, P) array per chain as (C, D, n, P), `read_draws` copies a block of draws with a plain file read,
`written_draws` and `chain_seconds` read a chain's counters without its data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bif.errors import CacheError


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "BF16": None}


def read_draws(array: np.ndarray, first: int, last: int) -> np.ndarray:
    """array[first:last] as a new in-memory array; read with a plain file read when `array` is a memmap (so the
    pages do not stay mapped into this process)."""
    if isinstance(array, np.memmap) and array.flags.c_contiguous and array.filename:
        per = int(np.prod(array.shape[1:], dtype=np.int64))
        last = min(last, array.shape[0])
        out = np.empty((max(0, last - first), *array.shape[1:]), dtype=array.dtype)
        if out.size:
            with open(array.filename, "rb") as f:
                f.seek(array.offset + first * per * array.dtype.itemsize)
                f.readinto(memoryview(out).cast("B"))
        return out
    return np.array(array[first:last])


def written_draws(chain: dict[str, np.ndarray]) -> int:
    """Complete draws of a chain opened with `open_chain`: its `written` counter (read it before the data; a
    chain file from `save_chain`, which has none, is whole)."""
    if "written" in chain:
        return int(np.array(chain["written"])[0])
    return next(v.shape[0] for k, v in chain.items() if k.startswith("losses."))


def chain_seconds(path: Path) -> float:
    """The `seconds` metadata of a chain file (0 when absent)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            return float(json.loads(f.read(n)).get("__metadata__", {}).get("seconds", 0.0))
    except (OSError, ValueError):
        return 0.0


def open_chain(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a chain (or any safetensors file of F32/F16/F64/I64 tensors) as a read-only memmap.

    Nothing is read until it is indexed. CacheError if the file is not a whole safetensors file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or 8 + n > size:
                raise ValueError("bad header length")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        raise CacheError(f"Stored chain {path.name} is unreadable ({e}). Delete the run and compute it again.") from e
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        dtype = _ST_DTYPES.get(e["dtype"])
        begin, end = e["data_offsets"]
        if dtype is None or 8 + n + end > size:
            raise CacheError(f"Stored chain {path.name}: tensor {name} cannot be mapped. Delete and recompute.")
        shape = tuple(e["shape"])
        out[name] = (np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=shape) if end > begin
                     else np.zeros(shape, dtype))
    return out


class ChainStack:
    """A read-only (C, D, n, P) view over one memory-mapped (D, n, P) array per chain, never loaded whole.

    Indexing that keeps whole chains (`stack[1:]`, `stack[[0, 2]]`) returns another ChainStack; any other index
    reads just what it selects, chain by chain (`stack[:, :, 5]` -> (C, D, P) ndarray). `np.asarray(stack)`
    loads everything: avoid it for large runs; `LossTrace.series` streams instead.
    """

    def __init__(self, parts: list[np.ndarray]):
        if not parts:
            raise ValueError("ChainStack needs at least one chain")
        self.parts = list(parts)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.parts), *self.parts[0].shape)

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    @property
    def ndim(self) -> int:
        return 1 + self.parts[0].ndim

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if first is Ellipsis:
            first, rest = slice(None), ((Ellipsis,) + rest if len(rest) < 3 else rest)
        picked = list(range(len(self.parts)))[first] if isinstance(first, slice) else first
        if isinstance(picked, (int, np.integer)):
            return np.asarray(self.parts[int(picked)][rest] if rest else self.parts[int(picked)])
        picked = [int(c) for c in np.asarray(picked).reshape(-1)]
        if all(isinstance(r, slice) and r == slice(None) for r in rest):
            return ChainStack([self.parts[c] for c in picked])
        return np.stack([np.asarray(self.parts[c][rest]) for c in picked])

    def __array__(self, dtype=None, copy=None):
        out = np.stack([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self, dtype=dtype)

    def chunks(self, max_bytes: int = 1 << 26):
        """(chain, first draw, block (d, n, P)) blocks of at most ~max_bytes each, in chain and draw order."""
        D, n, P = self.parts[0].shape
        step = max(1, max_bytes // max(1, n * P * self.dtype.itemsize))
        for c, part in enumerate(self.parts):
            for d0 in range(0, D, step):
                yield c, d0, read_draws(part, d0, d0 + step)
