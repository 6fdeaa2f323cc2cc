"""The views of a run, each computed on demand from a LossTrace (never the full (n, T, q, T) tensor).

Conventions: the observed set "train" holds the scored training samples, "query" the queries. A query position p
is the loss of predicting token p+1; only completion positions are observed. All functions return `Scores`
(see estimators.py for the sign convention: `support` = +Corr, positive = makes the completion more likely).
"""

from __future__ import annotations

import numpy as np

from bif.core.estimators import Scores, covariance, jaccard, masked, topk_overlap
from bif.core.trace import LossTrace
from bif.errors import ConfigError


def check_index(what: str, i, n: int) -> int:
    """i as an int when 0 <= i < n; else ConfigError naming the valid range (no negative indices: -1 would
    silently mean the last one)."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise ConfigError(f"{what} must be a whole number (got {i!r}).")
    if not 0 <= i < n:
        raise ConfigError(f"{what} {i} is out of range: there are {n} (0 to {n - 1}).")
    return int(i)


def _check(trace: LossTrace, queries: str, query, train: str | None = None, sample=None) -> None:
    check_index("query", query, trace.masks[queries].shape[0])
    if sample is not None:
        check_index("training sample", sample, trace.masks[train].shape[0])


def _query_series(trace: LossTrace, query: int, token, name: str) -> np.ndarray:
    """(C, D, 1): loss of the whole completion (token=None), of one completion position (an int), or of a span
    (a sequence of positions: their summed loss, so −Cov of a span is the sum of its tokens' −Cov)."""
    _check(trace, name, query)
    if token is None:
        return trace.series(name, [query])
    positions = [int(token)] if np.ndim(token) == 0 else [int(p) for p in token]
    bad = [p for p in positions if not (0 <= p < trace.masks[name].shape[1] and trace.masks[name][query, p])]
    if bad or not positions:
        where = np.flatnonzero(trace.masks[name][query])
        raise ConfigError(f"token position(s) {bad or positions} of query {query} are not completion tokens (the "
                          f"completion is at positions {where[0]} to {where[-1]}).")
    return trace.losses[name][:, :, query, positions].astype(np.float64).sum(-1, keepdims=True)


# Each half on its own, one-sided, same sign as the pooled score. Not 5 %: given a pooled score that passed BH
# (|t| ≈ 4.6 at 850 entries), halves that agree with each other pass |t| ≥ 1.645 almost surely, so a 5 % check
# replicated nothing (measured: it removed no finding of the null or of the real run on demo-cpu, 51 test queries,
# two seeds). At 0.1 % each half must resolve the score on its own: the null's findings went from 0.06 / 0.12 per
# query to 0 / 0, the real ones from 0.76 / 0.75 to 0.51 / 0.53, and the seeds' flagged sets agree more (Jaccard
# 0.57 → 0.77). README "Trust" has the figures and the command.
REPLICATION_P = 0.001
MIN_CHAINS = 4  # two independently seeded halves of ≥ 2 chains each
FINDING_RULE = ("A score stands out (is a finding) only if both hold: its Benjamini–Hochberg adjusted p-value is "
                "below 5 % over all entries of the view, and each of the two independently seeded halves of the "
                f"chains shows it on its own: the same sign, with a one-sided p-value ≤ {REPLICATION_P:g} (so a run "
                f"needs ≥ {MIN_CHAINS} chains to have findings at all).")


def no_findings_reason(chains: int) -> str | None:
    """The sentence the views show when a run with `chains` chains cannot have findings, else None."""
    if chains >= MIN_CHAINS:
        return None
    return (f"No findings are possible in this run: it has {chains} chains, and a finding must replicate in two "
            f"independently seeded halves of ≥ 2 chains each (≥ {MIN_CHAINS} chains). Its scores rank samples; "
            "they certify none.")


def chain_halves(chains: int) -> tuple[slice, slice]:
    """The two independently seeded halves of the chains that every finding must replicate in."""
    return slice(0, chains // 2), slice(chains // 2, chains)


def select_chains(trace: LossTrace, chains=slice(None)) -> LossTrace:
    """The same trace restricted to some chains (a slice or an index array), its summed series kept (sliced)."""
    return trace.chains_of(chains)


def _finding_rule(view, trace: LossTrace) -> Scores:
    """view(trace) -> Scores with BH over its entries; returns them with FINDING_RULE applied to `significant`."""
    s = view(trace)
    reason = no_findings_reason(trace.chains)
    if reason:
        s.significant = np.zeros_like(s.significant, dtype=bool)
        s.no_findings_reason = reason
        return s
    sign = np.sign(s.corr)
    for half in chain_halves(trace.chains):
        h = view(select_chains(trace, half))
        with np.errstate(invalid="ignore", divide="ignore"):
            agrees = (np.sign(h.corr) == sign) & (h.p / 2 <= REPLICATION_P)  # h.p is two-sided
        s.significant = s.significant & agrees
    return s


def pooled_samples(trace: LossTrace, query: int, token=None, train: str = "train",
                   queries: str = "query") -> Scores:
    """`samples` pooled over all chains with BH only: NOT the finding rule (used for each half and in tests)."""
    return _squeeze(covariance(trace.series(train), _query_series(trace, query, token, queries)), 1)


def samples(trace: LossTrace, query: int, token=None, chains=slice(None),
            train: str = "train", queries: str = "query") -> Scores:
    """Influence of every scored training sample on a query: shape (n,).

    token: None = the whole completion, an int = one completion position, a sequence of ints = a span (the
    influence on the span's summed loss; `bif` is additive over the span's tokens, `corr` is not).

    `significant` follows FINDING_RULE: BH at 5 % over the n samples, and replicated in each independently seeded
    half of the chains; with fewer than 4 chains nothing is significant and `no_findings_reason` says why.
    """
    return _finding_rule(lambda t: pooled_samples(t, query, token, train, queries), select_chains(trace, chains))


def query_tokens(trace: LossTrace, query: int, sample: int | None = None,
                 train: str = "train", queries: str = "query") -> Scores:
    """Influence on each completion position of a query: shape (Pq,), NaN outside the completion.

    sample=None aggregates the whole scored training set (Σ_i ℓ_i; −Cov is additive over samples).
    `significant` follows FINDING_RULE over the completion positions.
    """
    _check(trace, queries, query, train, sample)
    def view(t: LossTrace) -> Scores:
        x = t.series(train).sum(-1, keepdims=True) if sample is None else t.series(train, [sample])
        y = t.losses[queries][:, :, query].astype(np.float64)  # (C, D, Pq)
        return masked(_squeeze(covariance(x, y), 0), t.masks[queries][query])

    return _finding_rule(view, trace)


def train_tokens(trace: LossTrace, sample: int, query: int, token=None,
                 train: str = "train", queries: str = "query") -> Scores:
    """Influence of each position of one training sample on a query (token: as in `samples`): shape (P,), NaN at
    padding. `bif` sums over the positions to the sample's own `bif` (the sample's loss is the sum of its tokens').
    `significant` follows FINDING_RULE over the positions."""
    _check(trace, queries, query, train, sample)
    def view(t: LossTrace) -> Scores:
        x = t.losses[train][:, :, sample].astype(np.float64)  # (C, D, P)
        return masked(_squeeze(covariance(x, _query_series(t, query, token, queries)), 1), t.masks[train][sample])

    return _finding_rule(view, trace)


def pair(trace: LossTrace, sample: int, query: int, train: str = "train", queries: str = "query") -> Scores:
    """Token × token influence of one training sample on one query: shape (P, Pq) (FINDING_RULE over the cells)."""
    _check(trace, queries, query, train, sample)
    keep = np.outer(trace.masks[train][sample], trace.masks[queries][query])

    def view(t: LossTrace) -> Scores:
        x = t.losses[train][:, :, sample].astype(np.float64)
        y = t.losses[queries][:, :, query].astype(np.float64)
        return masked(covariance(x, y), keep)

    return _finding_rule(view, trace)


def stability(trace: LossTrace, query: int, k: int = 10, token=None) -> dict:
    """How stable the ranking is: the same view from the first and the second half of the chains.

    Returns top-k overlap (support and oppose) and the Jaccard index of the significant sets between halves.
    Needs ≥ 2 chains; with fewer draws per half the significant sets shrink, so this is a conservative check.
    """
    C = trace.chains
    a, b = (pooled_samples(select_chains(trace, h), query, token) for h in chain_halves(C))
    return {
        "topk_support_overlap": topk_overlap(a.top(k, "support"), b.top(k, "support")),
        "topk_oppose_overlap": topk_overlap(a.top(k, "oppose"), b.top(k, "oppose")),
        "significant_jaccard": jaccard(np.flatnonzero(a.significant), np.flatnonzero(b.significant)),
        "spearman": float(_spearman(a.corr, b.corr)),
        "k": k,
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else float("nan")


def _squeeze(s: Scores, axis: int) -> Scores:
    f = lambda a: np.take(a, 0, axis=axis)  # noqa: E731
    return Scores(bif=f(s.bif), bif_se=f(s.bif_se), corr=f(s.corr), corr_se=f(s.corr_se), p=f(s.p), q=f(s.q),
                  significant=f(s.significant), n_draws=s.n_draws, n_batches=s.n_batches,
                  no_findings_reason=s.no_findings_reason)
