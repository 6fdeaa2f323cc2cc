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
Modules: scale_processes, scale_samples, scale_models (the sections), randomlm (the models), scale_workers (the
fresh processes); this one prints the report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from bench.randomlm import SHAPES, SIZES
from bench.scale_models import models, worker_model
from bench.scale_processes import processes, worker_scoring
from bench.scale_samples import samples, worker_samples


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
