"""A chain file written while the chain is produced: `ChainWriter` preallocates a safetensors file and writes each
draw with positioned writes (nothing buffered, nothing mapped), keeping the checksum of every piece
(bif.core.integrity); `finish` stores it in the header and renames the file into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from bif.core import integrity
from bif.core.files import close_into_place


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
