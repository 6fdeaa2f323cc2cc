"""Write evaluation and sweep results as JSON (for the app page) and Markdown (for people and the README)."""

from __future__ import annotations

import json
from pathlib import Path

EVAL_JSON, EVAL_MD = "evaluation.json", "evaluation.md"
SWEEP_JSON, SWEEP_MD = "sweep.json", "sweep.md"


CHECKPOINT_METHODS = ("tracin",)  # need the training run's checkpoints; every other method sees the final weights only


def describe_config(cfg: dict) -> str:
    """A sampler config in words: 'step size 0.0001, nβ 300, γ 3000, 4 chains × 100 draws, burn-in 50, …'."""
    return (f"step size {cfg.get('step_size'):g}, nβ {cfg.get('nbeta'):g}, γ {cfg.get('gamma'):g}, "
            f"{cfg.get('chains')} chains × {cfg.get('draws')} draws, burn-in {cfg.get('burn_in')}, "
            f"{cfg.get('steps_between')} step(s) between draws, minibatch {cfg.get('batch_size')}, seed {cfg.get('seed')}"
            + (f", only {', '.join(cfg['param_patterns'])}" if cfg.get("param_patterns") else ""))


def takeaway(res: dict) -> str:
    """What the evaluation shows, in two sentences computed from its numbers (for the Evidence page).

    Compares the best BIF variant's LDS with the best checkpoint method (TracIn), the final-weights-only methods
    and word overlap; says the training loss per token of the benchmark model (how far it memorised its data)."""
    rows = [r for r in res["methods"] if r.get("lds") is not None and r["lds"] == r["lds"]]
    bif = [r for r in rows if r["method"].startswith("bif")]
    if not bif:
        return "No BIF result in this evaluation."
    best = max(bif, key=lambda r: r["lds"])
    ckpt = [r for r in rows if r["method"] in CHECKPOINT_METHODS]
    final = [r for r in rows if r["kind"] == "method" and not r["method"].startswith("bif")
             and r["method"] not in CHECKPOINT_METHODS]
    words = next((r for r in rows if r["method"] == "word_overlap"), None)
    parts = [f"Best BIF variant here: {best['label']}, LDS {best['lds']:.2f}"]
    for r in ckpt + ([words] if words else []):
        if r["lds"] <= best["lds"]:
            continue
        apart = None not in (best["lds_ci"][1], r["lds_ci"][0]) and best["lds_ci"][1] < r["lds_ci"][0]
        parts.append(f"{'below' if apart else 'level with (95 % intervals overlap)'} {r['label']} ({r['lds']:.2f})")
    if final:
        beaten = [r for r in final if r["lds"] < best["lds"]]
        share = f"all {len(final)}" if len(beaten) == len(final) else f"{len(beaten)} of the {len(final)}"
        parts.append(f"above {share} other methods that, like BIF, see only the final "
                     "weights (" + ", ".join(f"{r['label']} {r['lds']:.2f}" for r in final) + ")")
    text = ", ".join(parts) + "."
    top = max(bif, key=lambda r: r.get("recall@1") or 0)
    others = [r for r in ckpt + ([words] if words else []) if r.get("recall@1") is not None]
    if top.get("recall@1") is not None and others:
        text += (f" Known source ranked first: {top['recall@1']:.0%} of queries by {top['label']}, "
                 + ", ".join(f"{r['recall@1']:.0%} by {r['label']}" for r in others) + ".")
    why = []
    if ckpt:
        why.append("TracIn adds up gradient similarities at checkpoints saved during training (it sees the training "
                   "path); BIF, EK-FAC and gradient similarity see only the final weights")
    b = res.get("benchmark", {})
    if b.get("train_loss") is not None:
        rec = b.get("recipe_full") or {}
        epochs = rec.get("steps", 0) * rec.get("batch_size", 0) / max(b.get("n_train", 0), 1)
        fit = f"the benchmark model fits its training data closely (loss {b['train_loss']:.2f} per token" + (
            f" after {epochs:.0f} epochs" if epochs else "") + ": close to memorised)"
        if words and words["lds"] > best["lds"]:
            fit += (" and each query paraphrases one of those conversations, so shared words alone already point "
                    "at the source")
        why.append(fit)
    if why:
        text += " Why: " + "; ".join(why) + "."
    return text


