"""`python -m bench.scale_bench`: how runs scale: processes, samples, model size; the cost model of docs/method.md §6.

Sections (each measurement in a fresh subprocess, so peak resident memory is its own):
  processes  `torchrun -m bif run` with 1 and 2 processes on one model and data set: wall time, chain time, and
             whether the traces are identical; then per-process scoring throughput (rows/s) of a shard with N
             processes against one process.
  samples    a cheap per-position loss on synthetic data, n scored samples × 200 draws × 4 chains × 64 positions
             (float16 trace on disk): wall time, peak RSS, trace size; then one streaming pass (bif.core.stream).
  models     random Llama models of growing size: SGLD step time, scoring time per sequence, the cost model's
             prediction C·S·t_step + C·D·(n+q)·t_seq against the measured run, peak RSS against estimate_memory.
Timings are medians; with shared CPU cores, compare ratios taken in the same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.benchmark import median_seconds
from bif.lm.registry import SMOLLM2

HERE = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
SIZES = {"xs": (2, 128, 2048), "s": (4, 256, 4096), "m": (6, 384, 8192), "l": (8, 512, 16384)}
# published architectures with random weights: the same compute and memory as the real models (timings only)
SHAPES = {  # layers, hidden, intermediate, heads, kv heads, vocab
    SMOLLM2: (30, 576, 1536, 9, 3, 49152),  # the built-in SmolLM2-135M's shape
    "1b": (16, 2048, 8192, 32, 8, 128256),  # Llama-3.2-1B
    "3b": (28, 3072, 8192, 24, 8, 128256),  # Llama-3.2-3B
}


def vocab_of(size: str) -> int:
    return SHAPES[size][5] if size in SHAPES else SIZES[size][2]


def _sub(args: list[str], timeout: float = 3600) -> dict:
    """Run a worker of this module in a fresh process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, "-m", "bench.scale_bench", *args], capture_output=True, text=True,
                         env=ENV, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def random_llama(size: str, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if size in SHAPES:
        layers, hidden, inter, heads, kv, vocab = SHAPES[size]
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                            num_hidden_layers=layers, num_attention_heads=heads,
                                            num_key_value_heads=kv, max_position_embeddings=2048,
                                            tie_word_embeddings=True)).eval()
    layers, hidden, vocab = SIZES[size]
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
                                        num_hidden_layers=layers, num_attention_heads=max(2, hidden // 64),
                                        num_key_value_heads=max(2, hidden // 64), max_position_embeddings=128,
                                        tie_word_embeddings=True)).eval()


def random_tokens(n: int, T: int, vocab: int, seed: int = 0):
    from bif.core.examples import Examples

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, T), generator=g)
    return Examples(inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                    mask=torch.ones(n, T - 1, dtype=torch.bool), lengths=torch.full((n,), T))


