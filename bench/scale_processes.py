"""Scale benchmark, processes: `torchrun -m bif run` with 1 and 2 processes (wall time, chain time, identical
traces), and per-process scoring throughput of a shard with N processes against one process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.randomlm import SIZES, bench_model_dir, random_llama, random_tokens
from bench.scale_workers import ENV, torchrun_worker
from bif.dist.launch import torchrun_command


def processes(quick: bool) -> dict:
    from bif.store.runs import open_run
    from bif.core.chainreader import chain_seconds
    from bif.layout import RunFiles, Store

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = bench_model_dir(tmp / "model", "xs")
        from bif.lm.corpus import demo_texts
        (tmp / "train.txt").write_text("\n\n".join(t.replace("\n\n", "\n") for t in demo_texts()))
        draws, n = (10, 128) if quick else (40, 512)
        traces = {}
        for nproc, groups in ((1, None), (2, None), (2, 1)):
            cache = tmp / f"cache{nproc}{groups}"
            cmd = torchrun_command(nproc, [
                "bif", "--cache", str(cache), "run", "--model", str(model), "--data", str(tmp / "train.txt"),
                "--n-scored", str(n), "--prompt", "User: What is AI?\nBot:", "--completion", " Artificial intelligence.",
                "--preset", "demo-cpu", "--set", f"draws={draws}", "--set", "burn_in=10", "--set", "chains=2", "-k",
                "1", *(["--chain-groups", str(groups)] if groups else [])])
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=3600)
            wall = time.perf_counter() - t0
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-3000:])
            run_dir = Store(cache).runs()[0].dir
            run = open_run(run_dir)
            traces[(nproc, groups)] = run.train_losses
            rows.append({"processes": nproc, "chain_groups": groups or min(2, nproc), "wall_s": wall,
                         "chain_s": [chain_seconds(p) for p in RunFiles(run_dir).chains(2)],
                         "n_scored": len(run.train_ids), "draws": draws})
        ref = traces[(1, None)]
        for r, key in zip(rows, traces):
            r["max_abs_diff_vs_1"] = float(np.abs(np.asarray(traces[key]) - ref).max())
    return {"runs": rows, "scoring": torchrun_worker(2, ["scoring", "512" if quick else "1024"])}


def worker_scoring(n: int, repeats: int = 7) -> None:
    """Under torchrun: per-process scoring throughput with all ranks busy vs one rank alone, interleaved.

    Each repeat: rank 0 scores all n rows while the others wait (the single-process rate), then every rank scores
    its shard at once (the per-process rate with W processes). Interleaving makes machine load hit both alike.
    """
    from bif.core.examples import score_batches, scoring_batches
    from bif.dist.distributed import join, shard_rows
    from bif.core.examples import lm_token_loss

    torch.set_num_threads(1)
    dist = join()
    model = random_llama("xs")
    ex = random_tokens(n, 64, SIZES["xs"][2])
    every, mine = scoring_batches(ex, 64), shard_rows(ex, 64, dist.rank, dist.world)
    rows = sum(len(b) for b in mine)
    cpu = torch.device("cpu")
    score_batches(model, lm_token_loss, ex, mine, cpu)  # warm-up
    alone, together = [], []
    for _ in range(repeats):
        dist.barrier()
        if dist.is_main:
            t0 = time.perf_counter()
            score_batches(model, lm_token_loss, ex, every, cpu)
            alone.append(n / (time.perf_counter() - t0))
        dist.barrier()
        t0 = time.perf_counter()
        score_batches(model, lm_token_loss, ex, mine, cpu)
        together.append(rows / (time.perf_counter() - t0))
    rates = [None] * dist.world
    torch.distributed.all_gather_object(rates, statistics.median(together))
    if dist.is_main:
        one = statistics.median(alone)
        print(json.dumps({"single_rows_per_s": one, "rows_per_s": rates, "ratio": [r / one for r in rates],
                          "load_avg": os.getloadavg()[0]}))
