"""A built-in null for the finding rule: the same run with the query's losses taken from another chain.

Chains are seeded independently, so the training losses ℓ_i of chain c and the query losses φ of another chain
c' ≠ c are independent: Cov(ℓ_i, φ) = 0 by construction, whatever the model and the data. `null_trace` pairs
every chain's training losses with the query losses of another chain of the *same* seed half (a cyclic shift
inside each half, `null_permutation`), and the finding rule (bif.core.influence.FINDING_RULE) then runs on it
unchanged. Whatever it flags there is a false finding. Pairing inside a half keeps the null's two halves made of
disjoint chains, as independent of each other as the real run's two halves, so the replication check is tested
as it is used (pairing across halves would make both null halves read the same chains).

Independence is exact; a zero covariance needs the chains to be stationary too. If every chain drifts the same
way (the sampling loss still climbing after burn-in), the losses of different chains move together through that
shared trend and the null flags entries: then the run's real findings are no better than its null's, which is
what the null is for (docs/method.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bif.core import influence
from bif.core.estimators import Scores
from bif.core.trace import LossTrace

NOMINAL = 0.05  # BH at 5 %: under a complete null, at most 5 % of queries have any finding at all


def null_permutation(chains: int) -> np.ndarray:
    """(chains,) index: null chain c reads its query losses from chain perm[c] ≠ c, of the same seed half when
    each half has ≥ 2 chains (else from the next chain)."""
    halves = influence.chain_halves(chains)
    sizes = [len(range(chains)[h]) for h in halves]
    if min(sizes) < 2:
        return np.roll(np.arange(chains), -1)
    return np.concatenate([np.roll(np.arange(chains)[h], -1) for h in halves])


def null_trace(trace: LossTrace, queries: str = "query", shift: int = 0) -> LossTrace:
    """The trace with the query set's losses re-paired across independent chains (zero influence by construction).

    shift: the other chain's query losses are also rotated by this many draws (a circular shift along D). Any
    function of an independent chain is still independent, so every shift is an exact null too; different shifts
    give further null replicas of one run (`check(..., replicas=R)`), which measures the null's rate more precisely.
    Only the query set is permuted (it is small: (C, D, q, Pq)); the training losses stay as they are, memory-mapped
    or not.
    """
    perm = null_permutation(trace.chains)
    losses = dict(trace.losses)
    losses[queries] = np.roll(np.asarray(trace.losses[queries])[perm], shift, axis=1)
    # the same memo of summed series: its training entry still matches (same array); entries are keyed by identity,
    # so the permuted query losses never read the real pairing's sums
    return LossTrace(losses, trace.masks, trace.init, trace.sampling_loss, trace.sums)


def null_samples(trace: LossTrace, query: int, token: int | None = None, shift: int = 0) -> Scores:
    """`influence.samples` on the null trace: its `significant` entries are false findings."""
    return influence.samples(null_trace(trace, shift=shift), query, token)


@dataclass(frozen=True)
class NullCheck:
    """Findings of the real run and of its null, per query (same scored samples, same rule).

    `real`: (q,) number of flagged samples per query; `null`: (R·q,) the same for each of R null replicas (circular
    shifts, replica-major); `n_scored`: samples ranked per query.
    """

    real: np.ndarray
    null: np.ndarray
    n_scored: int
    no_findings_reason: str | None = None
    replicas: int = 1

    @property
    def queries(self) -> int:
        return len(self.real)

    @property
    def null_per_query(self) -> float:
        return float(np.mean(self.null)) if self.queries else float("nan")

    @property
    def real_per_query(self) -> float:
        return float(np.mean(self.real)) if self.queries else float("nan")

    @property
    def null_rate(self) -> float:
        """False findings per ranked entry under the null (flagged / (n_scored × queries × replicas))."""
        return float(np.sum(self.null)) / max(1, self.n_scored * len(self.null))

    @property
    def null_queries_with_any(self) -> float:
        """Fraction of (replica, query) pairs where the null flags anything (BH at 5 % allows at most NOMINAL)."""
        return float(np.mean(self.null > 0)) if self.queries else float("nan")

    def sentence(self) -> str:
        """One line for the views and the CLI."""
        if self.no_findings_reason:
            return ("Null check: not applicable, the finding rule flags nothing in this run (real or null). "
                    + self.no_findings_reason)
        q = "query" if self.queries == 1 else f"{self.queries} queries"
        if self.replicas > 1:
            q += f" × {self.replicas} null replicas"
        return (f"Null check ({q}): with the query's losses taken from another, independent chain (zero influence "
                f"by construction) the same rule flags {_count(self.null_per_query)} of {self.n_scored} samples per "
                f"query (rate {self.null_rate:.1e}); on the real pairing it flags {_count(self.real_per_query)}.")


def _count(x: float) -> str:
    return f"{x:.0f}" if x == int(x) else f"{x:.2f}"


def check(pairs, token: int | None = None, replicas: int = 1) -> NullCheck:
    """NullCheck over (trace, row) pairs, one per query (e.g. `[run.trace(i) for i in range(len(run.queries))]`).

    replicas: null replicas per query, replica r shifting the other chain's query losses by r·D/R draws (each an
    exact null; `bif bench` uses 4, the views 1)."""
    real, null, n, reason = [], [[] for _ in range(replicas)], 0, None
    for trace, row in pairs:
        s = influence.samples(trace, row, token)
        real.append(int(s.significant.sum()))
        D = trace.losses["query"].shape[1]
        for r in range(replicas):
            null[r].append(int(null_samples(trace, row, token, shift=r * D // replicas).significant.sum()))
        n, reason = len(s.significant), s.no_findings_reason
    return NullCheck(np.array(real, dtype=int), np.array(null, dtype=int).ravel(), n, reason, replicas)
