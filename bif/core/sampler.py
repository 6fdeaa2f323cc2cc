"""Localized SGLD (docs/method.md §2) and loss traces.

    w ← w − (ε/2)·G·(nβ·∇L_B(w) + γ·(w − w*)) + N(0, ε·G),   G = 1 (plain) or 1/(eps + √V) (RMSProp)

Every chain starts at w*, runs in eval mode with gradients on, and is seeded from its own torch.Generators
(noise on the device, minibatch order on the CPU), so `sample_chain` with the same arguments replays it exactly.
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import torch

from bif.core.chainstate import BatchOrder, ChainState
from bif.core.config import SamplerConfig
from bif.errors import ConfigError, DivergedError
from bif.core.examples import Examples, LossFn, call_loss, score_examples
from bif.core.params import select_parameters
from bif.core.scale import ScaleOptions, checkpointing
from bif.core.sinks import Draw, InMemory, SinkLike, deliver
from bif.core.trace import ChainTrace, LossTrace

Progress = Callable[[dict], None]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'.")
    return torch.device(device)


def chain_seeds(seed: int, chain: int) -> tuple[int, int]:
    """(noise seed, minibatch seed) of a chain: distinct, deterministic, independent of the other chains."""
    base = (seed * 1_000_003 + chain * 7_919 + 12_345) % (2**62)
    return base, (base * 31 + 1) % (2**62)


def sgld_step(params: list[torch.Tensor], grads: list[torch.Tensor], w_star: list[torch.Tensor], *,
              step_size: float, nbeta: float, gamma: float, noise_scale: float = 1.0,
              noise_gen: torch.Generator | None = None, sq_avg: list[torch.Tensor] | None = None,
              rmsprop_alpha: float = 0.99, rmsprop_eps: float = 0.1) -> None:
    """One localized SGLD update of `params` in place. `grads` are ∇L_B (mean minibatch loss), not scaled by nβ.

    With noise_scale=0 and gamma=0 this is one SGD step with learning rate step_size·nbeta/2.
    `sq_avg` (RMSProp state, one tensor per parameter) switches on the preconditioner.
    """
    eps = step_size
    for i, (p, g, p0) in enumerate(zip(params, grads, w_star)):
        if p0.device != p.device:  # w* offloaded to the host
            p0 = p0.to(p.device, non_blocking=True)
        drift = nbeta * g + gamma * (p - p0)
        if sq_avg is not None:  # RMSProp: V tracks (nβ·g)², G = 1/(eps + √V) scales the whole drift and the noise
            sq_avg[i].mul_(rmsprop_alpha).addcmul_(g, g, value=(1 - rmsprop_alpha) * nbeta**2)
            precond = 1.0 / (rmsprop_eps + sq_avg[i].sqrt())
            p.sub_(0.5 * eps * precond * drift)
            if noise_scale > 0:
                noise = torch.randn(p.shape, generator=noise_gen, device=p.device, dtype=p.dtype)
                p.add_(noise * (eps * precond).sqrt() * noise_scale)
        else:
            p.sub_(0.5 * eps * drift)
            if noise_scale > 0:
                noise = torch.randn(p.shape, generator=noise_gen, device=p.device, dtype=p.dtype)
                p.add_(noise, alpha=math.sqrt(eps) * noise_scale)


class Minibatches:
    """Endless minibatch indices: epochs of seeded permutations, whose position can be saved and restored."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.perm, self.pos = None, 0
        self.stop = n - batch_size + 1 if n >= batch_size else 1  # a start at or past this begins a new epoch

    def __next__(self) -> torch.Tensor:
        if self.perm is None or self.pos >= self.stop:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        rows = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return rows

    def state(self) -> BatchOrder:
        return BatchOrder(self.gen.get_state(), self.perm.clone(), self.pos)

    def restore(self, order: BatchOrder) -> None:
        self.gen.set_state(order.rng)
        self.perm, self.pos = order.perm.clone(), order.pos


class ChainEnd(NamedTuple):
    """What a chain leaves besides its sinks' records."""

    sampling_loss: torch.Tensor  # (S,) float64: minibatch loss at every SGLD step
    checksum: torch.Tensor  # (D,) float64: sum of the sampled weights at every draw
    seconds: float