def bench_model_dir(out: Path, size: str = "xs") -> Path:
    """A random Llama of `size` plus a byte-level BPE trained on the demo texts, saved like a real model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from bif.lm.corpus import demo_texts

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(demo_texts(), trainers.BpeTrainer(vocab_size=SIZES[size][2],
                                                             special_tokens=["<|pad|>", "<|eos|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<|pad|>", eos_token="<|eos|>")
    model = random_llama(size)
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------- processes

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
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                   "-m", "bif", "--cache", str(cache), "run", "--model", str(model), "--data",
                   str(tmp / "train.txt"), "--n-scored", str(n), "--prompt", "User: What is AI?\nBot:",
                   "--completion", " Artificial intelligence.", "--preset", "demo-cpu", "--set", f"draws={draws}",
                   "--set", "burn_in=10", "--set", "chains=2", "-k", "1"] + \
                  (["--chain-groups", str(groups)] if groups else [])
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
    return {"runs": rows, "scoring": _torchrun_worker(2, ["scoring", "512" if quick else "1024"])}


def _torchrun_worker(nproc: int, args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m",
           "bench.scale_bench", "_worker", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


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


# ---------------------------------------------------------------------------------------------- samples

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
            out.append(_sub(["_worker", "samples", str(n), str(draws), "4", "64", tmp]))
    return out


# ---------------------------------------------------------------------------------------------- models

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
    return [_sub(["_worker", "model", s, n, draws, device]) for s in sizes]


# ---------------------------------------------------------------------------------------------- report

def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller measurements, for a smoke check")
    p.add_argument("--only", choices=("processes", "samples", "models"), action="append")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="models section: where to run")
    p.add_argument("--sizes", help="models section: comma-separated, from " + ", ".join([*SIZES, *SHAPES]))
    a = p.parse_args(argv)
    which = a.only or ["processes", "samples", "models"]
    res: dict = {"when": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "torch": torch.__version__}
    GiB = 2**30
    if "processes" in which:
        r = res["processes"] = processes(a.quick)
        print("## processes (random Llama 'xs', 0.6 M params, demo texts, 2 chains)\n")
        print("| processes | chain groups | wall s | chain s | identical to 1 process |\n|---|---|---|---|---|")
        for x in r["runs"]:
            print(f"| {x['processes']} | {x['chain_groups']} | {x['wall_s']:.1f} | "
                  f"{', '.join(f'{s:.1f}' for s in x['chain_s'])} | max |diff| {x['max_abs_diff_vs_1']:.1e} |")
        sc = r["scoring"]
        print(f"\nscoring throughput (interleaved, same launch): 1 process alone {sc['single_rows_per_s']:.0f} rows/s; "
              f"2 processes {', '.join(f'{v:.0f}' for v in sc['rows_per_s'])} rows/s each -> per-process ratio "
              f"{', '.join(f'{v:.2f}' for v in sc['ratio'])} (goal >= 0.9; load average {sc['load_avg']:.1f})\n")
    if "samples" in which:
        r = res["samples"] = samples(a.quick)
        print("## samples (cheap loss, 4 chains, 64 positions, float16 trace on disk)\n")
        print("| n | draws | full trace (float32) | on disk | record s | peak RSS | streaming scores s | peak RSS | "
              "RSS before |\n|---|---|---|---|---|---|---|---|---|")
        for x in r:
            print(f"| {x['n']} | {x['draws']} | {x['full_trace_float32_bytes'] / GiB:.1f} GiB | "
                  f"{x['trace_disk_bytes'] / GiB:.1f} GiB | {x['record_s']:.0f} | "
                  f"{x['peak_rss_record'] / 2**20:.0f} MiB | {x['scores_s']:.0f} | {x['peak_rss'] / 2**20:.0f} MiB | "
                  f"{x['base_rss'] / 2**20:.0f} MiB |")
        print()
    if "models" in which:
        r = res["models"] = models(a.quick, a.sizes.split(",") if a.sizes else None, a.device)
        mem = "peak GPU memory | GPU memory before model" if a.device == "cuda" else "peak RSS | RSS before model"
        print(f"## models (random Llama, 64 tokens, 2 chains, batch 32, cost model of docs/method.md §6; {a.device})\n")
        print("| model | params | SGLD step s | scoring s/seq | predicted s | measured s | measured/predicted | "
              f"{mem} | estimate |\n|---|---|---|---|---|---|---|---|---|---|")
        for x in r:
            print(f"| {x['size']} | {x['params'] / 1e6:.1f} M | {x['t_step_s']:.3f} | {x['t_seq_s'] * 1e3:.2f} ms | "
                  f"{x['predicted_s']:.1f} | {x['measured_s']:.1f} | {x['ratio']:.2f} | "
                  f"{x['peak_rss_bytes'] / 2**20:.0f} MiB | {x['base_rss'] / 2**20:.0f} MiB | "
                  f"{x['estimate_bytes'] / 2**20:.0f} MiB |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))


def _worker(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    if kind == "scoring":
        worker_scoring(int(rest[0]))
    elif kind == "samples":
        worker_samples(int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]), rest[4])
    elif kind == "model":
        worker_model(rest[0], int(rest[1]), int(rest[2]), rest[3] if len(rest) > 3 else "cpu")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker(sys.argv[2:])
    else:
        main()
