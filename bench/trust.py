"""Trust figures of presets, judged on the TEST set (bif.evaluation.heldout) with a query-independent scored set.

For each preset, two runs with independent seeds over the same known-answer queries and the same ranked samples
(a seeded random subset, or all: never chosen by the queries, `DataSpec.query_neighbours` = 0). Per run: findings
per query and the built-in null's false findings (bif.core.null), the reciprocal rank of each query's known
source when it is among the ranked samples (with `--n-scored 0`, the default, every training text is ranked, so
every query's source is); between the two seeds: the Jaccard index of the flagged sets. Cost: the sampling +
scoring seconds stored with each chain, and the machine's load average while it ran ("cached" when the run was
computed earlier: its load was not recorded). `--seeds 0` and `--seeds 1` compute one seed each (two processes in
parallel fill the cache); the same command with both seeds then prints the table from the cache in seconds.

The verdict line compares the real pairing with its null (docs/method.md §4): under the null, BH at 5 % allows a
false finding in at most 5 % of the queries; and a preset whose real findings per query are not well above its
null's (NULL_MARGIN) has findings its null would produce as often.

`bif bench` calls `main`; `measure` takes any model, data and known-answer queries (tests use the tiny model).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

PRESETS = ("demo-cpu", "careful-cpu")
SEEDS = (0, 1)
NULL_REPLICAS = 4  # null replicas per query (circular shifts, bif.core.null.check): 4× the null queries
NULL_MARGIN = 2.0  # real findings per query must exceed NULL_MARGIN × the null's to count as better than noise
TOP = 5  # the supporting lists compared between seeds: what the app's cards show first
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
    null: np.ndarray  # (R·q,) false findings per query under each of R null replicas
    reciprocal_ranks: list  # (q,) 1/rank of the source, None where it is not among the ranked samples
    flagged: list  # (q,) sets of flagged training ids
    top: list  # (q,) the TOP most supporting training ids, findings or not
    cached: bool = False  # opened from the cache (computed earlier, under a load not recorded here)


@dataclass
class PresetTrust:
    preset: str
    config: dict
    n_scored: int
    how_scored: str
    seeds: list[SeedResult]
    jaccard: list  # (q,) Jaccard of the two seeds' flagged sets (None where neither flags anything); [] with 1 seed
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
    def null_queries_with_any(self) -> float:
        """Fraction of (seed, replica, query) triples where the null flags anything: BH at 5 % allows at most 0.05."""
        return float(np.mean(np.concatenate([s.null > 0 for s in self.seeds])))

    def verdict(self) -> str:
        """Whether the findings are better than the null's, in words (see the module docstring)."""
        from bif.core.null import NOMINAL

        real = float(np.mean([s.real.mean() for s in self.seeds]))
        fake = float(np.mean([s.null.mean() for s in self.seeds]))
        within = self.null_queries_with_any <= NOMINAL
        if real <= NULL_MARGIN * fake or (real == 0 and fake == 0):
            return (f"{self.preset}: NOT better than its null ({real:.2f} vs {fake:.2f} findings per query): its "
                    "findings are no evidence.")
        return (f"{self.preset}: real findings {real:.2f} per query vs the null's {fake:.2f} "
                f"({real / fake:.0f}× as many)" if fake else f"{self.preset}: real findings {real:.2f} per query, the "
                "null's 0") + (f"; the null flags something in {self.null_queries_with_any:.1%} of its queries "
                               f"({'within' if within else 'ABOVE'} the {NOMINAL:.0%} that BH allows).")

    @property
    def top_shared(self) -> float:
        """Mean share of the TOP most supporting samples the two seeds have in common (nan with one seed)."""
        if len(self.seeds) != 2:
            return float("nan")
        a, b = self.seeds
        return float(np.mean([len(set(x) & set(y)) / TOP for x, y in zip(a.top, b.top)]))

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
    from bif.layout import RunFiles
    from bif.store.runs import compute_run

    if data.query_neighbours:
        raise ValueError("Trust figures need a scored set that does not depend on the queries: query_neighbours=0.")
    load0 = os.getloadavg()[0]
    results, run = [], None
    for seed in seeds:
        cfg = preset(preset_name, seed=seed, **(overrides or {}))
        t0 = time.perf_counter()
        run = compute_run(model, data, [a.query for a in answers], cfg, cache_root)
        wall = time.perf_counter() - t0
        seconds = sum(chain_seconds(RunFiles(run.dir).chain(c)) for c in range(cfg.chains))
        pairs = [run.trace(i) for i in range(len(answers))]
        check = null.check(pairs, replicas=NULL_REPLICAS)
        rr, flagged, top = [], [], []
        for (trace, row), a in zip(pairs, answers):
            s = influence.samples(trace, row)
            flagged.append({run.train_ids[i] for i in np.flatnonzero(s.significant)})
            top.append([run.train_ids[i] for i in np.argsort(-s.support, kind="stable")[:TOP]])
            if a.source in run.train_ids:
                mine = s.support[run.train_ids.index(a.source)]
                rr.append(1.0 / (1 + int(np.sum(s.support > mine))))
            else:
                rr.append(None)
        verdict = diagnose(pairs[0][0], cfg.nbeta, cfg.burn_in).verdict
        results.append(SeedResult(seed, seconds, verdict, check.real, check.null, rr, flagged, top,
                                  cached=wall < 0.5 * seconds))
    pair_j = ([jaccard(sorted(a), sorted(b)) for a, b in zip(results[0].flagged, results[1].flagged)]
              if len(results) == 2 else [])
    return PresetTrust(preset_name, run.config.to_dict(), len(run.train_ids), run.request["how_scored"], results,
                       pair_j, (load0, os.getloadavg()[0]))


