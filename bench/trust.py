"""Trust figures of presets, judged on the TEST set (bif.evaluation.heldout) with a query-independent scored set.

For each preset, two runs with independent seeds over the same known-answer queries and the same ranked samples
(a seeded random subset, or all: never chosen by the queries, `DataSpec.query_neighbours` = 0). Per run: findings
per query and the built-in null's false findings (bif.core.null), the reciprocal rank of each query's known
source when it is among the ranked samples; between the two seeds: the Jaccard index of the flagged sets. Cost:
the sampling + scoring seconds stored with each chain, and the machine's load average while it ran.

`bif bench` calls `main`; `measure` takes any model, data and known-answer queries (tests use the tiny model).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

PRESETS = ("demo-cpu", "careful-cpu")
SEEDS = (0, 1)
FAST = {"draws": 20, "burn_in": 10}  # --quick: the presets' chains and settings, far fewer draws (a smoke check)


@dataclass(frozen=True)
class KnownAnswer:
    """A query whose right answer is known: `source` is the index of its source in the training texts."""

    query: object  # bif.lm.data.Query
    source: int


@dataclass
class SeedResult:
    seed: int
    seconds: float  # sampling + scoring, summed over chains (as stored with each chain, also for a cached run)
    verdict: str  # bif.diagnose
    real: np.ndarray  # (q,) findings per query
    null: np.ndarray  # (q,) false findings per query under the null
    reciprocal_ranks: list  # (q,) 1/rank of the source, None where it is not among the ranked samples
    flagged: list  # (q,) sets of flagged training ids


@dataclass
class PresetTrust:
    preset: str
    config: dict
    n_scored: int
    how_scored: str
    seeds: list[SeedResult]
    jaccard: list  # (q,) Jaccard of the two seeds' flagged sets; None where neither flags anything
    load: tuple[float, float]  # 1-minute load average before and after

    @property
    def null_rate(self) -> float:
        flagged = sum(int(s.null.sum()) for s in self.seeds)
        return flagged / max(1, self.n_scored * sum(len(s.null) for s in self.seeds))

    def mrr(self, s: SeedResult) -> tuple[float, int]:
        """(MRR over the queries whose source is ranked, how many those are)."""
        rr = [r for r in s.reciprocal_ranks if r is not None]
        return (float(np.mean(rr)) if rr else float("nan")), len(rr)

    @property
    def mean_jaccard(self) -> tuple[float, int]:
        js = [j for j in self.jaccard if j is not None]
        return (float(np.mean(js)) if js else float("nan")), len(js)


def test_set(n: int | None = None) -> list[KnownAnswer]:
    """The first n (default all) held-out TEST paraphrases as known-answer queries on the demo corpus."""
    from bif.evaluation.heldout import TEST_PARAPHRASES
    from bif.evaluation.queries import paraphrase_queries

    queries, sources = paraphrase_queries(TEST_PARAPHRASES[:n])
    return [KnownAnswer(q, s) for q, s in zip(queries, sources)]


def measure(preset_name: str, model, data, answers: list[KnownAnswer], cache_root, seeds=SEEDS,
            overrides: dict | None = None) -> PresetTrust:
    """Two (or more) seeds of a preset on known-answer queries; see the module docstring for what is measured."""
    from bif.core import influence, null
    from bif.core.config import preset
    from bif.core.diagnostics import diagnose
    from bif.core.estimators import jaccard
    from bif.core.trace import chain_seconds
    from bif.store.runs import compute_run

    if data.query_neighbours:
        raise ValueError("Trust figures need a scored set that does not depend on the queries: query_neighbours=0.")
    load0 = os.getloadavg()[0]
    results, run = [], None
    for seed in seeds:
        cfg = preset(preset_name, seed=seed, **(overrides or {}))
        run = compute_run(model, data, [a.query for a in answers], cfg, cache_root)
        seconds = sum(chain_seconds(run.dir / f"chain_{c:03d}.safetensors") for c in range(cfg.chains))
        pairs = [run.trace(i) for i in range(len(answers))]
        check = null.check(pairs)
        rr, flagged = [], []
        for (trace, row), a in zip(pairs, answers):
            s = influence.samples(trace, row)
            flagged.append({run.train_ids[i] for i in np.flatnonzero(s.significant)})
            if a.source in run.train_ids:
                mine = s.support[run.train_ids.index(a.source)]
                rr.append(1.0 / (1 + int(np.sum(s.support > mine))))
            else:
                rr.append(None)
        verdict = diagnose(pairs[0][0], cfg.nbeta, cfg.burn_in).verdict
        results.append(SeedResult(seed, seconds, verdict, check.real, check.null, rr, flagged))
    pair_j = [jaccard(sorted(a), sorted(b)) for a, b in zip(results[0].flagged, results[1].flagged)]
    return PresetTrust(preset_name, run.config.to_dict(), len(run.train_ids), run.request["how_scored"], results,
                       pair_j, (load0, os.getloadavg()[0]))


def report(results: list[PresetTrust], n_queries: int) -> list[str]:
    """Markdown lines: one table row per preset, then what the figures mean."""
    lines = [f"trust on the TEST set ({n_queries} held-out paraphrase queries, never used to choose a preset); "
             f"ranked: {results[0].how_scored}",
             "| preset | findings per query (seed 0 / 1) | null: false findings per query (seed 0 / 1), rate | "
             "source MRR (seed 0 / 1; queries whose source is ranked) | flagged-set Jaccard between seeds | "
             "cost per run (s) | verdict | load avg |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        a, b = r.seeds[0], r.seeds[1]
        (m0, k0), (m1, _) = r.mrr(a), r.mrr(b)
        j, nj = r.mean_jaccard
        lines.append(f"| {r.preset} | {a.real.mean():.2f} / {b.real.mean():.2f} | {a.null.mean():.2f} / "
                     f"{b.null.mean():.2f}, {r.null_rate:.1e} | {m0:.2f} / {m1:.2f} ({k0} of {len(a.real)}) | "
                     f"{j:.2f} ({nj} queries flag something) | {a.seconds:.0f} / {b.seconds:.0f} | "
                     f"{a.verdict} / {b.verdict} | {r.load[0]:.1f} → {r.load[1]:.1f} |")
    lines.append("null = the same finding rule with each query's losses taken from another, independent chain "
                 "(zero influence by construction; docs/method.md §4). Cost: sampling + scoring seconds summed over "
                 "the chains, one torch thread; compare only under similar load.")
    return lines


def main(args) -> list[PresetTrust]:
    """`bif bench` trust section: --presets, --queries, --n-scored, --quick; prints the table."""
    from bif.core.config import parse_settings
    from bif.lm.data import DataSpec
    from bif.lm.models import ModelSpec

    presets = tuple(p for p in (getattr(args, "presets", None) or ",".join(PRESETS)).split(",") if p)
    n = getattr(args, "queries", None) or (8 if args.quick else None)
    answers = test_set(n)
    n_scored = getattr(args, "n_scored", 256)
    data = DataSpec("demo", n_scored=None if n_scored == 0 else n_scored)
    overrides = {**parse_settings(args.set), **(FAST if args.quick else {})}
    t0 = time.perf_counter()
    results = [measure(p, ModelSpec("demo"), data, answers, args.cache, overrides=overrides) for p in presets]
    print("\n".join(report(results, len(answers))))
    print(f"({time.perf_counter() - t0:.0f} s wall for this section, cached runs included at their stored cost"
          + (f"; --quick: {FAST} replaced the presets' draws, so these are not the presets' figures" if args.quick
             else "") + ")")
    return results
