"""The state of a chain after its last step: enough to continue it, bitwise, as if it had never stopped.

A chain is a deterministic function of its seeds (docs/method.md §2), so a run with more draws extends a shorter
one with the same other settings: the longer chain's first steps are the shorter chain's steps. `ChainState` holds
what the SGLD loop carries from one step to the next:

    params    the sampled parameters (float32 master copies), name -> parameter shape
    sq_avg    the RMSProp average of squared gradients, name -> parameter shape (None without RMSProp)
    noise_rng the noise generator's state (torch.Generator.get_state(), uint8)
    batches   the minibatch order: generator state, current epoch's permutation (n,) and position in it
    step      SGLD steps taken; draw: draws kept
    sampling_loss (step,) float64 and checksum (draw,) float64 of the steps and draws so far
    seconds   the time the chain has taken so far

Saved as one safetensors file per chain (`save_state`, `load_state`); only exact dtypes are stored, so a
restored chain continues with the very same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bif.core import integrity
from bif.errors import CacheError

FORMAT = "bif-chain-state-1"


@dataclass
class BatchOrder:
    """Where an endless sequence of seeded minibatch permutations stands (see sampler.Minibatches)."""

    rng: torch.Tensor  # (k,) uint8: the CPU generator's state after the current permutation was drawn
    perm: torch.Tensor  # (n,) int64: the current epoch's permutation
    pos: int  # index into perm of the next minibatch's first row


@dataclass
class ChainState:
    step: int
    draw: int
    params: dict[str, torch.Tensor]
    sq_avg: dict[str, torch.Tensor] | None
    noise_rng: torch.Tensor
    batches: BatchOrder
    sampling_loss: torch.Tensor  # (step,) float64
    checksum: torch.Tensor  # (draw,) float64
    seconds: float = 0.0  # time the chain has taken so far (metadata: not part of the numbers)


def save_state(state: ChainState, path: Path) -> None:
    """Write a chain state atomically."""
    t = {f"params.{n}": v.detach().cpu() for n, v in state.params.items()}
    if state.sq_avg is not None:
        t.update({f"sq_avg.{n}": v.detach().cpu() for n, v in state.sq_avg.items()})
    t.update({"noise_rng": state.noise_rng.cpu(), "batch_rng": state.batches.rng.cpu(),
              "perm": state.batches.perm.cpu(), "sampling_loss": state.sampling_loss.cpu(),
              "checksum": state.checksum.cpu(),
              "counters": torch.tensor([state.step, state.draw, state.batches.pos], dtype=torch.int64)})
    integrity.save_checked(t, Path(path), metadata={"format": FORMAT, "seconds": f"{state.seconds:.3f}"})


def load_state(path: Path) -> ChainState:
    """Read a chain state; CacheError if it is unreadable or incomplete."""
    try:
        t = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            seconds = float((f.metadata() or {}).get("seconds", 0.0))
        step, draw, pos = (int(v) for v in t["counters"])
        params = {k[len("params."):]: v for k, v in t.items() if k.startswith("params.")}
        sq = {k[len("sq_avg."):]: v for k, v in t.items() if k.startswith("sq_avg.")} or None
        state = ChainState(step=step, draw=draw, params=params, sq_avg=sq, noise_rng=t["noise_rng"],
                           batches=BatchOrder(t["batch_rng"], t["perm"], pos), sampling_loss=t["sampling_loss"],
                           checksum=t["checksum"], seconds=seconds)
    except Exception as e:  # safetensors raises several types for a damaged file
        raise CacheError(f"Chain state {Path(path).name} is unreadable ({e}); the run cannot be extended from it. "
                         "Delete it (the run stays usable) or start a new run.") from e
    if state.sampling_loss.shape != (step,) or state.checksum.shape != (draw,) or not params:
        raise CacheError(f"Chain state {Path(path).name} is inconsistent; delete it or start a new run.")
    return state


def state_bytes(n_params: int, chains: int, rmsprop: bool) -> int:
    """Disk size of a run's chain states: float32 weights (and RMSProp averages) per chain."""
    return chains * n_params * 4 * (2 if rmsprop else 1)
