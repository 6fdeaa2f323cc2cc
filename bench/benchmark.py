"""`python -m bif bench`: the speed and trust figures quoted in the README, all measured in one run.

1. Trust (bench/trust.py): demo-cpu and careful-cpu, each run with two seeds on the held-out TEST queries with a
   query-independent ranked set: findings per query, the null's false findings, source MRR, flagged-set Jaccard.
2. Scoring throughput of the trace recorder (bif.core.examples.score_examples) against a bare batched forward pass of
   the same model over the same samples.
3. One SGLD step (bif.core.sampler.sgld_step + gradient) against a plain torch.optim.SGD step.
4. Optional (--fresh-clone): wall time from `git clone` to the first finished demo run, with a new venv.
Timings are medians of repeats taken in the same run; ratios compare neighbours, so machine noise cancels.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scoring_vs_forward(model, examples, batch_size: int, repeats: int = 5) -> dict:
    """Sequences per second of score_examples and of a bare forward pass (logits only) on the same batches."""
    from bif.core.examples import lm_token_loss, score_examples

    from bif.core.examples import scoring_batches

    n = len(examples)
    batches = [examples.batch(idx)[0] for idx in scoring_batches(examples, batch_size)]

    @torch.no_grad()
    def bare():
        for inputs in batches:
            model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])

    t_ours, t_ref = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
        t_ours.append(median_seconds(lambda: score_examples(model, lm_token_loss, examples, batch_size), 1))
        t_ref.append(median_seconds(bare, 1))
    ours, ref = statistics.median(t_ours), statistics.median(t_ref)
    return {"scoring_seq_per_s": n / ours, "bare_forward_seq_per_s": n / ref, "ratio": ref / ours}


def sgld_vs_sgd(model, examples, batch_size: int, repeats: int = 20) -> dict:
    """Seconds per step: our SGLD step (grad + localized noisy update) against torch.optim.SGD on one minibatch."""
    from bif.core.examples import lm_token_loss
    from bif.core.sampler import sgld_step

    inputs, mask = examples.batch(list(range(min(batch_size, len(examples)))))
    params = [p for p in model.parameters() if p.requires_grad]
    w_star = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(0)

    def loss():
        per = lm_token_loss(model, inputs, mask)[:, : mask.shape[1]]
        return (per * mask).sum() / mask.sum()

    def ours():
        grads = torch.autograd.grad(loss(), params)
        with torch.no_grad():
            sgld_step(params, list(grads), w_star, step_size=1e-7, nbeta=1.0, gamma=1.0, noise_gen=gen)

    opt = torch.optim.SGD(params, lr=1e-7)

    def plain():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    t_ours, t_plain = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both alike
        t_ours.append(median_seconds(ours, 1))
        t_plain.append(median_seconds(plain, 1))
    with torch.no_grad():
        for p, p0 in zip(params, w_star):
            p.copy_(p0)
    return {"sgld_step_s": statistics.median(t_ours), "sgd_step_s": statistics.median(t_plain),
            "ratio": statistics.median(t_ours) / statistics.median(t_plain)}


SCAN = ({"step_size": 1e-4}, {"step_size": 3e-4}, {"step_size": 1e-4, "steps_between": 4}, {"step_size": 3e-4, "gamma": 10000.0})


def mixing_scan(base: str, cache_root: str, n_scored: int = 142) -> list[dict]:
    """How settings change mixing and the known sources' z-scores at 4 chains x 100 draws (one seed each).

    The TUNING set (bif.lm.queries.TUNING_PARAPHRASES, 12 queries) in one run: this scan chose demo-cpu,
    so its figures are tuning-set figures. The ranked set is n_scored samples, among them each query's 8 nearest
    by word overlap (query_neighbours, so that every source is ranked: a set chosen by the queries, fine for
    comparing settings with each other, not for judging retrieval). Reports ESS per draw, lag-1 autocorrelation,
    the mean sampling loss over kept draws, the median z-score (corr / SE) of the sources, their MRR, and the cost.
    """
    from bif.core import influence
    from bif.core.config import preset
    from bif.core.diagnostics import diagnose
    from bif.core.chainreader import chain_seconds
    from bif.lm.queries import TUNING_PARAPHRASES, paraphrase_queries
    from bif.lm.data import DataSpec
    from bif.lm.models import ModelSpec
    from bif.store.runs import compute_run

    queries, sources = paraphrase_queries(TUNING_PARAPHRASES)
    rows = []
    for over in SCAN:
        cfg = preset(base, **over)
        run = compute_run(ModelSpec("demo"), DataSpec("demo", n_scored=n_scored, query_neighbours=8), queries, cfg,
                          cache_root)
        trace, _ = run.trace(0)
        d = diagnose(trace, cfg.nbeta, cfg.burn_in)
        zs, ranks = [], []
        for qi, source in enumerate(sources):
            trace, row = run.trace(qi)
            s = influence.samples(trace, row)
            i = run.train_ids.index(source)
            zs.append(s.corr[i] / s.corr_se[i])
            ranks.append(int((s.corr > s.corr[i]).sum()) + 1)
        rows.append({"change": over or "none", "n_scored": len(run.train_ids), "verdict": d.verdict,
                     "kept_loss": d.kept_loss, "init_loss": d.init_loss, "ess_per_draw": d.ess_per_draw,
                     "lag1": d.lag1_median, "median_z": float(np.median(zs)), "mrr": float(np.mean(1 / np.array(ranks))),
                     "seconds": run.sampling_seconds})
    return rows


def basin_check(model_name: str, base: str, cache_root: str, overrides: dict | None = None, steps: int = 30) -> dict:
    """The sampling loss of one short chain of preset `base` on a model, every 3 steps (does it stay in the basin?).

    A cheap first check of a preset on a new model: 30 SGLD steps at batch 8 over the demo corpus, on the CPU.
    Minibatch losses are noisy (batch 8); a chain that leaves the basin shows it within a few steps.
    """
    from bif.core.config import preset
    from bif.lm.corpus import demo_texts
    from bif.lm.data import tokenize_texts
    from bif.core.examples import lm_token_loss
    from bif.lm.models import ModelSpec, load_model
    from bif.core.sampler import run_chain

    loaded = load_model(ModelSpec(model_name), cache_root)
    ex = tokenize_texts(loaded.tokenizer, demo_texts(), 64)
    cfg = preset(base, **{"batch_size": 8, "draws": steps // 3, "burn_in": 0, "steps_between": 3, "device": "cpu",
                          **(overrides or {})})
    t0 = time.perf_counter()
    losses, _, _ = run_chain(loaded.model, lm_token_loss, ex, cfg, 0, lambda d: None, None, torch.device("cpu"))
    losses = losses.numpy()
    return {"config": cfg.to_dict(), "every_3": losses[::3].tolist(), "start": float(losses[0]),
            "mean_after_start": float(losses[1:].mean()), "max": float(losses.max()),
            "seconds": time.perf_counter() - t0}


def fresh_clone_to_first_run(repo: Path) -> dict:
    """Seconds from `git clone` to a finished demo run, per stage: a new venv (pip from the local index), the demo
    model's training, the run (the README's commands)."""
    prompt = "\"$(printf 'User: Which number do you like best?\\nBot:')\""
    stages = {"clone": f"git clone -q {repo} bif", "install": "cd bif && bash scripts/setup.sh",
              "demo model": "cd bif && .venv/bin/python -m bif demo",
              "run": f"cd bif && .venv/bin/python -m bif run --prompt {prompt} "
                     "--completion \" I find I'm quite fond of the number 42.\" -k 3"}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd in stages.items():
            t0 = time.perf_counter()
            subprocess.run(["bash", "-c", cmd], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            out[name] = time.perf_counter() - t0
    return out


def _overrides(args) -> dict:
    """The --set KEY=VALUE changes to the preset."""
    from bif.core.config import parse_settings

    return parse_settings(args.set)


def main(args) -> None:
    from bif.lm.corpus import demo_texts
    from bif.lm.data import tokenize_texts
    from bif.lm.models import ModelSpec, load_model

    torch.set_num_threads(1)
    print(f"# bif bench (preset {args.preset} {_overrides(args) or ''}; torch threads 1; "
          f"{time.strftime('%Y-%m-%d %H:%M')})\n")
    if getattr(args, "basin", None):
        r = basin_check(args.basin, args.preset, args.cache, _overrides(args))
        c = r["config"]
        print(f"basin check: {args.basin}, preset {args.preset} (ε {c['step_size']:g}, nβ {c['nbeta']:g}, γ {c['gamma']:g}, "
              f"batch {c['batch_size']}), {len(r['every_3']) * 3} SGLD steps on the CPU ({r['seconds']:.0f} s)")
        print("sampling loss every 3 steps: " + " ".join(f"{v:.2f}" for v in r["every_3"]))
        print(f"start {r['start']:.2f}, mean of the later steps {r['mean_after_start']:.2f}, max {r['max']:.2f}")
        return
    if getattr(args, "scan", False):
        print(f"mixing scan around {args.preset} (4 chains x 100 draws; the 12 TUNING queries in one run):")
        print("| change | scored | verdict | loss w* -> kept | ESS/draw | lag-1 | median source z | source MRR | "
              "cost (s) |\n|---|---|---|---|---|---|---|---|---|")
        for r in mixing_scan(args.preset, args.cache):
            print(f"| {r['change']} | {r['n_scored']} | {r['verdict']} | {r['init_loss']:.2f} -> {r['kept_loss']:.2f} | "
                  f"{r['ess_per_draw']:.2f} | {r['lag1']:.2f} | {r['median_z']:.1f} | {r['mrr']:.2f} | "
                  f"{r['seconds']:.0f} |")
        return
    if getattr(args, "trust_only", False):
        from bench import trust

        trust.main(args)
        return
    loaded = load_model(ModelSpec("demo"), args.cache)
    ex = tokenize_texts(loaded.tokenizer, demo_texts()[:256], 64)
    fwd = scoring_vs_forward(loaded.model, ex, 64, repeats=3 if args.quick else 7)
    print(f"scoring: {fwd['scoring_seq_per_s']:.0f} seq/s vs bare forward {fwd['bare_forward_seq_per_s']:.0f} seq/s "
          f"-> ratio {fwd['ratio']:.2f} (goal >= 0.9)")
    step = sgld_vs_sgd(loaded.model, ex, 32, repeats=5 if args.quick else 30)
    print(f"SGLD step {1e3 * step['sgld_step_s']:.1f} ms vs SGD step {1e3 * step['sgd_step_s']:.1f} ms "
          f"-> ratio {step['ratio']:.2f} (goal <= 1.15)")
    from bench import trust

    print()
    trust.main(args)
    if getattr(args, "fresh_clone", False):
        t = fresh_clone_to_first_run(Path.cwd())
        print(f"\nfresh clone -> first finished demo run: {sum(t.values()):.0f} s ("
              + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + ")")
