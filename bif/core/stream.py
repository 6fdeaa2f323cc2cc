"""Traces too large for memory: record them straight to disk, and score one query streaming over the draws.

`record` is `bif.sample` for big observed sets: each chain goes to a chain file draw by draw (`ChainWriter`)
and comes back as a memory-mapped `ChainStack`; it resumes chain by chain. `samples` computes exactly what
`bif.core.influence.samples` computes (−Cov and Corr with batch-means standard errors, p, BH q, the finding rule),
keeping only per-batch sums: memory O(K·n) for K ≈ C·√D batches, never O(C·D·n·P).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from bif.core.config import SamplerConfig
from bif.errors import CacheError, ConfigError
from bif.core.estimators import Scores, _batches, from_moments
from bif.core.examples import Examples, LossFn, score_examples
from bif.core.files import read_json, write_json
from bif.core.sampler import Progress, resolve_device, run_chain
from bif.core.sinks import ToChainFile
from bif.core.chainreader import ChainStack, open_chain
from bif.core.chainwriter import ChainWriter
from bif.core.trace import LossTrace
from bif.layout import TraceFiles

BLOCK_BYTES = 1 << 25  # bytes of stored losses read per block (32 MiB)


def record(model: torch.nn.Module, loss_fn: LossFn, train: Examples, observed: dict[str, Examples],
           config: SamplerConfig, directory: str | Path, progress: Progress | None = None, scale=None) -> LossTrace:
    """Sample like `bif.sample`, writing every chain to `directory` (bif.layout.TraceFiles) as it is produced.

    Finished chain files are reused (resume chain by chain) when the directory was recorded with the same
    settings and its chain files have this call's shapes; otherwise ConfigError (other settings) or CacheError
    (other shapes): use another directory or delete it. Returns a LossTrace whose losses are ChainStacks
    (memory-mapped; masks and losses at w* in memory). Host memory: the model, the observed inputs and one draw
    of losses; the trace grows on disk only.
    """
    files = TraceFiles(Path(directory))
    files.dir.mkdir(parents=True, exist_ok=True)
    _check_resumable(files, observed, config)
    device = resolve_device(config.device)
    model.to(device)
    write_json(files.config, config.to_dict())
    for c in range(config.chains):
        path = files.chain(c)
        if path.exists():
            continue
        writer = ChainWriter(path, {k: (config.draws, len(ex), ex.positions) for k, ex in observed.items()},
                             config.steps_per_chain, config.trace_dtype)
        sink = ToChainFile(writer, loss_fn, observed, config.score_batch_size, device, config.score_dtype)
        try:
            end = run_chain(model, loss_fn, train, config, c, sink, progress, device, scale)
        except BaseException:
            writer.discard()
            raise
        writer.finish(end.sampling_loss, end.seconds)
    init = {k: score_examples(model, loss_fn, ex, config.score_batch_size, device).cpu().numpy()
            for k, ex in observed.items()}
    return open_trace(files.dir, {k: ex.mask.numpy() for k, ex in observed.items()}, init)


def _recorded_as(config: SamplerConfig) -> dict:
    """The settings that shape a recorded chain file's numbers (not how fast it was computed)."""
    return {**config.sampling_key(), "score_dtype": config.score_dtype, "trace_dtype": config.trace_dtype}


def _check_resumable(files: TraceFiles, observed: dict[str, Examples], config: SamplerConfig) -> None:
    """Refuse to resume a directory whose chains were recorded with other settings or other shapes."""
    chains = files.existing_chains()
    if not chains:
        return
    stored = read_json(files.config)
    if stored is not None:
        try:
            before = _recorded_as(SamplerConfig.from_dict(stored))
        except (ConfigError, TypeError):
            before = None
        now = _recorded_as(config)
        if before != now:
            changed = sorted(k for k in now if before is None or before.get(k) != now[k])
            raise ConfigError(f"{files.dir} holds chains recorded with other settings ({', '.join(changed)} "
                              "differ). Record into another directory, or delete it to start again.")
    for path in chains:
        t = open_chain(path)
        for k, ex in observed.items():
            want = (config.draws, len(ex), ex.positions)
            got = tuple(t[f"losses.{k}"].shape) if f"losses.{k}" in t else None
            if got != want:
                raise CacheError(f"{path} holds {k!r} losses of shape {got}, this call records {want}. Record into "
                                 "another directory, or delete it to start again.")
        if "sampling_loss" not in t or t["sampling_loss"].shape != (config.steps_per_chain,):
            raise CacheError(f"{path} has another number of SGLD steps. Record into another directory, or delete it.")


