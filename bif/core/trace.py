"""LossTrace: per-position losses of observed sets at every draw, plus the sampling loss at every step.

Layout: `losses[name]` (C, D, n, P) float32/float16, `masks[name]` (n, P) bool, `init[name]` (n, P) losses at w*,
`sampling_loss` (C, S) float64. Stored as one safetensors file per chain (so a run resumes chain by chain) with
the arguments as JSON beside them. `ChainWriter` writes a chain file draw by draw with positioned writes (a
trace is never whole in memory while it is produced); `open_chain` and `ChainStack` read it back lazily.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from bif.errors import CacheError
from bif.core import integrity
from bif.core.files import close_into_place


@dataclass
class ChainTrace:
    """One chain: `losses[name]` (D, n, P) per observed set, `sampling_loss` (S,) minibatch loss at every step."""

    losses: dict[str, torch.Tensor]
    sampling_loss: torch.Tensor
    seconds: float


@dataclass
class LossTrace:
    losses: dict[str, np.ndarray]  # name -> (C, D, n, P); a ChainStack (memory-mapped) for large runs
    masks: dict[str, np.ndarray]  # name -> (n, P) bool
    init: dict[str, np.ndarray]  # name -> (n, P) at w*
    sampling_loss: np.ndarray  # (C, S)

    @property
    def chains(self) -> int:
        return self.sampling_loss.shape[0]

    @property
    def draws(self) -> int:
        return next(iter(self.losses.values())).shape[1]

    @classmethod
    def from_chains(cls, chains: list[ChainTrace], masks: dict[str, torch.Tensor],
                    init: dict[str, torch.Tensor]) -> "LossTrace":
        names = list(masks)
        return cls(
            losses={k: np.stack([c.losses[k].float().numpy() for c in chains]) for k in names},
            masks={k: masks[k].bool().numpy() for k in names},
            init={k: init[k].float().numpy() for k in names},
            sampling_loss=np.stack([c.sampling_loss.numpy() for c in chains]),
        )

    def series(self, name: str, rows=slice(None)) -> np.ndarray:
        """Sequence-level losses Σ_pos ℓ (C, D, n') of the chosen rows (sum, so −Cov is additive over tokens).

        A memory-mapped trace (`ChainStack`) is read in blocks of draws: memory is C·D·n' numbers, never C·D·n·P.
        """
        x, mask = self.losses[name], self.masks[name][rows]
        if not isinstance(x, ChainStack):
            return (x[:, :, rows].astype(np.float64) * mask).sum(-1)
        out = np.empty((x.shape[0], x.shape[1], mask.shape[0]))
        for c, d0, block in x.chunks():
            out[c, d0:d0 + len(block)] = (block[:, rows].astype(np.float64) * mask).sum(-1)
        return out


def save_chain(path: Path, chain: ChainTrace, dtype: str = "float32") -> None:
    """Write one chain atomically (temp file + rename), carrying its checksum (bif.core.integrity)."""
    tdtype = torch.float16 if dtype == "float16" else torch.float32
    tensors = {f"losses.{k}": v.to(tdtype).contiguous() for k, v in chain.losses.items()}
    tensors["sampling_loss"] = chain.sampling_loss.contiguous()
    integrity.save_checked(tensors, path, metadata={"seconds": f"{chain.seconds:.3f}"})


def load_chain(path: Path, names: list[str], draws: int, steps: int) -> ChainTrace:
    """Read one chain and check its shapes; CacheError if it is unreadable or truncated."""
    try:
        t = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CacheError(f"Stored chain {path.name} is unreadable ({e}). Delete the run and compute it again.") from e
    missing = [k for k in names if f"losses.{k}" not in t] + ([] if "sampling_loss" in t else ["sampling_loss"])
    if missing:
        raise CacheError(f"Stored chain {path.name} lacks {missing}. Delete the run and compute it again.")
    bad = [k for k in names if t[f"losses.{k}"].shape[0] != draws] + (
        ["sampling_loss"] if t["sampling_loss"].shape[0] != steps else [])
    if bad:
        raise CacheError(f"Stored chain {path.name} has the wrong number of draws in {bad}. Delete and recompute.")
    return ChainTrace(losses={k: t[f"losses.{k}"].float() for k in names}, sampling_loss=t["sampling_loss"],
                      seconds=0.0)


# ------------------------------------------------------------------ streaming: chains written while they are produced

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "BF16": None}
_NP_TO_ST = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
             np.dtype(np.int64): "I64"}
_SECONDS_WIDTH = 14  # fixed width of the `seconds` metadata, so the header can be rewritten in place


def _header(specs: dict[str, tuple[tuple[int, ...], np.dtype]], seconds: float,
            digest: str = integrity.PLACEHOLDER) -> tuple[bytes, dict]:
    """safetensors header bytes (padded to 8) and each tensor's (begin, end) in the data buffer."""
    offsets, pos, entries = {}, 0, {}
    for name, (shape, dtype) in specs.items():
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        offsets[name] = (pos, pos + size)
        entries[name] = {"dtype": _NP_TO_ST[np.dtype(dtype)], "shape": list(shape), "data_offsets": [pos, pos + size]}
        pos += size
    entries["__metadata__"] = {"seconds": f"{seconds:{_SECONDS_WIDTH}.3f}", integrity.KEY: digest}
    raw = json.dumps(entries, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    return len(raw).to_bytes(8, "little") + raw, offsets


class ChainWriter:
    """One chain file written draw by draw into a preallocated safetensors file (positioned writes, no buffer).

    The file is `<path>.partial` until `finish` renames it to `path`, so a finished file is always whole. Only
    one draw of one observed set is in memory at a time, and nothing is mapped (the process's resident memory
    does not grow with the trace). The layout equals `save_chain`'s: `load_chain`, `open_chain` and `open_run`
    read both. The digest of every piece written is kept in memory and stored in the header by `finish`
    (bif.core.integrity), so the file carries its own checksum from the moment it is written.

    Args:
        path: the final file, e.g. run_dir / "chain_000.safetensors".
        shapes: observed set -> (draws, rows, positions).
        steps: SGLD steps of the chain (length of `sampling_loss`).
        dtype: 'float32' or 'float16' storage of the losses.
        extra: more tensors, name -> (shape, numpy dtype), written with `put` (e.g. shard row indices).
    """

    def __init__(self, path: Path, shapes: dict[str, tuple[int, int, int]], steps: int, dtype: str = "float32",
                 extra: dict[str, tuple[tuple[int, ...], type]] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_suffix(".partial")
        ldtype = np.float16 if dtype == "float16" else np.float32
        specs = {f"losses.{k}": (tuple(s), np.dtype(ldtype)) for k, s in shapes.items()}
        specs["sampling_loss"] = ((steps,), np.dtype(np.float64))
        specs["written"] = ((1,), np.dtype(np.int64))  # draws complete in every observed set (`commit`)
        specs.update({k: (tuple(s), np.dtype(d)) for k, (s, d) in (extra or {}).items()})
        self.specs = specs
        head, self.offsets = _header(specs, 0.0)
        self.head_len = len(head)
        self.digest = integrity.Digest()
        self.f = open(self.tmp, "w+b")
        self.f.write(head)
        self.f.truncate(self.head_len + max((e for _, e in self.offsets.values()), default=0))  # sparse

    def _pwrite(self, name: str, at: int, values, first: int = 0) -> None:
        shape, dtype = self.specs[name]
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        arr = np.ascontiguousarray(values, dtype=dtype)
        self.digest.add_array(name, first, arr)
        if arr.size:
            os.pwrite(self.f.fileno(), memoryview(arr).cast("B"), self.head_len + self.offsets[name][0] + at)

    def write(self, name: str, draw: int, values) -> None:
        """Losses of observed set `name` at draw `draw`: (rows, positions), any float dtype (torch or numpy)."""
        self.write_block(name, draw, np.asarray(values.detach().float().cpu() if isinstance(values, torch.Tensor)
                                                else values)[None])

    def write_block(self, name: str, first_draw: int, block) -> None:
        """Losses of draws first_draw, first_draw+1, ...: block (d, rows, positions)."""
        shape, dtype = self.specs[f"losses.{name}"]
        if tuple(block.shape[1:]) != tuple(shape[1:]) or first_draw + block.shape[0] > shape[0]:
            raise ValueError(f"block {tuple(block.shape)} at draw {first_draw} does not fit {name} {shape}")
        per_draw = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._pwrite(f"losses.{name}", first_draw * per_draw, block, first_draw)

    def commit(self, draws: int) -> None:
        """Mark the first `draws` draws complete (all observed sets written): readers of the partial file
        (`written_draws`) use no draw beyond it, so they never see a torn draw. Call after the data."""
        self._pwrite("written", 0, np.array([draws], dtype=np.int64))

    def put(self, name: str, values) -> None:
        """A whole extra tensor (or `sampling_loss`)."""
        shape, _ = self.specs[name]
        values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        if tuple(values.shape) != tuple(shape):
            raise ValueError(f"{name}: got shape {tuple(values.shape)}, expected {tuple(shape)}")
        self._pwrite(name, 0, values)

    def finish(self, sampling_loss, seconds: float) -> Path:
        """Write the sampling loss, the run time and the checksum, flush to disk and rename into place."""
        self.put("sampling_loss", sampling_loss)
        self.commit(next(shape[0] for k, (shape, _) in self.specs.items() if k.startswith("losses.")))
        missing = [k for k, (shape, _) in self.specs.items()
                   if len(self.digest.pieces.get(k, {})) != (shape[0] if integrity.per_draw(k) else 1)]
        if missing:
            raise ValueError(f"{self.path.name}: {missing} not completely written")
        head, _ = _header(self.specs, seconds, self.digest.hexdigest())
        assert len(head) == self.head_len
        os.pwrite(self.f.fileno(), head, 0)
        return close_into_place(self.f, self.tmp, self.path)

    def discard(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


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
