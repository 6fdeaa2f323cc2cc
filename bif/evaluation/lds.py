"""Linear datamodeling score (LDS, from TRAK; docs/method.md §7) against real retraining.

Convention for every method: a score Δ_i = the predicted *change in the query loss* when z_i is in the training
set (negative = z_i supports the completion). The predicted loss of a subset S is g(S) = Σ_{i∈S} Δ_i, and

    LDS = mean over queries of Spearman( g(S_m), L_q(S_m) ) over the M subsets,

where L_q(S_m) is the query loss (Σ over completion tokens) of the model retrained on S_m (mean over seeds).
The confidence interval is a percentile bootstrap over subsets.

Retrains are stored under <benchmark dir>/retrain/<key>.json (key = benchmark recipe + subset + seed; the query
losses, train loss and seconds) and <key>.safetensors (the weights, so new queries need no retraining), each
written when it finishes, so a stopped evaluation resumes where it left off.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.torch import load_file
from scipy import stats

from bif.core.files import read_json, save_tensors, write_json
from bif.evaluation.benchmark import Benchmark, query_losses, train_recipe


def half_subsets(n: int, m: int, seed: int = 0) -> np.ndarray:
    """M random subsets of size ⌊n/2⌋ as a boolean matrix (M, n); seeded, distinct rows when possible."""
    rng = np.random.default_rng(seed)
    rows, seen, tries = [], set(), 0
    while len(rows) < m:
        pick = np.zeros(n, dtype=bool)
        pick[rng.choice(n, n // 2, replace=False)] = True
        tries += 1
        if pick.tobytes() in seen and tries < 100 * m:  # tiny n: duplicates only when unavoidable
            continue
        seen.add(pick.tobytes())
        rows.append(pick)
    return np.stack(rows)


def predicted_losses(delta: np.ndarray, subsets: np.ndarray) -> np.ndarray:
    """g(S_m) for every subset and query: delta (Q, n), subsets (M, n) bool -> (M, Q)."""
    return subsets.astype(np.float64) @ np.asarray(delta, dtype=np.float64).T


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties; NaN if either side is constant."""
    return float(lds_per_query(np.asarray(a, float)[:, None], np.asarray(b, float)[:, None])[0])


def lds_per_query(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Spearman over subsets for each query (Pearson of average ranks): pred, actual (M, Q) -> (Q,).

    NaN for a query where either side is constant (no ranking to compare) or with fewer than 3 subsets.
    """
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    if pred.shape[0] < 3:
        return np.full(pred.shape[1], np.nan)
    rp = stats.rankdata(pred, axis=0)
    ra = stats.rankdata(actual, axis=0)
    rp -= rp.mean(0)
    ra -= ra.mean(0)
    den = np.sqrt((rp**2).sum(0) * (ra**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rp * ra).sum(0) / np.where(den > 0, den, 1), np.nan)


def lds(pred: np.ndarray, actual: np.ndarray) -> float:
    """Mean over queries of the per-query Spearman correlation.

    A query on which a method predicts the same loss for every subset (e.g. it flags no sample) counts as 0: no
    information, not skipped, so a method cannot raise its mean by abstaining. Queries whose measured loss is
    constant are skipped (NaN if all are).
    """
    per = lds_per_query(pred, actual)
    flat_pred = np.ptp(np.asarray(pred, float), axis=0) == 0
    per = np.where(np.isnan(per) & flat_pred, 0.0, per)
    return float(np.nanmean(per)) if np.any(~np.isnan(per)) else float("nan")


def bootstrap_ci(pred: np.ndarray, actual: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `lds`, resampling subsets (rows) with replacement."""
    rng = np.random.default_rng(seed)
    M = pred.shape[0]
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, M, M)
        v = lds(pred[idx], actual[idx])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _retrain_key(bench: Benchmark, subset: np.ndarray, seed: int) -> str:
    ids = [bench.conv_ids[i] for i in np.flatnonzero(subset)]
    blob = json.dumps({"spec": bench.spec.key(), "benchmark_seed": bench.dir.name, "ids": ids, "seed": seed})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def retrain_losses(bench: Benchmark, subsets: np.ndarray, seeds: list[int],
                   log: Callable[[str], None] = print) -> tuple[np.ndarray, list[dict]]:
    """Query losses of the model retrained on each subset with each seed: (M, n_seeds, Q), and one record each.

    Each retrain is stored when it finishes (JSON: subset ids, seed, seconds, train loss, query losses keyed by the
    query fingerprint); stored ones are reused, so a stopped evaluation resumes.
    """
    qex = bench.query_examples()
    out_dir = bench.dir / "retrain"
    out_dir.mkdir(exist_ok=True)
    M, S, Q = len(subsets), len(seeds), len(bench.queries)
    losses = np.full((M, S, Q), np.nan)
    records = []
    t_start, done_now = time.perf_counter(), 0
    todo = sum(1 for m in range(M) for s in seeds if not _has(out_dir / f"{_retrain_key(bench, subsets[m], s)}.json",
                                                            qex.fingerprint))
    for m, subset in enumerate(subsets):
        for j, seed in enumerate(seeds):
            path = out_dir / f"{_retrain_key(bench, subset, seed)}.json"
            rec = read_json(path)
            weights = path.with_suffix(".safetensors")
            if rec is not None and qex.fingerprint not in rec["query_losses"] and weights.exists():
                model = bench.fresh_model(seed)  # new queries on a stored retrain: no training needed
                model.load_state_dict(load_file(str(weights)), strict=False)
                rec["query_losses"][qex.fingerprint] = query_losses(model, qex).tolist()
                write_json(path, rec)
            if rec is None or qex.fingerprint not in rec["query_losses"]:
                texts = [bench.texts[i] for i in np.flatnonzero(subset)]
                model, loss, secs, _ = train_recipe(bench.spec, bench.tokenizer, texts, seed)
                ql = query_losses(model, qex).tolist()
                save_tensors({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, weights)
                rec = rec or {"ids": [bench.conv_ids[i] for i in np.flatnonzero(subset)], "seed": seed,
                              "seconds": secs, "train_loss": loss, "query_losses": {}}
                rec["query_losses"][qex.fingerprint] = ql
                write_json(path, rec)
                done_now += 1
                eta = (time.perf_counter() - t_start) / done_now * (todo - done_now)
                log(f"retrain {done_now}/{todo}: subset {m} seed {seed}: {secs:.1f}s, train loss {loss:.3f}, "
                    f"eta {eta / 60:.1f} min")
            losses[m, j] = rec["query_losses"][qex.fingerprint]
            records.append({"subset": m, "seed": seed, "seconds": rec["seconds"], "train_loss": rec["train_loss"]})
    return losses, records


def _has(path: Path, fingerprint: str) -> bool:
    rec = read_json(path)
    return rec is not None and fingerprint in rec.get("query_losses", {})
