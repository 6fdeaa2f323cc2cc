"""One evaluation run: benchmark -> retrains -> every method's scores -> LDS ± CI, retrieval, wall time.

`evaluate` returns a JSON-ready dict (written by report.py). Method scores are stored under
<benchmark dir>/methods/ with the seconds they took, so a resumed evaluation reports the original cost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bif.core.config import SamplerConfig, preset
from bif.lm.data import DataSpec, tokenize_texts
from bif.evaluation import baselines
from bif.evaluation.benchmark import Benchmark, BenchmarkSpec, build_benchmark
from bif.evaluation.lds import bootstrap_ci, half_subsets, lds, lds_per_query, predicted_losses, retrain_losses, spearman
from bif.evaluation.retrieval import retrieval_metrics

CONVENTION = ("Every method's score Δ_i is the predicted change in the query loss (Σ over completion tokens) when "
              "training sample i is in the training set; negative = the sample supports the completion. "
              "BIF: Δ = BIF = −Cov(ℓ_i, φ); BIF (correlation): Δ = −Corr; BIF, common mode removed: −Cov of the "
              "residuals after regressing each loss series on the draw's mean training loss; BIF, significant only: "
              "Δ = BIF where the score is significant (Benjamini-Hochberg, FDR 5 % over the query's samples), else 0; "
              "gradient dot: Δ = −∇φ·∇ℓ_i; "
              "cosine: Δ = −cos; TracIn: Δ = −Σ_k η_k ∇φ(w_k)·∇ℓ_i(w_k); EK-FAC: Δ = −(kronfluence score), "
              "kronfluence reporting positive = helpful. Predicted subset loss g(S) = Σ_{i∈S} Δ_i; "
              "LDS = Spearman(g(S_m), L_q(S_m)) over subsets, averaged over queries. Retrieval ranks by −Δ.")

METHODS = {  # name -> (label, kind)
    "bif": ("BIF (−Cov)", "method"),
    "bif_corr": ("BIF (correlation)", "method"),
    "bif_cm": ("BIF, common mode removed (−Cov)", "method"),
    "bif_sig": ("BIF, significant only (−Cov, FDR 5 %)", "method"),
    "ekfac": ("EK-FAC (kronfluence)", "method"),
    "tracin": ("TracIn (checkpoints)", "method"),
    "grad_dot": ("Gradient dot product", "method"),
    "grad_cos": ("Gradient cosine", "method"),
    "tracin_top1": ("TracIn, top-1 only (sparsity reference)", "reference"),
    "word_overlap": ("Word overlap (lexical reference)", "reference"),
    "random": ("Random scores (chance)", "reference"),
    "source_only": ("Source indicator (oracle reference)", "reference"),
}
BIF_KEYS = ("bif", "bif_corr", "bif_cm", "bif_sig")  # all from one run


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: subsets, retrain seeds, the BIF sampler settings, which methods."""

    subsets: int = field(default=32, metadata={"help": "Random half-subsets M retrained for LDS."})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"help": "Retrain seeds per subset (losses averaged)."})
    subset_seed: int = field(default=0, metadata={"help": "Seed of the subset draw."})
    bif: SamplerConfig = field(default=preset("demo-cpu"), metadata={"help": "BIF sampler settings."})
    methods: tuple[str, ...] = field(default=tuple(METHODS), metadata={"help": "Methods to evaluate."})
    n_boot: int = field(default=1000, metadata={"help": "Bootstrap resamples of the subsets for the CI."})
    ekfac_damping: float | None = field(default=None, metadata={"help": "EK-FAC damping; None = kronfluence's "
                                                                        "heuristic 0.1 × mean eigenvalue."})

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"Unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
        if self.subsets < 4 or not self.seeds:
            raise ValueError("at least 4 subsets and one seed")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["bif"] = self.bif.to_dict()
        return d


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cached(bench: Benchmark, name: str, key: dict, compute: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
    """({method: Δ}, info incl. "seconds") stored under methods/<name>-<key>.npz/.json; computed once."""
    d = bench.dir / "methods"
    d.mkdir(exist_ok=True)
    stem = d / f"{name}-{_key(key)}"
    if stem.with_suffix(".json").exists() and stem.with_suffix(".npz").exists():
        info = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz")) as z:
            return {k: z[k] for k in z.files}, info
    t0 = time.perf_counter()
    deltas, info = compute()
    info = {**info, "seconds": info.get("seconds", time.perf_counter() - t0),
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    np.savez(stem.with_suffix(".tmp.npz"), **deltas)
    stem.with_suffix(".tmp.npz").replace(stem.with_suffix(".npz"))
    stem.with_suffix(".json").write_text(json.dumps(info))
    return deltas, info


def bif_run(bench: Benchmark, config: SamplerConfig, cache_root: Path, progress=None):
    """The BIF run of the benchmark model on its whole training set (all scored) and its queries."""
    from bif.lm.models import ModelSpec
    from bif.store.runs import compute_run

    data = DataSpec(source=str(bench.data_path), max_length=bench.spec.max_len, n_scored=None)
    return compute_run(ModelSpec(str(bench.model_dir)), data, bench.queries, config, cache_root=cache_root,
                       progress=progress)


def run_seconds(run) -> float:
    """Sampling + scoring seconds of a run, from the chain files (true even when the run was cached)."""
    return run.sampling_seconds


def bif_deltas(run, n_queries: int, chains: int | None = None, draws: int | None = None) -> dict:
    """{"bif": Δ = −Cov, "bif_corr": Δ = −Corr, "bif_cm": −Cov after removing the common mode} (Q, n) each, plus
    "scores": the Scores of each query, from a finished run (optionally its first `chains` × `draws` only)."""
    from bif.core.influence import samples

    traces = [_trace(run, q, chains, draws) for q in range(n_queries)]
    scores = [samples(t, row) for t, row in traces]
    cm = [common_mode_removed(t, row) for t, row in traces]
    return {"bif": np.stack([s.bif for s in scores]), "bif_corr": np.stack([-s.corr for s in scores]),
            "bif_cm": np.stack([s.bif for s in cm]),
            "bif_sig": np.stack([np.where(s.significant, s.bif, 0.0) for s in scores]),
            "scores": scores, "scores_cm": cm}


def common_mode_removed(trace, row: int):
    """Scores of −Cov after regressing every series on the draw's mean training loss (a control variate).

    Every per-sample loss and the query loss share one dominant direction of fluctuation (the chain moving up and
    down in overall loss); it adds a covariance that is large for every sample and says little about which
    sample matters. Regressing it out of each series (pooled least squares) leaves the partial covariance.
    """
    from bif.core.estimators import covariance

    x = trace.series("train")  # (C, D, n)
    y = trace.series("query", [row])  # (C, D, 1)
    m = x.mean(-1, keepdims=True)
    mc = m - m.mean(axis=(0, 1))
    denom = float((mc**2).sum()) or 1.0

    def resid(z):
        zc = z - z.mean(axis=(0, 1))
        return zc - mc * ((zc * mc).sum(axis=(0, 1)) / denom)

    s = covariance(resid(x), resid(y))
    arrays = {f.name: getattr(s, f.name)[:, 0] for f in dataclasses.fields(s)
              if isinstance(getattr(s, f.name), np.ndarray)}
    return dataclasses.replace(s, **arrays)


def _trace(run, q, chains=None, draws=None):
    from bif.core.trace import LossTrace

    trace, row = run.trace(q)
    if chains is None and draws is None:
        return trace, row
    c, d = chains or trace.chains, draws or trace.draws
    return LossTrace({k: v[:c, :d] for k, v in trace.losses.items()}, trace.masks, trace.init,
                     trace.sampling_loss[:c]), row


def method_deltas(bench: Benchmark, cfg: EvalConfig, cache_root: Path, log=print) -> dict[str, tuple[np.ndarray,
                                                                                                   dict]]:
    """Δ (Q, n) and info for every method of `cfg`."""
    train = tokenize_texts(bench.tokenizer, bench.texts, bench.spec.max_len)
    queries = bench.query_examples()
    Q, n = len(queries), len(train)
    out: dict[str, tuple[np.ndarray, dict]] = {}
    want = set(cfg.methods)
    base = {"bench": bench.spec.key(), "dir": bench.dir.name}

    if want & {"grad_dot", "grad_cos"}:
        log("method: gradient similarity")
        d, info = _cached(bench, "grad", base, lambda: (baselines.gradient_similarity(bench.model, train, queries),
                                                        {"note": "per-sample gradients of all parameters"}))
        out.update({k: (d[k], info) for k in ("grad_dot", "grad_cos") if k in want})
    if want & {"tracin", "tracin_top1"}:
        log("method: TracIn")
        steps = [c["step"] for c in bench.checkpoints]
        d, info = _cached(bench, "tracin", {**base, "steps": steps}, lambda: (
            {"tracin": baselines.tracin(bench.fresh_model, bench.checkpoints, train, queries)},
            {"note": f"{len(steps)} checkpoints (steps {steps}) weighted by the learning rate at each; AdamW "
                     "training, so this is the usual first-order approximation"}))
        out["tracin"] = (d["tracin"], info)
        top = np.zeros_like(d["tracin"])
        best = d["tracin"].argmin(1)
        top[np.arange(Q), best] = d["tracin"][np.arange(Q), best]
        out["tracin_top1"] = (top, {"seconds": info["seconds"], "note": "TracIn's most supporting sample kept, every "
                                    "other score set to 0: shows how much a sparse score gains on this benchmark"})
    if "ekfac" in want:
        log("method: EK-FAC")

        def compute_ekfac():
            delta, info = baselines.ekfac(bench.model, train, queries, bench.dir / "kronfluence", cfg.ekfac_damping)
            return {"ekfac": delta}, info
        d, info = _cached(bench, "ekfac", {**base, "damping": cfg.ekfac_damping, "seeded": 0}, compute_ekfac)
        out["ekfac"] = (d["ekfac"], info)
    if "word_overlap" in want:
        qtext = [q.prompt + q.completion for q in bench.queries]
        out["word_overlap"] = (baselines.word_overlap(bench.texts, qtext), {"seconds": 0.0})
    if "random" in want:
        out["random"] = (baselines.random_scores(Q, n), {"seconds": 0.0})
    if "source_only" in want:
        delta = np.zeros((Q, n))
        delta[np.arange(Q), bench.sources] = -1.0
        out["source_only"] = (delta, {"seconds": 0.0, "note": "knows the answer: −1 for the source, 0 elsewhere"})
    if want & set(BIF_KEYS):
        def compute_bif():
            t0 = time.perf_counter()
            run = bif_run(bench, cfg.bif, cache_root)
            t1 = time.perf_counter()
            d = bif_deltas(run, Q)
            est = time.perf_counter() - t1
            sampled = run_seconds(run) or (t1 - t0)
            return {k: d[k] for k in BIF_KEYS}, {
                "seconds": sampled + est, "run": run.key, "config": cfg.bif.to_dict(),
                "note": f"localized SGLD, {cfg.bif.chains} chains × {cfg.bif.draws} draws, all {n} samples scored"}
        log("method: BIF")
        d, info = _cached(bench, "bif", {**base, "config": cfg.bif.to_dict(), "v": 3}, compute_bif)
        out.update({k: (d[k], info) for k in BIF_KEYS if k in want})
    return out


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def evaluate(spec: BenchmarkSpec, cfg: EvalConfig, cache_root: str | Path = "cache", log=print) -> dict:
    """Run (or resume) the whole evaluation and return the results as a JSON-ready dict."""
    cache_root = Path(cache_root)
    t_start = time.perf_counter()
    bench = build_benchmark(spec, cache_root, log=log)
    n, Q = len(bench.texts), len(bench.queries)
    deltas = method_deltas(bench, cfg, cache_root, log)
    subsets = half_subsets(n, cfg.subsets, cfg.subset_seed)
    losses, records = retrain_losses(bench, subsets, list(cfg.seeds), log)  # (M, S, Q)
    actual = losses.mean(1)
    seed_agreement = None
    if len(cfg.seeds) >= 2:
        seed_agreement = float(np.nanmean([spearman(losses[:, 0, q], losses[:, 1, q]) for q in range(Q)]))
    rows = []
    for name in [m for m in METHODS if m in deltas]:
        delta, info = deltas[name]
        pred = predicted_losses(delta, subsets)
        per_q = lds_per_query(pred, actual)
        abstained = np.isnan(per_q) & (np.ptp(pred, axis=0) == 0)
        lo, hi = bootstrap_ci(pred, actual, cfg.n_boot)
        label, kind = METHODS[name]
        rows.append({"method": name, "label": label, "kind": kind, "lds": lds(pred, actual),
                     "abstained_queries": int(abstained.sum()),
                     "lds_ci": [lo, hi], "lds_per_query": per_q.tolist(), **retrieval_metrics(delta, bench.sources),
                     "seconds": float(info.get("seconds", 0.0)), "info": {k: v for k, v in info.items()
                                                                           if k != "seconds"},
                     "predicted": pred.tolist()})
    src_in = subsets[:, bench.sources]  # (M, Q) whether each query's source is in the subset
    return {
        "title": "BIF vs baselines on the LDS benchmark",
        "convention": CONVENTION,
        "benchmark": {
            "spec": spec.to_dict(), "n_train": n, "n_queries": Q, "model_dir": str(bench.model_dir),
            "recipe_full": spec.recipe(n).to_dict(), "recipe_half": spec.recipe(n // 2).to_dict(),
            "train_loss": bench.train_loss, "train_seconds": bench.train_seconds,
            "description": (f"A fixed {n}-conversation subset of the demo corpus (the {Q} paraphrase sources plus a "
                            f"seeded random draw), a model with the demo architecture trained on it for "
                            f"{spec.epochs} epochs with the demo training code (bif.lm.train.train_lm). Smaller than "
                            "the demo (850 conversations) so that retraining takes seconds, not minutes."),
        },
        "queries": [{"prompt": q.prompt, "completion": q.completion, "source": s, "source_text": bench.texts[s]}
                    for q, s in zip(bench.queries, bench.sources)],
        "lds_setup": {"subsets": cfg.subsets, "subset_size": n // 2, "seeds": list(cfg.seeds),
                      "subset_seed": cfg.subset_seed, "n_boot": cfg.n_boot,
                      "retrain_seconds_total": float(sum(r["seconds"] for r in records)),
                      "retrain_seconds_mean": float(np.mean([r["seconds"] for r in records])),
                      "seed_to_seed_spearman": seed_agreement},
        "config": cfg.to_dict(),
        "actual": actual.tolist(),
        "source_in_subset": src_in.tolist(),
        "methods": rows,
        "wall_seconds": time.perf_counter() - t_start,
        "machine": {"cpus": os.cpu_count(), "torch_threads": _threads(),
                    "load_avg_1_5_15min_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
