"""`python -m bif bench`: the speed and trust figures quoted in the README, all measured in one run.

1. Trust: the preset run twice with independent seeds on the demo's paraphrase queries; per query, the Jaccard
   index of the training samples flagged as standing out of the noise, and the rank of the known source.
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


TOP_K = 5  # the supporting list's length compared between seeds (the app shows top-k lists)


def seed_agreement(preset_name: str, cache_root: str, seeds=(0, 1), quick: bool = False,
                   overrides: dict | None = None) -> dict:
    """Run the demo preset with two seeds on the demo queries; Jaccard of flagged sets and source ranks."""
    from bif.core import influence
    from bif.lm.corpus import DEMO_QUERIES
    from bif.core.config import preset
    from bif.lm.data import DataSpec, Query
    from bif.core.diagnostics import diagnose
    from bif.core.estimators import jaccard
    from bif.lm.models import ModelSpec
    from bif.store.runs import compute_run

    model = ModelSpec("demo")
    chosen = DEMO_QUERIES[:3] if quick else DEMO_QUERIES
    # paraphrased questions with the source conversation's answer as the completion: a known right answer
    queries = [Query(q["prompt"], q["completion"]) for q in chosen]
    data = DataSpec("demo")
    runs, seconds = [], []
    for seed in seeds:
        cfg = preset(preset_name, seed=seed, **(overrides or {}), **({"draws": 20, "burn_in": 10} if quick else {}))
        run = compute_run(model, data, queries, cfg, cache_root)
        runs.append(run)  # cost: the sampling + scoring seconds stored with each chain (also for a cached run)
        seconds.append(run.sampling_seconds)
    rows = []
    for qi, q in enumerate(chosen):
        flagged, ranks, tops = [], [], []
        for run in runs:
            trace, row = run.trace(qi)
            s = influence.samples(trace, row)
            flagged.append(set(run.train_ids[i] for i in np.flatnonzero(s.significant)))
            order = [run.train_ids[i] for i in np.argsort(-s.support)]
            ranks.append(order.index(q["source"]) + 1 if q["source"] in order else None)
            tops.append(set(order[:TOP_K]))
        rows.append({"prompt": q["prompt"], "flagged": [len(f) for f in flagged],
                     "jaccard": jaccard(sorted(flagged[0]), sorted(flagged[1])), "source_rank": ranks,
                     "top_overlap": len(tops[0] & tops[1]) / TOP_K})
    cfg = runs[0].config
    # agreement bought by leaving the basin is not the local BIF: report each run's verdict next to it
    health = [diagnose(run.trace(0)[0], cfg.nbeta, cfg.burn_in) for run in runs]
    return {"preset": preset_name, "config": cfg.to_dict(), "seconds_per_run": seconds, "queries": rows,
            "n_scored": len(runs[0].train_ids),
            "health": [{"verdict": d.verdict, "init_loss": d.init_loss, "kept_loss": d.kept_loss,
                        "ess_per_draw": d.ess_per_draw} for d in health]}


SCAN = ({"step_size": 1e-4}, {"step_size": 3e-4}, {"step_size": 1e-4, "steps_between": 4}, {"step_size": 3e-4, "gamma": 10000.0})


def mixing_scan(base: str, cache_root: str, n_scored: int = 64) -> list[dict]:
    """How settings change mixing and the known sources' z-scores at 4 chains x 100 draws (one seed each).

    All 12 demo paraphrase queries in one run; the scored set is n_scored random samples plus each query's 8
    nearest by word overlap (so every source is scored). Reports ESS per draw, lag-1 autocorrelation, the mean
    sampling loss over kept draws, the median z-score (corr / SE) of the sources, their MRR, and the cost.
    """
    from bif.core import influence
    from bif.lm.corpus import DEMO_QUERIES
    from bif.core.config import preset
    from bif.lm.data import DataSpec, Query
    from bif.core.diagnostics import diagnose
    from bif.lm.models import ModelSpec
    from bif.store.runs import compute_run

    queries = [Query(q["prompt"], q["completion"]) for q in DEMO_QUERIES]
    rows = []
    for over in SCAN:
        cfg = preset(base, **over)
        run = compute_run(ModelSpec("demo"), DataSpec("demo", n_scored=n_scored), queries, cfg, cache_root)
        trace, _ = run.trace(0)
        d = diagnose(trace, cfg.nbeta, cfg.burn_in)
        zs, ranks = [], []
        for qi, q in enumerate(DEMO_QUERIES):
            trace, row = run.trace(qi)
            s = influence.samples(trace, row)
            i = run.train_ids.index(q["source"])
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
        print(f"mixing scan around {args.preset} (4 chains x 100 draws; 12 paraphrase queries in one run):")
        print("| change | scored | verdict | loss w* -> kept | ESS/draw | lag-1 | median source z | source MRR | "
              "cost (s) |\n|---|---|---|---|---|---|---|---|---|")
        for r in mixing_scan(args.preset, args.cache):
            print(f"| {r['change']} | {r['n_scored']} | {r['verdict']} | {r['init_loss']:.2f} -> {r['kept_loss']:.2f} | "
                  f"{r['ess_per_draw']:.2f} | {r['lag1']:.2f} | {r['median_z']:.1f} | {r['mrr']:.2f} | "
                  f"{r['seconds']:.0f} |")
        return
    loaded = load_model(ModelSpec("demo"), args.cache)
    ex = tokenize_texts(loaded.tokenizer, demo_texts()[:256], 64)
    fwd = scoring_vs_forward(loaded.model, ex, 64, repeats=3 if args.quick else 7)
    print(f"scoring: {fwd['scoring_seq_per_s']:.0f} seq/s vs bare forward {fwd['bare_forward_seq_per_s']:.0f} seq/s "
          f"-> ratio {fwd['ratio']:.2f} (goal >= 0.9)")
    step = sgld_vs_sgd(loaded.model, ex, 32, repeats=5 if args.quick else 30)
    print(f"SGLD step {1e3 * step['sgld_step_s']:.1f} ms vs SGD step {1e3 * step['sgd_step_s']:.1f} ms "
          f"-> ratio {step['ratio']:.2f} (goal <= 1.15)")
    agree = seed_agreement(args.preset, args.cache, quick=args.quick, overrides=_overrides(args))
    print(f"\nseed-to-seed agreement, preset {args.preset}, {agree['n_scored']} scored samples, "
          f"{np.median(agree['seconds_per_run']):.0f} s of sampling + scoring per run (one thread, chains in turn):")
    for s, h in enumerate(agree["health"]):
        print(f"seed {s}: diagnose verdict {h['verdict']!r}, sampling loss {h['init_loss']:.2f} at w* -> "
              f"{h['kept_loss']:.2f} over kept draws, ESS/draw {h['ess_per_draw']:.2f}")
    print("| query | flagged (seed 0, seed 1) | Jaccard | source rank (seed 0, seed 1) |\n|---|---|---|---|")
    for r in agree["queries"]:
        j = "n/a (none flagged)" if r["jaccard"] is None else f"{r['jaccard']:.2f}"
        print(f"| {r['prompt'].splitlines()[0][6:60]} | {r['flagged']} | {j} | {r['source_rank']} |")
    js = [r["jaccard"] for r in agree["queries"] if r["jaccard"] is not None]
    print(f"flagged-set Jaccard over {len(js)} queries with flagged samples: mean {np.mean(js) if js else np.nan:.2f}, "
          f"median {np.median(js) if js else np.nan:.2f}")
    print(f"top-{TOP_K} supporting lists shared between seeds: mean {np.mean([r['top_overlap'] for r in agree['queries']]):.2f}"
          " (fraction of the list; the ranking the user sees, finding or not)")
    for s in (0, 1):
        ranks = np.array([r["source_rank"][s] or np.inf for r in agree["queries"]], dtype=float)
        print(f"seed {s}: source MRR {np.mean(1 / ranks):.2f}, recall@1 {np.mean(ranks == 1):.2f} "
              f"({len(ranks)} paraphrase queries, source among the scored samples)")
    if getattr(args, "fresh_clone", False):
        t = fresh_clone_to_first_run(Path.cwd())
        print(f"\nfresh clone -> first finished demo run: {sum(t.values()):.0f} s ("
              + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + ")")
