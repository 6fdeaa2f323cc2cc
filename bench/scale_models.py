"""Scale benchmark, models: random Llamas of growing size; SGLD step and scoring time per sequence, the cost
model's prediction C·S·t_step + C·D·(n+q)·t_seq against a recorded run, peak memory against estimate_memory.
"""

from __future__ import annotations

import json
import tempfile
import time

import torch

from bench.benchmark import median_seconds
from bench.randomlm import random_llama, random_tokens, vocab_of
from bench.scale_workers import run_worker


def worker_model(size: str, n: int, draws: int, device: str = "cpu") -> None:
    """Cost model check on a random Llama: micro-benchmarks vs a recorded run; peak memory vs the estimate.

    On CUDA: timings synchronize the GPU, peak = torch.cuda.max_memory_allocated, the estimate is the GPU's."""
    from bif.core import stream
    from bif.core.config import SamplerConfig
    from bif.core.examples import lm_token_loss, score_examples
    from bif.core.sampler import sgld_step
    from bif.core.scale import ScaleOptions, estimate_memory, peak_resident_bytes, resident_bytes

    torch.set_num_threads(1)
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    base = torch.cuda.memory_allocated() if cuda else resident_bytes()
    model = random_llama(size).to(device)
    T = 64
    train = random_tokens(max(n, 256), T, vocab_of(size))
    scored = train.subset(list(range(n)))
    query = random_tokens(1, T, vocab_of(size), seed=1)
    cfg = SamplerConfig(step_size=1e-6, nbeta=30.0, gamma=3000.0, chains=2, draws=draws, burn_in=4,
                        steps_between=1, batch_size=32, score_batch_size=64, device=device)
    est = estimate_memory(model, cfg, ScaleOptions(), n_train=len(train), n_scored=n, n_query=1, seq_len=T,
                          device=torch.device(device))
    params = list(model.parameters())
    w_star = [p.detach().clone() for p in params]
    inputs, mask = train.batch(list(range(cfg.batch_size)), device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        per = lm_token_loss(model, inputs, mask)
        grads = torch.autograd.grad((per * mask).sum() / mask.sum(), params)
        with torch.no_grad():
            sgld_step(params, list(grads), w_star, step_size=1e-9, nbeta=1.0, gamma=1.0, noise_gen=gen)
        sync()

    t_step = median_seconds(step, 5)
    with torch.no_grad():
        for p, p0 in zip(params, w_star):
            p.copy_(p0)
    w_star.clear()  # free the copy: stream.record keeps its own
    t_seq = median_seconds(lambda: (score_examples(model, lm_token_loss, scored, 64, device), sync()), 3) / n
    predicted = cfg.chains * cfg.steps_per_chain * t_step + cfg.chains * cfg.draws * (n + 1) * t_seq
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stream.record(model, lm_token_loss, train, {"train": scored, "query": query}, cfg, tmp)
        sync()
        measured = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if cuda else peak_resident_bytes()
    print(json.dumps({"size": size, "device": device, "params": sum(p.numel() for p in params), "n": n,
                      "draws": draws, "estimate_parts": est.parts,
                      "t_step_s": t_step, "t_seq_s": t_seq, "predicted_s": predicted, "measured_s": measured,
                      "ratio": measured / predicted, "peak_rss_bytes": peak, "base_rss": base,
                      "estimate_bytes": est.total}))


def models(quick: bool, sizes: list[str] | None = None, device: str = "cpu") -> list[dict]:
    sizes = sizes or (["xs", "s"] if quick else ["xs", "s", "m"])
    n, draws = ("128", "10") if quick else ("256", "20")
    return [run_worker(["_worker", "model", s, n, draws, device]) for s in sizes]