def open_trace(directory: str | Path, masks: dict[str, np.ndarray], init: dict[str, np.ndarray] | None = None,
               ) -> LossTrace:
    """The chain files of a directory as a LossTrace of memory-mapped ChainStacks."""
    paths = TraceFiles(Path(directory)).existing_chains()
    if not paths:
        raise CacheError(f"No chain files in {directory}.")
    maps = [open_chain(p) for p in paths]
    return LossTrace(losses={k: ChainStack([m[f"losses.{k}"] for m in maps]) for k in masks},
                     masks=masks, init=init or {}, sampling_loss=np.stack([np.asarray(m["sampling_loss"])
                                                                           for m in maps]))


def _query_series(trace: LossTrace, query: int, token: int | None, name: str) -> np.ndarray:
    """(C, D) loss of the whole completion (token=None) or of one completion position."""
    if token is None:
        return trace.series(name, [query])[..., 0]
    if not trace.masks[name][query, token]:
        raise ValueError(f"position {token} of query {query} is not a completion token")
    return np.asarray(trace.losses[name][:, :, query, token], dtype=np.float64)


def covariance_with(trace: LossTrace, y: np.ndarray, name: str = "train", block_bytes: int = BLOCK_BYTES,
                    fdr: float = 0.05) -> Scores:
    """Scores of every row of observed set `name` (Σ_pos ℓ) against one series y (C, D), in one pass.

    Equals `bif.core.estimators.covariance(trace.series(name), y[..., None])` squeezed to (n,), to float64 rounding.
    """
    losses, mask = trace.losses[name], trace.masks[name]
    stack = losses if isinstance(losses, ChainStack) else ChainStack(list(losses))
    C, D, n, _ = stack.shape
    y = np.asarray(y, dtype=np.float64).reshape(C, D)
    batch_of, K = _batches(C, D)
    batch_of = batch_of.reshape(C, D)
    y_ref = y[0, 0]
    yv = y - y_ref  # shifts cancel in covariances; they keep the one-pass sums well conditioned
    Sx, Sxy = np.zeros((K, n)), np.zeros((K, n))
    Sy, Sy2, m = np.zeros(K), 0.0, np.zeros(K)
    Sx2 = np.zeros(n)
    x_ref = None
    for c, d0, block in stack.chunks(block_bytes):
        x = (block.astype(np.float64) * mask).sum(-1)  # (d, n)
        if x_ref is None:
            x_ref = x[0].copy()
        x -= x_ref
        d1 = d0 + len(x)
        ys, ks = yv[c, d0:d1], batch_of[c, d0:d1]
        for k in np.unique(ks):
            sel = ks == k
            Sx[k] += x[sel].sum(0)
            Sxy[k] += ys[sel] @ x[sel]
            Sy[k] += ys[sel].sum()
            m[k] += sel.sum()
        Sx2 += (x * x).sum(0)
        Sy2 += float((ys * ys).sum())
    N = C * D
    xbar, ybar = Sx.sum(0) / N, Sy.sum() / N  # (n,), scalar
    sums = (Sxy - ybar * Sx - np.outer(Sy, xbar) + m[:, None] * xbar * ybar) / m[:, None]  # (K, n) batch means
    cov_mean = (Sxy.sum(0) - ybar * Sx.sum(0) - xbar * Sy.sum() + N * xbar * ybar) / N
    sx = np.sqrt(np.maximum(Sx2 / N - xbar**2, 0.0))
    sy = math.sqrt(max(Sy2 / N - ybar**2, 0.0))
    return from_moments(cov_mean, sums.std(0, ddof=1) / math.sqrt(K), sx * sy, N, K, fdr)


def samples(trace: LossTrace, query: int, token: int | None = None, train: str = "train",
            queries: str = "query", block_bytes: int = BLOCK_BYTES) -> Scores:
    """`bif.core.influence.samples` streamed over the draws: influence of every training row on one query, (n,).

    Then `scores.top(k)` gives the top-k; memory stays linear in the number of rows. The finding rule
    (influence.FINDING_RULE) reads each half of the chains once more: two passes over the draws in all.
    """
    from bif.core.influence import _finding_rule

    return _finding_rule(lambda t: covariance_with(t, _query_series(t, query, token, queries), train, block_bytes),
                         trace)