def run_chain(model: torch.nn.Module, loss_fn: LossFn, train: Examples, config: SamplerConfig, chain: int,
              sinks: "SinkLike | list[SinkLike]", progress: Progress | None = None,
              device: torch.device | None = None, scale: "ScaleOptions | None" = None,
              resume: ChainState | None = None, on_end: Callable[[ChainState], None] | None = None) -> ChainEnd:
    """The SGLD loop of chain `chain` from the model's current weights (w*), restored afterwards: the one loop
    every run, replay, trace recording and benchmark samples with.

    At each kept draw the model holds the sampled weights and every sink gets a `bif.core.sinks.Draw` (under
    no_grad; a plain callable gets the draw's index): losses in memory, a chain file, a shard of one, the stored
    draws. Returns ChainEnd (sampling loss at every step (S,), a checksum of the sampled weights at every draw
    (D,) float64, seconds). The trajectory depends only on (config, chain, device, weights dtype): ranks
    that share a chain replay it independently and compare checksums (bif.dist.distributed).

    `scale` (bif.core.scale.ScaleOptions) adds: float32 master copies when the model's weights are bfloat16,
    w* kept on the CPU (`offload_w_star`), gradient checkpointing of the transformer blocks.

    `resume` continues a chain from its saved state after `resume.step` steps (bif.core.chainstate; the model
    still at w*): the result is bitwise that of the uninterrupted chain, sampling losses and checksums of the
    earlier steps included (seconds too: the chain's total); only draws from `resume.draw` on reach the sinks. `on_end`, if given, receives the
    state after the last step (before w* is restored), from which a longer chain can continue.
    """
    scale = scale or ScaleOptions()
    sinks = list(sinks) if isinstance(sinks, (list, tuple)) else [sinks]
    device = torch.device(device) if device is not None else resolve_device(config.device)
    named = select_parameters(model, config.param_patterns)
    params = [p for _, p in named]
    # w* in the weights' own dtype (exact), on the device or in (pinned) host memory
    pin = scale.offload_w_star and device.type == "cuda"
    w_star = [p.detach().to("cpu", copy=True).pin_memory() if pin else
              p.detach().to("cpu", copy=True) if scale.offload_w_star else p.detach().clone() for p in params]
    # low-precision weights move through float32 master copies (SGLD steps are far below bf16 resolution)
    master = [p.detach().float().clone() if p.dtype != torch.float32 else p for p in params]
    mixed = any(m is not p for m, p in zip(master, params))
    frozen = [p for p in model.parameters() if all(p is not q for q in params)]
    frozen_flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    was_training = model.training
    model.eval()  # dropout off, gradients still on
    noise_seed, batch_seed = chain_seeds(config.seed, chain)
    noise_gen = torch.Generator(device=device).manual_seed(noise_seed)
    batch_gen = torch.Generator().manual_seed(batch_seed)
    batches = Minibatches(len(train), config.batch_size, batch_gen)
    sq_avg = [torch.zeros_like(p) for p in master] if config.preconditioner == "rmsprop" else None

    D, S = config.draws, config.steps_per_chain
    sampling_loss = torch.zeros(S, dtype=torch.float64)
    checksum = torch.zeros(D, dtype=torch.float64)
    t0, draw, first, before = time.perf_counter(), 0, 0, 0.0
    if resume is not None:
        first, draw = _restore(resume, named, master, params, sq_avg, noise_gen, batches, config, chain)
        sampling_loss[:first], checksum[:draw], before = resume.sampling_loss, resume.checksum, resume.seconds
    try:
        for step in range(first, S):
            inputs, mask = train.batch(next(batches), device)
            with checkpointing(model, scale.grad_checkpointing):
                per_pos = call_loss(loss_fn, model, inputs, mask)[:, : mask.shape[1]]  # (B, P)
                loss = (per_pos * mask).sum() / mask.sum().clamp(min=1)
                if not torch.isfinite(loss):
                    raise DivergedError(
                        f"Chain {chain} diverged at step {step} (sampling loss {loss.item()}). "
                        + config.stabilize_advice())
                grads = torch.autograd.grad(loss, params)
            sampling_loss[step] = loss.item()
            with torch.no_grad():
                grads = [g.float() for g in grads] if mixed else list(grads)
                sgld_step(master, grads, w_star, step_size=config.step_size, nbeta=config.nbeta,
                          gamma=config.gamma, noise_scale=config.noise_scale, noise_gen=noise_gen, sq_avg=sq_avg,
                          rmsprop_alpha=config.rmsprop_alpha, rmsprop_eps=config.rmsprop_eps)
                if mixed:
                    for p, m in zip(params, master):
                        if m is not p:
                            p.copy_(m)
            del grads, per_pos
            after = step + 1 - config.burn_in
            if after > 0 and after % config.steps_between == 0:
                with torch.no_grad():
                    total = torch.stack([p.sum(dtype=torch.float64) for p in params]).sum()
                    if not torch.isfinite(total):
                        raise DivergedError(f"Chain {chain} produced non-finite weights at step {step}. "
                                            + config.stabilize_advice())
                    checksum[draw] = total.item()
                    deliver(sinks, Draw(chain, draw, step + 1, model, named, w_star))
                draw += 1
            if progress is not None and (step % 5 == 0 or step == S - 1):
                elapsed = time.perf_counter() - t0
                progress({"stage": "sample", "chain": chain, "step": step + 1, "steps": S, "draw": draw,
                          "draws": D, "sampling_loss": loss.item(), "elapsed_s": elapsed, "first_step": first,
                          "chain_eta_s": elapsed / (step + 1 - first) * (S - step - 1)})
        if on_end is not None:
            on_end(ChainState(step=S, draw=draw, noise_rng=noise_gen.get_state(), batches=batches.state(),
                              params={n: m.detach().cpu().clone() for (n, _), m in zip(named, master)},
                              sq_avg=None if sq_avg is None else
                              {n: v.detach().cpu().clone() for (n, _), v in zip(named, sq_avg)},
                              sampling_loss=sampling_loss.clone(), checksum=checksum.clone(),
                              seconds=before + time.perf_counter() - t0))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, w_star):
                p.copy_(p0)
        for p, flag in zip(frozen, frozen_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    return ChainEnd(sampling_loss, checksum, before + time.perf_counter() - t0)


def _restore(state: ChainState, named, master, params, sq_avg, noise_gen, batches: Minibatches,
             config: SamplerConfig, chain: int) -> tuple[int, int]:
    """Put a saved chain state into the loop's variables; (first step, first draw) to continue from."""
    names = [n for n, _ in named]
    if sorted(state.params) != sorted(names) or (state.sq_avg is None) != (sq_avg is None):
        raise ConfigError(f"The saved state of chain {chain} samples other parameters or another preconditioner; "
                          "it cannot be continued with these settings.")
    after = state.step - config.burn_in
    if state.step > config.steps_per_chain or after < 0 or after % config.steps_between or \
            after // config.steps_between != state.draw:
        raise ConfigError(f"The saved state of chain {chain} (step {state.step}, draw {state.draw}) does not lie on "
                          f"this chain's path (burn_in {config.burn_in}, steps_between {config.steps_between}, "
                          f"draws {config.draws}).")
    with torch.no_grad():
        for i, n in enumerate(names):
            master[i].copy_(state.params[n].to(master[i].device))
            if master[i] is not params[i]:
                params[i].copy_(master[i])
            if sq_avg is not None:
                sq_avg[i].copy_(state.sq_avg[n].to(sq_avg[i].device))
    noise_gen.set_state(state.noise_rng)
    batches.restore(state.batches)
    return state.step, state.draw


def sample_chain(model: torch.nn.Module, loss_fn: LossFn, train: Examples, observed: dict[str, Examples],
                 config: SamplerConfig, chain: int, progress: Progress | None = None,
                 device: torch.device | None = None, scale: "ScaleOptions | None" = None) -> ChainTrace:
    """Run chain `chain` from the model's current weights (w*) and restore them afterwards.

    Returns per-position losses of every observed set at each kept draw, (D, n, P) each, and the sampling loss
    at every SGLD step (S,). Raises DivergedError on NaN/Inf and whatever `progress` raises (e.g. Cancelled).
    Holds the whole chain in memory: `bif.store.runs.compute_run` streams it to disk instead (ChainWriter).
    """
    device = device or resolve_device(config.device)
    memory = InMemory(loss_fn, observed, config.draws, config.score_batch_size, device, config.score_dtype)
    end = run_chain(model, loss_fn, train, config, chain, memory, progress, device, scale)
    return ChainTrace(losses=memory.losses, sampling_loss=end.sampling_loss, seconds=end.seconds)


def sample(model: torch.nn.Module, loss_fn: LossFn, train: Examples, observed: dict[str, Examples],
           config: SamplerConfig, progress: Progress | None = None) -> LossTrace:
    """All chains in memory, no cache: the entry point for any torch model with a per-sample loss.

    Args:
        model: at its trained weights w* (restored after every chain).
        loss_fn: (model, inputs) -> per-position losses (B, P); see examples.LossFn.
        train: the sampling set; SGLD minibatches are drawn from it.
        observed: the sets whose losses are recorded at every draw, e.g. {"train": ..., "query": ...}.
    Returns:
        LossTrace with losses[name] of shape (C, D, n, P).
    """
    device = resolve_device(config.device)
    model.to(device)
    init = {k: score_examples(model, loss_fn, ex, config.score_batch_size, device).cpu() for k, ex in observed.items()}
    chains = [sample_chain(model, loss_fn, train, observed, config, c, progress, device) for c in range(config.chains)]
    return LossTrace.from_chains(chains, {k: ex.mask for k, ex in observed.items()}, init)
