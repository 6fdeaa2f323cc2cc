"""Several stored draws in one forward pass: a language model's per-token losses at K draws at once.

`torch.func.vmap` over `torch.func.functional_call` runs the model with K stacked copies of the sampled
parameters (w* + delta_k, the others shared), so a small query is scored at K draws for the per-operation
overhead of one pass: on the tiny test model under load, 1.5 ms per draw at K = 50 against 15 ms one draw at a
time. The losses are the next-token cross-entropies of bif.core.examples.lm_token_loss (computed from the full
logits here; equal to it to float32 rounding, tests/test_drawbatch.py). Rows × draws per pass are capped so the
logits stay small; with many rows (ranking a training set) K falls to 1 and `score_at_draws` does it draw by draw.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

import numpy as np
import torch
from torch.func import functional_call, vmap

from bif.core.examples import Examples

SEQUENCES_PER_PASS = 64  # rows × draws in one vmapped pass
PARAM_BYTES = 1 << 28  # stacked parameter copies per pass (256 MiB)
BLOCK_BYTES = 1 << 24  # the largest parameter's stacked copy per pass (16 MiB): see draws_per_pass


@contextmanager
def free_threads():
    """Within the block, torch uses only the cores the machine leaves free (its load average), at least one and never
    more than it was set to. Two threads on a busy 2-core machine wait on each other: a 30-token question at 400
    stored draws took 25–35 s with 2 threads against 4–5 s with 1 (load 9–10, demo model, 2026-12-03)."""
    before = torch.get_num_threads()
    free = round((os.cpu_count() or 1) - os.getloadavg()[0]) if hasattr(os, "getloadavg") else before
    torch.set_num_threads(max(1, min(before, free)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def draws_per_pass(rows: int, n_params: int, largest: int = 0, limit: int = SEQUENCES_PER_PASS) -> int:
    """How many draws to stack in one pass for `rows` rows of `n_params` sampled parameters, the largest of
    `largest` elements (≥ 1). A stacked copy larger than BLOCK_BYTES is fresh memory at every pass (glibc maps
    blocks over 32 MiB anew and unmaps them when freed), and its page faults cost more than the batching saves:
    a 37-token question at the demo's 400 draws took 1.55 s at 64 draws per pass (the embedding's copy 64 MiB,
    450 000 page faults) against 0.93 s at 16 (13 000), one thread, in a worker thread as the app scores."""
    return max(1, min(limit // max(rows, 1), PARAM_BYTES // max(4 * n_params, 1),
                      BLOCK_BYTES // max(4 * largest, 1)))


@torch.no_grad()
def lm_losses_at_draws(model: torch.nn.Module, examples: Examples, chain, draws: int, device,
                       per_pass: int | None = None, progress=None) -> torch.Tensor:
    """Per-position next-token losses of `examples` at the first `draws` stored draws of `chain` (ChainDraws):
    (D, n, P) float32, 0 where masked. The model stays at w* (its parameters are not touched)."""
    params = dict(model.named_parameters())
    w_star = {n: params[n].detach().float() for n in chain.names}
    n_params = sum(v.numel() for v in w_star.values())
    rows, P = examples.mask.shape
    K = per_pass or draws_per_pass(rows, n_params, max(v.numel() for v in w_star.values()))
    out = torch.zeros(draws, rows, P, dtype=torch.float32)
    inputs, mask = examples.batch(torch.arange(rows), device)  # (n, T), (n, P')
    ids, am = inputs["input_ids"], inputs.get("attention_mask")
    target = ids[:, 1:]

    def logits(ps):
        return functional_call(model, ps, (), {"input_ids": ids, "attention_mask": am}).logits  # (n, T, V)

    batched = vmap(logits)
    warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product")  # runs, looped
    for d0 in range(0, draws, K):
        d1 = min(draws, d0 + K)
        stacked = {n: _stacked(chain, n, d0, d1, w_star[n]).to(params[n].dtype) for n in chain.names}  # (k, *shape)
        lg = batched(stacked)[:, :, :-1].float()  # (k, n, T-1, V)
        k, _, Tm, V = lg.shape
        ce = torch.nn.functional.cross_entropy(lg.reshape(-1, V), target.repeat(k, 1).reshape(-1),
                                               reduction="none").view(k, rows, Tm)
        Pb = mask.shape[1]
        out[d0:d1, :, :Pb] = torch.where(mask, ce[:, :, :Pb], 0.0).cpu()
        if progress is not None:
            progress({"stage": "scoring stored draws", "draw": d1, "draws": draws})
    return out


def _stacked(chain, name: str, d0: int, d1: int, w: torch.Tensor) -> torch.Tensor:
    """w* + the deltas of draws d0..d1-1 of one parameter, float32 (k, *shape), in one pass over the mapped file
    (the stored float16/bfloat16 is widened exactly inside the addition, as `.float()` would)."""
    raw = chain.maps[f"delta.{name}"][d0:d1]
    with warnings.catch_warnings():  # read-only memory map: only read here
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(raw) if isinstance(raw, np.ndarray) else torch.as_tensor(raw)
    if chain.st[f"delta.{name}"] == "BF16":
        t = t.view(torch.bfloat16)
    return torch.add(w, t.to(w.device))