def _f(x, nd: int = 2) -> str:
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def evaluation_markdown(res: dict) -> str:
    b, s = res["benchmark"], res["lds_setup"]
    lines = [f"# {res['title']}", "",
             f"Benchmark: {b['description']} Benchmark model train loss {b['train_loss']:.3f} per token "
             f"({b['recipe_full']['steps']} steps, {b['train_seconds']:.0f} s). {b['n_queries']} paraphrase queries, "
             f"each answered by its source conversation (which is in the training set).", "",
             f"LDS: {s['subsets']} random half-subsets ({s['subset_size']} conversations), retrained with the same "
             f"recipe ({b['recipe_half']['steps']} steps) and seeds {s['seeds']} "
             f"(mean {s['retrain_seconds_mean']:.0f} s per retrain, {s['retrain_seconds_total'] / 60:.0f} min in all); "
             f"95 % CI: percentile bootstrap over subsets ({s['n_boot']} resamples).", ""]
    if s.get("seed_to_seed_spearman") is not None:
        lines += [f"Retrain seed-to-seed agreement of the query losses (Spearman over subsets, mean over queries): "
                  f"{s['seed_to_seed_spearman']:.2f}.", ""]
    lines += ["| method | LDS | 95 % CI | source MRR | recall@1 | recall@10 | wall time |",
              "|---|---|---|---|---|---|---|"]
    for r in res["methods"]:
        secs = r["seconds"]
        t = "—" if r["kind"] == "reference" else (f"{secs:.1f} s" if secs < 120 else f"{secs / 60:.1f} min")
        lines.append(f"| {r['label']} | {_f(r['lds'])} | [{_f(r['lds_ci'][0])}, {_f(r['lds_ci'][1])}] | "
                     f"{_f(r['mrr'])} | {_f(r['recall@1'])} | {_f(r['recall@10'])} | {t} |")
    abst = [f"{r['label']} ({r['abstained_queries']} of {b['n_queries']})" for r in res["methods"]
            if r.get("abstained_queries")]
    if abst:
        lines += ["", "Queries on which a method predicts the same loss for every subset (e.g. flags no sample) count "
                  "as LDS 0: " + ", ".join(abst) + "."]
    lines += ["", f"Sign convention: {res['convention']}", "",
              "Reference rows are not attribution methods: word overlap is lexical similarity, random is chance "
              "level, the source indicator knows the answer (it shows how much of the LDS comes from whether the "
              "paraphrased conversation is in the subset).", ""]
    c = res["config"]["bif"]
    lines += [f"BIF sampler: step size ε {c['step_size']:g}, nβ {c['nbeta']:g}, γ {c['gamma']:g}, "
              f"{c['chains']} chains × {c['draws']} draws, burn-in {c['burn_in']}, {c['steps_between']} steps between draws, batch "
              f"{c['batch_size']}, preconditioner {c['preconditioner']}, seed {c['seed']}.", ""]
    notes = [f"- {r['label']}: {r['info']['note']}" for r in res["methods"] if r["info"].get("note")]
    if notes:
        lines += ["What each method computed:", *notes, ""]
    m = res.get("machine") or {}
    if m:
        load = m.get("load_avg_1_5_15min_at_end") or []
        lines.append(f"Wall times: {m.get('torch_threads')} torch thread(s) on a {m.get('cpus')}-CPU machine shared "
                     f"with other jobs (load average at the end: {', '.join(f'{x:.1f}' for x in load)}); "
                     "BIF's time is the sampling + scoring seconds stored with its chains. Times measured under "
                     "different loads compare only roughly.")
        lines.append("")
    lines.append(f"Computed by one run of `python -m bif.evaluation` on {res['created']} "
                 f"({res['wall_seconds'] / 60:.1f} min wall, cached stages included at their original cost).")
    return "\n".join(lines) + "\n"


def sweep_markdown(res: dict) -> str:
    lines = [f"# {res['title']}", "", res["description"], "",
             "| setting | chains × draws | cost (s) | source MRR (seed 0 / 1) | recall@1 | flagged per query | "
             "flagged-set Jaccard | LDS (−Cov) | LDS (corr) | LDS (significant only) | MRR cm | Jaccard cm | LDS cm |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['setting']} | {r['chains']} × {r['draws']} | {r['cost_s']:.0f} | "
                     f"{_f(r['mrr'][0])} / {_f(r['mrr'][1])} | {_f(r['recall@1'])} | {_f(r['flagged'], 1)} | "
                     f"{_f(r['jaccard'])} | {_f(r['lds'])} | {_f(r['lds_corr'])} | {_f(r.get('lds_sig'))} | "
                     f"{_f(r['mrr_cm'][0])} | "
                     f"{_f(r['jaccard_cm'])} | {_f(r['lds_cm'])} |")
    lines += ["", res["notes"], ""]
    return "\n".join(lines) + "\n"


def write_json_md(out: Path, data: dict, json_name: str, md_name: str, md: str) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jp, mp = out / json_name, out / md_name
    for path, text in ((jp, json.dumps(data, indent=1)), (mp, md)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return jp, mp


def write_evaluation(res: dict, out: str | Path) -> tuple[Path, Path]:
    return write_json_md(Path(out), res, EVAL_JSON, EVAL_MD, evaluation_markdown(res))


def write_sweep(res: dict, out: str | Path) -> tuple[Path, Path]:
    return write_json_md(Path(out), res, SWEEP_JSON, SWEEP_MD, sweep_markdown(res))


def load_results(out: str | Path, name: str = EVAL_JSON) -> dict | None:
    """The stored results, or None when there are none (or they are unreadable)."""
    try:
        return json.loads((Path(out) / name).read_text())
    except (OSError, ValueError):
        return None
