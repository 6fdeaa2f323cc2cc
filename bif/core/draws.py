"""Stored draws: the sampled parameters at every kept draw, as deltas from w*, one safetensors file per chain.

Layout of a draws file (`DrawWriter`, read by `open_draws`): one tensor `delta.<parameter name>` of shape
(D, *parameter shape) per sampled parameter (only those SGLD moves: `SamplerConfig.param_patterns`), stored in
float16 (default), bfloat16 or float32, and `written` (1,) int64: how many draws are complete. The file is
preallocated and written draw by draw with positioned writes; `written` is updated after each draw's data, so a
reader that reads `written` first never sees a torn draw. Everything is memory-mappable (bfloat16 included).

Precision: delta = w_draw − w* is computed in float32. Stored in float32, w* + delta reproduces the sampled
weights to float32 rounding (exactly when |delta| ≤ |w*|, Sterbenz); float16 keeps 11 significant bits of the
delta (relative error ≤ 2^-11 ≈ 4.9e-4 of the delta, not of the weight), bfloat16 8 bits (≤ 2^-8 ≈ 3.9e-3).
Losses scored at the stored draws then differ from the sampled ones by that fraction of how much the draw moved
them (tests/test_draws.py measures it against replay).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bif.core import integrity
from bif.core.config import DRAWS_DTYPES, KEEP_DRAWS
from bif.core.files import close_into_place
from bif.errors import CacheError, ConfigError
from bif.layout import RunFiles

_TORCH = {"float16": (torch.float16, "F16"), "bfloat16": (torch.bfloat16, "BF16"), "float32": (torch.float32, "F32")}
DRAW_DTYPES = {k: _TORCH[k] for k in DRAWS_DTYPES}
_ST_NUMPY = {"F16": np.float16, "F32": np.float32, "BF16": np.uint16, "I64": np.int64}
GiB = 1 << 30


def draws_budget() -> int:
    """Bytes that keep_draws='auto' may spend per run: BIF_DRAWS_BUDGET (GiB, default 12).

    12 GiB holds the demo run (0.8 M parameters x 400 draws in float16: 0.6 GiB) and SmolLM2-135M's last 2
    blocks (7.1 M parameters) at 800 draws (10.6 GiB), not SmolLM2 with all parameters (201 GiB at 800 draws).
    """
    try:
        return int(float(os.environ.get("BIF_DRAWS_BUDGET", "12")) * GiB)
    except ValueError:
        raise ConfigError("BIF_DRAWS_BUDGET must be a number of GiB, e.g. BIF_DRAWS_BUDGET=4.") from None


def draws_bytes(n_params: int, chains: int, draws: int, dtype: str) -> int:
    """Disk size of a run's stored draws: chains x draws x sampled parameters x bytes per number."""
    return chains * draws * n_params * DRAW_DTYPES[dtype][0].itemsize


@dataclass(frozen=True)
class DrawsDecision:
    keep: bool
    nbytes: int
    reason: str


def decide_keep(setting: str, nbytes: int, folder: Path | None = None, budget: int | None = None) -> DrawsDecision:
    """Whether a run keeps its draws: 'on' / 'off' as asked; 'auto' when nbytes fits the budget and half the free
    disk space of `folder` (ConfigError on any other setting)."""
    if setting not in KEEP_DRAWS:
        raise ConfigError(f"keep_draws must be one of {KEEP_DRAWS} (got {setting!r}).")
    if setting != "auto":
        return DrawsDecision(setting == "on", nbytes, f"keep_draws={setting}")
    budget = draws_budget() if budget is None else budget
    free = shutil.disk_usage(folder).free if folder is not None and Path(folder).exists() else None
    if nbytes > budget:
        return DrawsDecision(False, nbytes, f"{nbytes / GiB:.1f} GiB exceeds the budget of {budget / GiB:.1f} GiB "
                                            "(BIF_DRAWS_BUDGET); sample fewer parameters (--last-blocks) or set "
                                            "keep_draws=on")
    if free is not None and nbytes > free / 2:
        return DrawsDecision(False, nbytes, f"{nbytes / GiB:.1f} GiB exceeds half the free disk ({free / GiB:.1f} GiB)")
    return DrawsDecision(True, nbytes, f"{nbytes / GiB:.2f} GiB fits the budget of {budget / GiB:.1f} GiB")


def _header(specs: dict[str, tuple[tuple[int, ...], str, int]], metadata: dict[str, str]) -> tuple[bytes, dict]:
    """safetensors header bytes (padded to 8) and each tensor's data offset. specs: name -> (shape, dtype, itemsize)."""
    entries, offsets, pos = {}, {}, 0
    for name, (shape, st, size) in specs.items():
        n = int(np.prod(shape, dtype=np.int64)) * size
        entries[name] = {"dtype": st, "shape": list(shape), "data_offsets": [pos, pos + n]}
        offsets[name] = pos
        pos += n
    entries["__metadata__"] = metadata
    raw = json.dumps(entries, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % 8)
    return len(raw).to_bytes(8, "little") + raw, offsets | {"__end__": pos}