def _per_seed(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def report(results: list[PresetTrust], n_queries: int) -> list[str]:
    """Markdown lines: one table row per preset, then what the figures mean and a verdict per preset."""
    seeds = "/".join(str(s.seed) for s in results[0].seeds)
    lines = [f"trust on the TEST set ({n_queries} held-out paraphrase queries, never used to choose a preset); "
             f"ranked: {results[0].how_scored}",
             f"| preset | findings per query (seed {seeds}) | null: false findings per query (seed {seeds}); rate "
             f"per ranked entry; null queries where it flags anything ({NULL_REPLICAS} replicas per query) | "
             f"source MRR (seed {seeds}; queries whose source is ranked) | flagged-set Jaccard between seeds | "
             f"top-{TOP} supporting lists shared by the seeds | cost per run (s) | verdict | load avg |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mrr = [r.mrr(s) for s in r.seeds]
        j, nj = r.mean_jaccard
        load = " / ".join("cached" if s.cached else "" for s in r.seeds) if any(s.cached for s in r.seeds) else ""
        lines.append(f"| {r.preset} | {_per_seed([s.real.mean() for s in r.seeds], '.2f')} | "
                     f"{_per_seed([s.null.mean() for s in r.seeds], '.2f')}; {r.null_rate:.1e}; "
                     f"{r.null_queries_with_any:.1%} | {_per_seed([m for m, _ in mrr], '.2f')} ({mrr[0][1]} of "
                     f"{len(r.seeds[0].real)}) | "
                     + (f"{j:.2f} ({nj} queries flag something)" if r.jaccard else "— (one seed)")
                     + (f" | {r.top_shared:.2f}" if len(r.seeds) == 2 else " | —")
                     + f" | {_per_seed([s.seconds for s in r.seeds], '.0f')} | "
                     f"{' / '.join(s.verdict for s in r.seeds)} | {r.load[0]:.1f} → {r.load[1]:.1f}"
                     + (f" ({load})" if load else "") + " |")
    lines.append("null = the same finding rule with each query's losses taken from another, independent chain "
                 f"(zero influence by construction; {NULL_REPLICAS} replicas per query, circular shifts of that "
                 "chain; docs/method.md §4). Cost: sampling + scoring seconds summed over "
                 "the chains, one torch thread; compare only under similar load ('cached': computed earlier, at a "
                 "load not recorded here).")
    lines += [r.verdict() for r in results]
    return lines


def parse_seeds(text: str | None) -> tuple[int, ...]:
    """--seeds: '0,1' (the default, two seeds compared) or one seed, computed alone to fill the cache in parallel."""
    from bif.errors import ConfigError

    try:
        seeds = tuple(int(x) for x in str(text or "0,1").split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--seeds {text}: give one or two whole numbers, e.g. --seeds 0,1.") from None
    if not 1 <= len(seeds) <= 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds {text}: give one seed (to compute it alone) or two different ones.")
    return seeds


def main(args) -> list[PresetTrust]:
    """`bif bench` trust section: --presets, --seeds, --queries, --n-scored, --quick; prints the table."""
    from bif.core.config import parse_settings
    from bif.errors import ConfigError
    from bif.lm.data import DataSpec
    from bif.lm.models import ModelSpec

    presets = tuple(p for p in (getattr(args, "presets", None) or ",".join(PRESETS)).split(",") if p)
    seeds = parse_seeds(getattr(args, "seeds", None))
    n = getattr(args, "queries", None) or (8 if args.quick else None)
    answers = test_set(n)
    n_scored = getattr(args, "n_scored", 0)
    data = DataSpec("demo", n_scored=None if n_scored == 0 else n_scored)
    overrides = {**parse_settings(args.set), **(FAST if args.quick else {})}
    t0 = time.perf_counter()
    results = [measure(p, ModelSpec("demo"), data, answers, args.cache, seeds=seeds, overrides=overrides)
               for p in presets]
    print("\n".join(report(results, len(answers))))
    print(f"({time.perf_counter() - t0:.0f} s wall for this section, cached runs included at their stored cost"
          + (f"; --quick: {FAST} replaced the presets' draws, so these are not the presets' figures" if args.quick
             else "") + ")")
    return results
