"""Scale benchmark, samples: a cheap per-position loss on synthetic data, n samples × draws × 4 chains × 64
positions recorded as a float16 trace on disk (bif.core.stream), then one streaming pass: times and peak RSS.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.scale_workers import run_worker


class _Diagonal(torch.nn.Module):
    def __init__(self, positions: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((positions,), 0.1))


def _diagonal_loss(model, inputs):  # (B, P): one cheap "position" per feature
    return 0.5 * (inputs["x"] * model.w - inputs["y"][:, None] / model.w.numel()) ** 2


def synthetic_problem(n: int, positions: int, seed: int = 0):
    """(Examples (n, P), model, loss_fn): a regression whose loss costs almost nothing, to measure the memory side
    of huge traces without the cost of a language model."""
    from bif.core.examples import Examples

    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, positions, generator=g)
    y = X @ torch.randn(positions, generator=g) / positions
    ex = Examples(inputs={"x": X, "y": y}, mask=torch.ones(n, positions, dtype=torch.bool))
    return ex, _Diagonal(positions), _diagonal_loss


def worker_samples(n: int, draws: int, chains: int, positions: int, out_dir: str) -> None:
    """Record a float16 trace of n samples with a cheap loss, then one streaming pass; peak RSS and times."""
    from bif.core import stream
    from bif.layout import TraceFiles
    from bif.core.config import SamplerConfig
    from bif.core.scale import peak_resident_bytes, resident_bytes

    torch.set_num_threads(1)
    ex, model, loss_fn = synthetic_problem(n, positions)
    cfg = SamplerConfig(step_size=1e-4, nbeta=10.0, gamma=100.0, chains=chains, draws=draws, burn_in=0,
                        steps_between=1, batch_size=256, score_batch_size=16384, trace_dtype="float16", device="cpu")
    base = resident_bytes()
    t0 = time.perf_counter()
    trace = stream.record(model, loss_fn, ex, {"train": ex, "query": ex.subset([0])}, cfg, out_dir)
    t_record = time.perf_counter() - t0
    peak_record = peak_resident_bytes()
    t0 = time.perf_counter()
    top = stream.samples(trace, 0).top(10)
    t_scores = time.perf_counter() - t0
    disk = sum(p.stat().st_size for p in TraceFiles(Path(out_dir)).existing_chains())
    print(json.dumps({"n": n, "draws": draws, "chains": chains, "positions": positions, "record_s": t_record,
                      "scores_s": t_scores, "base_rss": base, "peak_rss_record": peak_record,
                      "peak_rss": peak_resident_bytes(), "trace_disk_bytes": disk,
                      "full_trace_float32_bytes": chains * draws * n * positions * 4, "top": top.tolist()}))


def samples(quick: bool) -> list[dict]:
    sizes = (10_000, 30_000) if quick else (10_000, 30_000, 100_000)
    draws = 50 if quick else 200
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BIF_BENCH_TMP")) as tmp:
            out.append(run_worker(["_worker", "samples", str(n), str(draws), "4", "64", tmp]))
    return out
