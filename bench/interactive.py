"""`python -m bif bench --interactive`: how interactive the demo is, measured in one run (README "Interactive runs").

1. A demo run started as the app starts it (a background job, one process per core): seconds to the first
   provisional result (bif.store.partial), the estimate the job showed 20 s after start against the actual time.
2. A new question on the finished run: from stored draws (model cold, then kept as the app keeps it), against
   replay (measured with --replay, else the run's sampling seconds) and a full run (the job's wall time).
3. Ranking the whole training set from the stored draws (bif.store.rank); disk per run, by kind of file.
4. The trust frontier of growing runs on the held-out TEST paraphrases (bif.evaluation.heldout, not the tuning
   set): two seeds, each run grown 100 → 200 → 400 → 800 draws per chain (each an extension of the last); at
   each, the flagged-set Jaccard between the seeds and each seed's source MRR.
--quick uses a smaller run everywhere (a smoke check of the command, not figures).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

QUERY = ("What do you think about rainy days?", "I love rainy days, they are perfect for reading.")


def _demo_request(cache: str, config: dict):
    from bif.core.config import SamplerConfig
    from bif.lm.corpus import format_prompt
    from bif.lm.data import DataSpec, Query
    from bif.lm.models import ModelSpec
    from bif.service.jobspec import run_job_spec
    from bif.store.request import RunRequest

    query = Query(format_prompt(QUERY[0]), " " + QUERY[1])
    return run_job_spec(RunRequest(ModelSpec("demo"), DataSpec("demo"), (query,), SamplerConfig.from_dict(config)),
                        cache)


def first_provisional(cache: str, request, poll_s: float = 0.5) -> dict:
    """Start a run job as the app does; time its first provisional result, the estimate at 20 s, the total."""
    from bif.layout import Store
    from bif.service import jobs
    from bif.store.partial import open_partial

    t0 = time.time()
    job = jobs.start_job(request, cache)
    first = estimate = None
    while True:
        s = jobs.job_status(job, cache)
        now = time.time() - t0
        p = s["progress"]
        if estimate is None and now >= 20 and p.get("eta_s") is not None and p.get("stage") == "sample":
            estimate = now + float(p["eta_s"])
        if first is None and p.get("run_key"):
            if open_partial(Store(cache).run(p["run_key"]).dir) is not None:
                first = now
        if s["state"] not in jobs.ACTIVE:
            break
        time.sleep(poll_s)
    if s["state"] != "done":
        raise RuntimeError(f"demo job {job} {s['state']}: {s['message']}")
    actual = time.time() - t0
    return {"run_key": s["result"]["run_key"], "first_provisional_s": first, "estimate_at_20s_s": estimate,
            "actual_s": actual, "estimate_error": None if estimate is None else (estimate - actual) / actual}


ASKED = ("Do you like the sound of rain at night?", "Is a rainy Sunday a good day to stay in?",
         "Would you walk in the rain?")
ANSWER = " I love rainy days: the sound of rain on the window is calming, and it is a good day to read a book."


def ask_latency(run, cache: str, replay: bool = False, asked=ASKED, answer: str = ANSWER) -> dict:
    """Seconds for a new question from stored draws (cold: model loaded; warm: model kept, the app's path), and by
    replay (with `replay`). `answer` is the completion explained (the demo's: 30 tokens)."""
    import bif
    from bif.lm.corpus import format_prompt
    from bif.store.replay import replay_estimate_s

    def ask(text: str, loaded=None, method="draws") -> float:
        t = time.perf_counter()
        bif.add_queries(run, [bif.Query(format_prompt(text), answer)], cache, method=method, loaded=loaded)
        return time.perf_counter() - t

    t = time.perf_counter()
    loaded = bif.load_model(bif.ModelSpec(**run.request["model"]), cache)
    load_s = time.perf_counter() - t
    cold = ask(asked[0])
    warm = ask(asked[1], loaded)
    tokens = int(bif.tokenize_queries(loaded.tokenizer, [bif.Query(format_prompt(asked[1]), answer)],
                                      loaded.max_length).mask.sum())
    out = {"draws_cold_s": cold, "draws_warm_s": warm, "model_load_s": load_s, "completion_tokens": tokens,
           "replay_estimate_s": replay_estimate_s(run)}
    if replay:
        out["replay_s"] = ask(asked[2], method="replay")
    return out


def rank_time(run, cache: str) -> dict:
    from bif.store.rank import rank_all, unranked

    rest = unranked(run)
    t = time.perf_counter()
    ranked = rank_all(run, cache)
    return {"rows": rest, "seconds": time.perf_counter() - t, "ranked": len(ranked.train_ids)}


def disk(run_dir: Path) -> dict:
    """MiB of a run folder by kind of file (stored draws, chain traces, chain states, the rest)."""
    from bif import layout

    stem = len("000.safetensors")
    kinds = {"draws": layout.draws_name(0)[:-stem], "chains": layout.chain_name(0)[:-stem],
             "states": layout.state_name(0)[:-stem]}
    out = dict.fromkeys([*kinds, "other"], 0.0)
    for p in Path(run_dir).rglob("*"):
        if p.is_file():
            kind = next((k for k, pre in kinds.items() if p.name.startswith(pre) and p.parent == Path(run_dir)),
                        "other")
            out[kind] += p.stat().st_size / 2**20
    out["total"] = sum(out.values())
    return out


def frontier(cache: str, preset_name: str = "demo-cpu", steps=(100, 200, 400, 800), seeds=(0, 1),
             quick: bool = False) -> list[dict]:
    """Seed agreement and source MRR on the TEST paraphrases as runs grow; each size extends the one before.
    With one seed, only its runs and its figures (no agreement): two processes, one per seed, fill the cache."""
    from bif.core import influence
    from bif.core.config import preset
    from bif.core.estimators import jaccard
    from bif.evaluation.heldout import TEST_PARAPHRASES
    from bif.evaluation.queries import paraphrase_queries
    from bif.lm.data import DataSpec
    from bif.lm.models import ModelSpec
    from bif.store.runs import compute_run

    queries, sources = paraphrase_queries(TEST_PARAPHRASES[:4] if quick else TEST_PARAPHRASES)
    rows = []
    for draws in steps:
        runs, seconds = [], []
        for seed in seeds:
            cfg = preset(preset_name, seed=seed, draws=draws, **({"burn_in": 10} if quick else {}))
            t = time.perf_counter()
            runs.append(compute_run(ModelSpec("demo"), DataSpec("demo", n_scored=None), queries, cfg, cache))
            seconds.append(time.perf_counter() - t)
        js, rr, found = [], [[] for _ in seeds], [0 for _ in seeds]
        for qi, src in enumerate(sources):
            flagged = []
            for si, run in enumerate(runs):
                s = influence.samples(*run.trace(qi))
                flagged.append({run.train_ids[i] for i in np.flatnonzero(s.significant)})
                found[si] += len(flagged[-1])
                order = [run.train_ids[i] for i in np.argsort(-s.support)]
                rr[si].append(1.0 / (order.index(src) + 1) if src in order else 0.0)
            j = jaccard(sorted(flagged[0]), sorted(flagged[1])) if len(flagged) == 2 else None
            if j is not None:
                js.append(j)
        rows.append({"draws": draws, "jaccard_mean": float(np.mean(js)) if js else None, "queries_flagged": len(js),
                     "mrr": [float(np.mean(r)) for r in rr], "seconds": seconds, "queries": len(sources),
                     "findings_per_query": [f / len(sources) for f in found]})
    return rows


def main(args) -> None:
    from bif.core.config import preset
    from bif.layout import Store
    from bif.store.runs import open_run

    cache = args.cache
    quick = args.quick
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    if getattr(args, "frontier_only", False):
        return print_frontier(args)
    cfg = preset(args.preset, **({"draws": 20, "burn_in": 10} if quick else {})).to_dict()
    r = first_provisional(cache, _demo_request(cache, cfg))
    err = "n/a" if r["estimate_error"] is None else f"{r['estimate_error']:+.0%}"
    print(f"demo run ({args.preset}{', quick' if quick else ''}) as a job: first provisional result after "
          f"{r['first_provisional_s']:.1f} s; estimate at 20 s {r['estimate_at_20s_s'] or float('nan'):.0f} s vs "
          f"actual {r['actual_s']:.0f} s ({err})")
    run = open_run(Store(cache).run(r["run_key"]).dir)
    a = ask_latency(run, cache, replay=getattr(args, "replay", False))
    replay = a.get("replay_s")
    print(f"new question ({a['completion_tokens']}-token completion) from stored draws: {a['draws_cold_s']:.2f} s cold (model load {a['model_load_s']:.2f} s), "
          f"{a['draws_warm_s']:.2f} s with the model kept (the app's path); replay "
          + (f"{replay:.0f} s measured" if replay else f"about {a['replay_estimate_s']:.0f} s (the run's sampling "
             "seconds; --replay measures it)")
          + f"; full run {r['actual_s']:.0f} s: {r['actual_s'] / a['draws_warm_s']:.0f}x the warm question")
    k = rank_time(run, cache)
    print(f"ranking the whole training set: {k['rows']} more texts in {k['seconds']:.0f} s ({k['ranked']} ranked)")
    d = disk(run.dir)
    print("disk of the run: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in d.items()))
    if not getattr(args, "no_frontier", False):
        print_frontier(args)


def print_frontier(args) -> None:
    """The frontier table (--frontier-steps; --quick: 10, 20, 40, 80 draws and 4 queries), with the load."""
    from bif.errors import ConfigError

    try:
        steps = (10, 20, 40, 80) if args.quick else tuple(int(x) for x in args.frontier_steps.split(","))
    except ValueError:
        raise ConfigError(f"--frontier-steps {args.frontier_steps}: give draws per chain, e.g. 100,200,400.") from None
    from bench.trust import parse_seeds

    seeds = parse_seeds(getattr(args, "seeds", None))
    torch.set_num_threads(1)  # like bif bench: two seed processes side by side on 2 cores must not fight for them
    per = "seed " + " / ".join(str(x) for x in seeds)
    alone = "; one seed: no agreement between seeds" if len(seeds) == 1 else ""
    print("trust frontier on the held-out TEST paraphrases, all training texts ranked (each size extends the one "
          f"before; one torch thread; seconds include cached runs at ~0{alone}):")
    print(f"| draws per chain | findings per query, {per} | flagged-set Jaccard, seeds {' vs '.join(map(str, seeds))} "
          f"(queries flagging) | source MRR {per} | seconds |")
    print("|---|---|---|---|---|")
    for row in frontier(args.cache, args.preset, steps, seeds=seeds, quick=args.quick):
        j = "n/a" if row["jaccard_mean"] is None else f"{row['jaccard_mean']:.2f}"
        print(f"| {row['draws']} | {' / '.join(f'{f:.2f}' for f in row['findings_per_query'])} | {j} "
              f"({row['queries_flagged']} of {row['queries']}) | {' / '.join(f'{m:.2f}' for m in row['mrr'])} | "
              f"{' + '.join(f'{s:.0f}' for s in row['seconds'])} |")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
