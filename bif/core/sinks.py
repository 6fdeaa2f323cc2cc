"""Where the draws of a chain go: the sampling loop (bif.core.sampler.run_chain) hands each kept draw to sinks.

A sink has `on_draw(draw: Draw)`, called under no_grad while the model holds the sampled weights; a plain callable
is a sink too and gets the draw's index. The sinks of the library: `InMemory` (per-position losses of observed
sets, held in memory: `bif.sample`), `ToChainFile` (the same losses written draw by draw to a chain file or, with
`batches`, to one process's shard of it: bif.store.chains, bif.dist), and bif.core.draws.DrawWriter (the sampled
parameters themselves). Scoring uses `bif.core.examples.score_examples` / `score_batches`, so every sink computes
the same numbers in the same order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol, Union

import torch

from bif.core.examples import Examples, LossFn, score_batches, score_examples


@dataclass(frozen=True)
class Draw:
    """One kept draw: chain, its index among the chain's draws, the SGLD step after which it was taken (1-based),
    the model (holding the sampled weights), the sampled (name, parameter) pairs and w* (same order)."""

    chain: int
    index: int
    step: int
    model: torch.nn.Module
    params: list[tuple[str, torch.nn.Parameter]]
    w_star: list[torch.Tensor]


class Sink(Protocol):
    def on_draw(self, draw: Draw) -> None: ...


SinkLike = Union[Sink, Callable[[int], None]]


def deliver(sinks: list[SinkLike], draw: Draw) -> None:
    """Hand `draw` to every sink, in order (a callable gets the draw's index)."""
    for s in sinks:
        if hasattr(s, "on_draw"):
            s.on_draw(draw)
        else:
            s(draw.index)


def autocast_of(score_dtype: str) -> torch.dtype | None:
    """The autocast dtype of the scoring passes for SamplerConfig.score_dtype."""
    return torch.bfloat16 if score_dtype == "bfloat16" else None


class InMemory:
    """Per-position losses of every observed set at every draw, held in memory: losses[name] (D, n, P) float32."""

    def __init__(self, loss_fn: LossFn, observed: dict[str, Examples], draws: int, batch_size: int, device,
                 score_dtype: str = "float32"):
        self.loss_fn, self.observed, self.batch_size, self.device = loss_fn, observed, batch_size, device
        self.autocast = autocast_of(score_dtype)
        self.losses = {k: torch.zeros(draws, len(ex), ex.positions, dtype=torch.float32) for k, ex in observed.items()}

    def on_draw(self, draw: Draw) -> None:
        for k, ex in self.observed.items():
            self.losses[k][draw.index] = score_examples(draw.model, self.loss_fn, ex, self.batch_size, self.device,
                                                        self.autocast).cpu()


class ToChainFile:
    """Per-position losses of every observed set, written draw by draw to a ChainWriter and committed after each
    draw (a reader of the partial file sees whole draws only). With `batches` ({name: list of row batches}), only
    those rows, in batch order (one process's shard, bif.dist.distributed). `on_scored(seconds)` times each draw."""

    def __init__(self, writer, loss_fn: LossFn, observed: dict[str, Examples], batch_size: int, device,
                 score_dtype: str = "float32", batches: dict[str, list[torch.Tensor]] | None = None,
                 on_scored: Callable[[float], None] | None = None):
        self.writer, self.loss_fn, self.observed, self.batch_size, self.device = writer, loss_fn, observed, \
            batch_size, device
        self.autocast, self.batches, self.on_scored = autocast_of(score_dtype), batches, on_scored

    def on_draw(self, draw: Draw) -> None:
        t0 = time.perf_counter()
        for k, ex in self.observed.items():
            if self.batches is None:
                losses = score_examples(draw.model, self.loss_fn, ex, self.batch_size, self.device, self.autocast)
            else:
                losses = score_batches(draw.model, self.loss_fn, ex, self.batches[k], self.device, self.autocast)
            self.writer.write(k, draw.index, losses)
        if hasattr(self.writer, "commit"):
            self.writer.commit(draw.index + 1)
        if self.on_scored is not None:
            self.on_scored(time.perf_counter() - t0)