class DrawWriter:
    """One chain's stored draws, written draw by draw into a preallocated file (`<path>.partial` until `finish`).

    Args:
        path: the final file (bif.layout.RunFiles.draws(chain)).
        named: the sampled (name, parameter) pairs, the model at w* (their values now are taken as w*).
        draws: kept draws of the chain.
        dtype: 'float16', 'bfloat16' or 'float32' storage of the deltas.
    """

    def __init__(self, path: Path, named: list[tuple[str, torch.Tensor]], draws: int, dtype: str = "float16"):
        if dtype not in DRAW_DTYPES:
            raise ConfigError(f"draws_dtype must be one of {sorted(DRAW_DTYPES)} (got {dtype!r}).")
        self.path, self.tmp = Path(path), Path(path).with_suffix(".partial")
        self.dtype_name = dtype
        self.dtype, st = DRAW_DTYPES[dtype]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.w_star = [p.detach().float().cpu().clone() for p in self.params]
        self.draws = draws
        specs = {f"delta.{n}": ((draws, *p.shape), st, self.dtype.itemsize) for n, p in named}
        specs["written"] = ((1,), "I64", 8)
        self.specs = specs
        self.meta = {"format": "bif-draws-1", "dtype": dtype}
        head, self.offsets = _header(specs, {**self.meta, integrity.KEY: integrity.PLACEHOLDER})
        self.base = len(head)
        self.digest = integrity.Digest()  # the file's own checksum, from the bytes as they are written
        self.f = open(self.tmp, "w+b")
        self.f.write(head)
        self.f.truncate(self.base + self.offsets["__end__"])  # sparse until written
        self.per_draw = {n: p.numel() * self.dtype.itemsize for n, p in named}
        self.written = 0

    def _pwrite(self, at: int, t: torch.Tensor, name: str | None = None, index: int = 0) -> None:
        raw = t.contiguous().view(torch.uint8).numpy() if t.numel() else None
        if name is not None:
            self.digest.add(name, index, raw.tobytes() if raw is not None else b"")
        if raw is not None:
            os.pwrite(self.f.fileno(), memoryview(raw).cast("B"), self.base + at)

    @torch.no_grad()
    def write(self, draw: int) -> None:
        """Store draw `draw` from the parameters' current values (the sampled weights), then bump `written`."""
        if draw != self.written:
            raise ValueError(f"draws are written in order: expected draw {self.written}, got {draw}")
        for name, p, p0 in zip(self.names, self.params, self.w_star):
            delta = (p.detach().float().cpu() - p0).to(self.dtype)
            if not torch.isfinite(delta).all():
                raise CacheError(f"Draw {draw} of {name} does not fit in {self.dtype} (|delta| too large). "
                                 "Use draws_dtype=float32.")
            self._pwrite(self.offsets[f"delta.{name}"] + draw * self.per_draw[name], delta, f"delta.{name}", draw)
        self.written = draw + 1
        self._pwrite(self.offsets["written"], torch.tensor([self.written], dtype=torch.int64))

    def copy_prefix(self, src: "ChainDraws") -> None:
        """Start with the draws of a shorter run of the same chain (byte for byte; runs that grow)."""
        if self.written or src.names != self.names or src.dtype != self.dtype_name or src.written > self.draws:
            raise CacheError(f"Stored draws {src.path.name} do not fit this chain ({src.written} draws of "
                             f"{src.dtype}); they cannot be its prefix.")
        for name in self.names:
            raw = np.ascontiguousarray(src.maps[f"delta.{name}"][:src.written])
            for d in range(src.written):  # the copied draws are part of this file's own checksum
                self.digest.add(f"delta.{name}", d, raw[d].tobytes())
            if raw.size:
                os.pwrite(self.f.fileno(), memoryview(raw).cast("B"), self.base + self.offsets[f"delta.{name}"])
        self.written = src.written
        self._pwrite(self.offsets["written"], torch.tensor([self.written], dtype=torch.int64))

    def on_draw(self, draw) -> None:
        """As a sink of the sampling loop (bif.core.sinks): store the draw."""
        self.write(draw.index)

    def finish(self) -> Path:
        """Flush to disk and rename into place (ValueError if not every draw was written)."""
        if self.written != self.draws:
            raise ValueError(f"{self.written} of {self.draws} draws written")
        self.digest.add("written", 0, np.array([self.written], dtype=np.int64).tobytes())
        head, _ = _header(self.specs, {**self.meta, integrity.KEY: self.digest.hexdigest()})
        assert len(head) == self.base
        os.pwrite(self.f.fileno(), head, 0)
        return close_into_place(self.f, self.tmp, self.path)

    def discard(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


class ChainDraws:
    """A chain's stored draws, memory-mapped: `delta(name, d)` (parameter shape, float32), `written` draws."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if n <= 0 or 8 + n > size:
                    raise ValueError("bad header length")
                header = json.loads(f.read(n))
        except (OSError, ValueError) as e:
            raise CacheError(f"Stored draws {self.path.name} are unreadable ({e}). Delete the run's draws "
                             "(or the run) and compute it again.") from e
        self.metadata = header.pop("__metadata__", {})
        self.maps: dict[str, np.memmap] = {}
        self.st: dict[str, str] = {}
        for name, e in header.items():
            begin, end = e["data_offsets"]
            if e["dtype"] not in _ST_NUMPY or 8 + n + end > size:
                raise CacheError(f"Stored draws {self.path.name}: tensor {name} cannot be mapped. Delete and recompute.")
            self.maps[name] = np.memmap(self.path, dtype=_ST_NUMPY[e["dtype"]], mode="r", offset=8 + n + begin,
                                        shape=tuple(e["shape"]))
            self.st[name] = e["dtype"]
        if "written" not in self.maps:
            raise CacheError(f"Stored draws {self.path.name} lack the 'written' counter. Delete and recompute.")
        self.names = [k[len("delta."):] for k in self.maps if k.startswith("delta.")]
        self.draws = next((m.shape[0] for k, m in self.maps.items() if k.startswith("delta.")), 0)
        self.dtype = self.metadata.get("dtype", "float32")

    @property
    def written(self) -> int:
        """Complete draws (read this before the data: it is written after it)."""
        return int(np.array(self.maps["written"])[0])

    def delta(self, name: str, d: int) -> torch.Tensor:
        m = self.maps[f"delta.{name}"]
        t = torch.from_numpy(np.array(m[d]))
        return (t.view(torch.bfloat16) if self.st[f"delta.{name}"] == "BF16" else t).float()


def open_draws(run_dir: Path, chains: int) -> list[ChainDraws] | None:
    """The finished stored draws of every chain of a run, or None when the run has none (or not for every chain)."""
    paths = [RunFiles(Path(run_dir)).draws(c) for c in range(chains)]
    if not all(p.exists() for p in paths):
        return None
    return [ChainDraws(p) for p in paths]


class DrawApplier:
    """Puts stored draws into a model: `with applier.at(chain_draws, d): ...` holds w* + delta_d, then w* again.

    The model must be at w* when the applier is made (its sampled parameters are copied then). Parameters
    are matched by name; a draws file whose names do not match the model's is a CacheError.
    """

    def __init__(self, model: torch.nn.Module, names: list[str]):
        params = dict(model.named_parameters())
        missing = [n for n in names if n not in params]
        if missing:
            raise CacheError(f"Stored draws name parameters this model lacks ({missing[:3]}...): they belong "
                             "to another model. Delete them.")
        self.params = [params[n] for n in names]
        self.names = list(names)
        self.w_star = [p.detach().float().clone() for p in self.params]

    @contextlib.contextmanager
    def at(self, draws: ChainDraws, d: int):
        if d >= draws.written:
            raise CacheError(f"Draw {d} of {draws.path.name} is not written yet ({draws.written} are).")
        try:
            with torch.no_grad():
                for name, p, p0 in zip(self.names, self.params, self.w_star):
                    p.copy_((p0 + draws.delta(name, d).to(p0.device)).to(p.dtype))
            yield
        finally:
            self.restore()

    @torch.no_grad()
    def restore(self) -> None:
        for p, p0 in zip(self.params, self.w_star):
            p.copy_(p0.to(p.dtype))


def score_at_draws(model: torch.nn.Module, loss_fn, examples, chain: ChainDraws, batch_size: int,
                   device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
                   applier: DrawApplier | None = None, progress=None, draws: int | None = None,
                   batched: bool = True) -> torch.Tensor:
    """Per-position losses of `examples` at each of the first `draws` stored draws of one chain: (D, n, P) float32.

    No SGLD; the model is back at w* afterwards. A language model's few rows (a new query) are scored at several
    draws per forward pass (bif.core.drawbatch; `batched`), otherwise one forward pass per draw (all rows
    batched by `batch_size`). `progress` gets {"stage": "scoring stored draws", "draw", "draws"}.
    """
    from bif.core.drawbatch import draws_per_pass, lm_losses_at_draws
    from bif.core.examples import lm_token_loss, score_examples

    D = chain.written if draws is None else draws
    if D > chain.written:
        raise CacheError(f"Draw {D - 1} of {chain.path.name} is not written yet ({chain.written} are).")
    sizes = [int(np.prod(chain.maps[f"delta.{n}"].shape[1:])) for n in chain.names]
    if batched and loss_fn is lm_token_loss and autocast_dtype is None and \
            draws_per_pass(len(examples), sum(sizes), max(sizes, default=0)) > 1 and len(examples) <= batch_size:
        return lm_losses_at_draws(model, examples, chain, D, device, progress=progress)
    applier = applier or DrawApplier(model, chain.names)
    out = torch.zeros(D, len(examples), examples.positions, dtype=torch.float32)
    for d in range(D):
        with applier.at(chain, d):
            out[d] = score_examples(model, loss_fn, examples, batch_size, device, autocast_dtype).cpu()
        if progress is not None and (d % 10 == 0 or d == D - 1):
            progress({"stage": "scoring stored draws", "draw": d + 1, "draws": D})
    return out
