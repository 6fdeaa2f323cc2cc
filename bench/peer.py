"""`python -m bif bench --peer devinterp`: the whole `bif run` against devinterp 2.0.1, side by side.

Two fixtures, both the demo model with demo-cpu's hyperparameters (ε 3e-4, nβ 300, γ 3000, batch 32, burn-in 50,
2 steps between draws) and 2 chains × 25 draws, one torch thread each, 255 ranked training texts plus the demo
query, so that both sides record the per-token losses of the same 256 rows at every draw:
  equal: the demo conversations at least T = 32 tokens long (304 of 850), cut to T, since devinterp samples from
         equal-length sequences (the query padded to T on devinterp's side: right padding leaves a causal
         model's earlier losses unchanged). Both sides do the same work.
  demo:  all demo conversations as `bif run` reads them (max_length 64), padded to 64 for devinterp with a loss
         that masks the padding (bench/peer_devinterp.masked_loss).
Each side runs as a fresh process, timed from its start to its influences: `python -m bif run ...` (fresh cache,
--procs 1, its defaults otherwise: stored draws, chain states, top samples printed) and `python -m
bench.peer_devinterp` (devinterp.slt.bif.bif; scoring at w* limited to 8 batches = bif's 256 rows, where
devinterp's default is 32 batches per chain). Runs alternate bif, devinterp, bif, ...; the report gives medians
and ranges of wall and CPU seconds (user + system of the process, all threads: the figure to trust on a shared
machine) with the load average before each run, then the fairness check (mean losses of both traces).

devinterp is an optional peer: never in requirements*.txt. Install it beside the project:
    python3 -m venv peer-venv && peer-venv/bin/pip install torch==2.13.0 devinterp==2.0.1 -r requirements.txt
and pass --peer-python peer-venv/bin/python (default: this Python).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T = 32  # tokens per sequence of the 'equal' fixture
ROOT = Path(__file__).resolve().parents[1]  # the repository: both sides run from it
PROMPT, COMPLETION = "User: Which number do you like best?\nBot:", " I find I'm quite fond of the number 42."
INSTALL = ("python3 -m venv peer-venv && peer-venv/bin/pip install torch==2.13.0 devinterp==2.0.1 -r requirements.txt"
           ", then: python -m bif bench --peer devinterp --peer-python peer-venv/bin/python")


def hyper(chains: int = 2, draws: int = 25) -> dict:
    """The fixture's sampler settings: demo-cpu with `chains` x `draws`; init_batches is devinterp's w* pass."""
    from bif.core.config import preset

    c = preset("demo-cpu", chains=chains, draws=draws)
    return {"step_size": c.step_size, "nbeta": c.nbeta, "gamma": c.gamma, "chains": c.chains, "draws": c.draws,
            "batch_size": c.batch_size, "burn_in": c.burn_in, "steps_between": c.steps_between, "seed": c.seed,
            "init_batches": 8, "preconditioner": c.preconditioner}


def build_fixture(folder: Path, cache: str, chains: int, draws: int, kind: str = "equal") -> dict:
    """Write the fixture: data.jsonl (kind 'equal', for bif), tokens.safetensors (the same token ids, for
    devinterp) and fixture.json. kind 'equal': the demo texts of at least T tokens, cut to T; 'demo': all demo
    texts as `bif run` reads them (max_length 64), padded to 64 for devinterp, whose loss then masks the padding."""
    import torch
    from safetensors.torch import save_file

    from bif.lm.corpus import demo_texts
    from bif.lm.data import DataSpec, Query, scored_indices, tokenize_queries, tokenize_texts
    from bif.lm.models import ModelSpec, load_model

    loaded = load_model(ModelSpec("demo"), cache)
    pad = loaded.tokenizer.pad_token_id
    everything = demo_texts()
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "equal":
        lengths = tokenize_texts(loaded.tokenizer, everything, 10 * T).lengths
        texts = [t for t, n in zip(everything, lengths.tolist()) if n >= T]
        data, width = folder / "data.jsonl", T
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    else:
        texts, data, width = everything, "demo", 64
    train = tokenize_texts(loaded.tokenizer, texts, width)
    width = train.inputs_width
    assert kind != "equal" or int(train.lengths.min()) == T, "every fixture text fills T tokens"
    query = Query(PROMPT, COMPLETION)
    spec = DataSpec(str(data), max_length=width, n_scored=255, query_neighbours=8)  # bif run's defaults but n_scored
    ids, _ = scored_indices(texts, spec, [query])
    qex = tokenize_queries(loaded.tokenizer, [query], loaded.max_length)
    qrow = torch.full((1, width), pad, dtype=torch.long)
    qrow[0, :qex.inputs_width] = qex.inputs["input_ids"][0]
    qmask = torch.zeros(width - 1, dtype=torch.bool)
    qmask[:qex.positions] = qex.mask[0]
    ids_t = torch.tensor(ids)
    save_file({"sampling": train.inputs["input_ids"].contiguous(),
               "observed": torch.cat([train.inputs["input_ids"][ids_t], qrow]).contiguous(),
               "query_mask": qmask.to(torch.uint8)}, str(folder / "tokens.safetensors"))
    fx = {"kind": kind, "width": width, "pad_id": pad, "masked": kind != "equal", "model_dir": str(loaded.path),
          "data": str(data), "n_texts": len(texts), "scored_ids": ids, "hyper": hyper(chains, draws)}
    (folder / "fixture.json").write_text(json.dumps(fx))
    return fx


def bif_command(fx: dict, cache: Path) -> list[str]:
    h = fx["hyper"]
    return [sys.executable, "-m", "bif", "--cache", str(cache), "run", "--data", fx["data"], "--max-length",
            str(fx["width"]), "--n-scored", "255", "--prompt", PROMPT, "--completion", COMPLETION, "--procs", "1",
            "--preset", "demo-cpu", "--set", f"chains={h['chains']}", "--set", f"draws={h['draws']}"]


def run_bif(fx: dict, work: Path, cache: str) -> dict:
    """One whole `bif run` in a fresh cache (the demo model linked in); seconds and the fairness statistics."""
    import numpy as np

    from bif.layout import Store
    from bif.store.catalog import list_runs
    from bif.store.runs import open_run

    root = work / f"bif-{time.time_ns()}"
    (root / "models").mkdir(parents=True)
    model = Path(fx["model_dir"])
    (root / "models" / model.name).symlink_to(model.resolve())
    t0, cpu0 = time.time(), _children_cpu()
    proc = subprocess.run(bif_command(fx, root), env=_env(), capture_output=True, text=True, cwd=ROOT)
    seconds, cpu = time.time() - t0, _children_cpu() - cpu0
    if proc.returncode:
        raise RuntimeError(f"bif run failed: {proc.stderr.strip().splitlines()[-1:]}")
    run = open_run(Store(root).run(list_runs(root)[0]["key"]).dir)
    assert run.train_ids == fx["scored_ids"], "bif ranked the fixture's rows"
    h, trace = fx["hyper"], run.train_losses.astype(np.float64)
    q = run.query_sets[0]
    out = {"seconds": seconds, "cpu_seconds": cpu, "train_loss_per_draw": trace.sum(-1).mean(2).tolist(),
           "query_loss_per_draw": (q.losses[:, :, 0] * q.mask[0]).sum(-1).tolist(),
           "sampling_loss_mean": float(run.sampling_loss[:, h["burn_in"]:].mean()),
           "init_loss_mean": float(run.train_init.sum() / run.train_mask.sum())}
    shutil.rmtree(root, ignore_errors=True)
    return out


def run_devinterp(fx_dir: Path, work: Path, python: str) -> dict:
    out = work / f"devinterp-{time.time_ns()}"
    out.mkdir(parents=True)
    t0 = time.time()
    proc = subprocess.run([python, "-m", "bench.peer_devinterp", str(fx_dir), str(out)], env=_env(),
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"devinterp run failed: {proc.stderr.strip().splitlines()[-1:]}")
    res = json.loads((out / "result.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {**res, "seconds": res["done"] - t0}


def _children_cpu() -> float:
    import resource

    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}


def peer_available(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import devinterp, datasets, xarray"], capture_output=True).returncode == 0
    except OSError:  # no such Python
        return False


def main(args) -> int:
    python = getattr(args, "peer_python", None) or sys.executable
    if not peer_available(python):
        print(f"devinterp is not importable from {python}: install it beside the project with: {INSTALL}",
              file=sys.stderr)
        return 1
    rounds = getattr(args, "rounds", None) or 3
    kind = getattr(args, "fixture", None) or "both"
    kinds = ("equal", "demo") if kind == "both" else (kind,)
    work = Path(tempfile.mkdtemp(prefix="bif-peer-"))
    print(f"# bif vs devinterp 2.0.1, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, one torch thread "
          f"each, {rounds} alternating rounds per fixture")
    for kind in kinds:
        fx = build_fixture(work / kind, args.cache, chains=2, draws=25, kind=kind)
        h = fx["hyper"]
        what = (f"{fx['n_texts']} demo texts of {T} tokens" if kind == "equal" else
                f"all {fx['n_texts']} demo texts (max_length 64; devinterp: padded to 64, padding masked)")
        print(f"\n## fixture '{kind}': demo model, {what}, 255 ranked + 1 query, {h['chains']} chains x {h['draws']} "
              f"draws, eps {h['step_size']:g}, nbeta {h['nbeta']:g}, gamma {h['gamma']:g}, batch {h['batch_size']}, "
              f"burn-in {h['burn_in']}, {h['steps_between']} steps between")
        res: dict[str, list[dict]] = {"bif": [], "devinterp": []}
        for r in range(rounds):
            for side in ("bif", "devinterp"):
                load = os.getloadavg()[0]
                got = run_bif(fx, work, args.cache) if side == "bif" else run_devinterp(work / kind, work, python)
                got["load"] = load
                res[side].append(got)
                print(f"round {r + 1} {side:9s} {got['seconds']:6.1f} s wall, {got['cpu_seconds']:6.1f} s CPU   "
                      f"load average before {load:.2f}", flush=True)
        report(res, fx)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(res: dict, fx: dict) -> None:
    import numpy as np

    med = {}
    for k, v in res.items():
        for what in ("seconds", "cpu_seconds"):
            s = [r[what] for r in v]
            med[k, what] = statistics.median(s)
            print(f"{k:9s} {'wall' if what == 'seconds' else 'CPU '} median {med[k, what]:.1f} s, range "
                  f"{min(s):.1f}-{max(s):.1f} s over {len(s)} runs")
        print(f"{'':9s} load average before its runs {min(r['load'] for r in v):.2f}-{max(r['load'] for r in v):.2f}")
    print(f"devinterp / bif (medians): wall {med['devinterp', 'seconds'] / med['bif', 'seconds']:.2f}x, CPU "
          f"{med['devinterp', 'cpu_seconds'] / med['bif', 'cpu_seconds']:.2f}x (goal >= 2)")
    print("fairness (first run of each; sampling loss per token over the kept steps; summed losses per row):")
    for k, v in res.items():
        r = v[0]
        tl, ql = np.asarray(r["train_loss_per_draw"]), np.asarray(r["query_loss_per_draw"])
        w = f"{r['init_loss_mean']:.3f}" if k == "bif" or not fx["masked"] else "n/a (mean over padding)"
        print(f"  {k:9s} sampling loss {r['sampling_loss_mean']:.3f} (w*: {w}); ranked rows' loss at the draws "
              f"{tl.mean():.2f} (sd over draws {tl.std():.2f}); query completion loss {ql.mean():.2f} "
              f"(sd {ql.std():.2f})")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=os.environ.get("BIF_CACHE", "cache"))
    ap.add_argument("--peer-python")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fixture", choices=("equal", "demo", "both"), default="both")
    sys.exit(main(ap.parse_args()))
