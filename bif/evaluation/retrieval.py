"""Known-answer retrieval: how high each query's source conversation ranks by support (−Δ)."""

from __future__ import annotations

import numpy as np


def source_ranks(delta: np.ndarray, sources: list[int]) -> np.ndarray:
    """1-based rank of each query's source by support −Δ (Q,). Ties count against the source (pessimistic), so a
    method that gives every sample the same score ranks the source last, not first."""
    support = -np.asarray(delta, dtype=np.float64)
    ranks = []
    for q, src in enumerate(sources):
        s = np.nan_to_num(support[q], nan=-np.inf)
        others = np.delete(s, src)
        ranks.append(1 + int((others >= s[src]).sum()))
    return np.array(ranks)


def retrieval_metrics(delta: np.ndarray, sources: list[int], ks: tuple[int, ...] = (1, 10)) -> dict:
    """{"mrr", "recall@k" for each k, "ranks"} of the sources."""
    ranks = source_ranks(delta, sources)
    out = {"mrr": float(np.mean(1.0 / ranks))}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(ranks <= k))
    out["ranks"] = ranks.tolist()
    return out
