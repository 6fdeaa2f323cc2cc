"""LossTrace: per-position losses of observed sets at every draw, plus the sampling loss at every step.

Layout: `losses[name]` (C, D, n, P) float32/float16, `masks[name]` (n, P) bool, `init[name]` (n, P) losses at w*,
`sampling_loss` (C, S) float64. Stored as one safetensors file per chain (so a run resumes chain by chain) with
the arguments as JSON beside them: `save_chain` / `load_chain` write and read a whole chain (ChainTrace);
bif.core.chainwriter.ChainWriter writes one draw by draw (a trace is never whole in memory while it is produced),
and bif.core.chainreader (`open_chain`, `ChainStack`) reads it back lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from bif.core import integrity
# re-exported (the trace's files, written and read, are importable from here too); ChainStack is also used below
from bif.core.chainreader import ChainStack, chain_seconds, open_chain, read_draws, written_draws  # noqa: F401
from bif.core.chainwriter import ChainWriter  # noqa: F401
from bif.errors import CacheError


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
    # name -> (the losses array, its `series` over all rows (C, D, n) float64, read-only): summed once per array and
    # shared by the traces built on the same arrays (a Run's traces share its training losses); C·D·n numbers,
    # 1/P of the losses array's count
    sums: dict = field(default_factory=dict, repr=False, compare=False)

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
        All rows' series is computed once per losses array and kept in `sums` (read-only: do not change it in place).
        """
        x, mask = self.losses[name], self.masks[name][rows]
        whole = isinstance(rows, slice) and rows == slice(None)
        known = self.sums.get(name) if whole else None
        if known is not None and known[0] is x:
            return known[1]
        if not isinstance(x, ChainStack):
            out = (x[:, :, rows].astype(np.float64) * mask).sum(-1)
        else:
            out = np.empty((x.shape[0], x.shape[1], mask.shape[0]))
            for c, d0, block in x.chunks():
                out[c, d0:d0 + len(block)] = (block[:, rows].astype(np.float64) * mask).sum(-1)
        if whole:
            self.sums[name] = (x, _frozen(out))
        return out

    def chains_of(self, chains) -> "LossTrace":
        """The same trace restricted to some chains (a slice or an index array), the known series sliced alike."""
        losses = {k: v[chains] for k, v in self.losses.items()}
        sums = {k: (losses[k], _frozen(out[chains])) for k, (x, out) in self.sums.items() if self.losses.get(k) is x}
        return LossTrace(losses, self.masks, self.init, self.sampling_loss[chains], sums)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # shared between the traces on the same arrays
    return a


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
