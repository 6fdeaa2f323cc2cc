"""Estimators: BIF = −Cov(ℓ_i, φ) and Corr(ℓ_i, φ) over pooled draws, with Monte Carlo error bars.

Sign convention (pinned in tests/test_estimators.py):
  * `bif`  = −Cov(ℓ_i, φ), the paper's BIF. Negative = up-weighting z_i lowers the query loss = *supports* it.
  * `corr` = Corr(ℓ_i, φ), the normalized form. Positive = supports.
  * `support` = `corr`: what the UI shows (positive = makes the completion more likely).

Standard errors use batch means: each chain is cut into contiguous batches of ≈√D draws, the mean product of the
centred series is taken per batch, and SE = sd(batch means)/√K. This accounts for autocorrelation within chains
and for disagreement between chains. p-values use Student's t with K−1 degrees of freedom; `significant` applies
the Benjamini–Hochberg correction (FDR 5 % by default; scipy.stats.false_discovery_control) over all entries
returned together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

FDR = 0.05


@dataclass
class Scores:
    """Scores of one family (all entries returned by one call), each array of the same shape.

    `bif` (−Cov), `corr`, their standard errors, two-sided `p`, BH-adjusted `q`, `significant` (q < fdr; for
    rankings of training samples also replicated, see bif.core.influence.FINDING_RULE). Entries that are not
    observed (masked positions) are NaN and never significant. `no_findings_reason` is a sentence when the
    settings cannot give findings at all (then `significant` is all False), else None.
    """

    bif: np.ndarray
    bif_se: np.ndarray
    corr: np.ndarray
    corr_se: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    n_draws: int
    n_batches: int
    no_findings_reason: str | None = None

    @property
    def support(self) -> np.ndarray:
        """+Corr: positive = this training data makes the completion more likely."""
        return self.corr

    @property
    def support_se(self) -> np.ndarray:
        return self.corr_se

    def top(self, k: int, sign: str = "support", only_significant: bool = False) -> np.ndarray:
        """Indices of the k most supporting (sign='support') or most opposing ('oppose') entries, flat order."""
        from bif.errors import ConfigError

        if sign not in ("support", "oppose"):
            raise ConfigError(f"sign must be 'support' or 'oppose' (got {sign!r}).")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"k must be a whole number ≥ 0 (got {k!r}).")
        s = self.support.ravel().copy()
        s = np.where(np.isnan(s), -np.inf if sign == "support" else np.inf, s)
        order = np.argsort(-s if sign == "support" else s, kind="stable")
        if only_significant:
            sig = self.significant.ravel()
            order = order[sig[order]]
        keep = (s[order] > 0) if sign == "support" else (s[order] < 0)
        return order[keep][:k]


def batch_length(draws: int) -> int:
    return max(1, int(math.sqrt(draws)))


def _batches(C: int, D: int) -> tuple[np.ndarray, int]:
    """Batch id of every pooled draw (C*D,) and the number of batches K (≥ 2)."""
    b = batch_length(D)
    per_chain = max(1, D // b)
    ids = np.minimum(np.arange(D) // b, per_chain - 1)  # last batch takes the remainder
    return (ids[None, :] + per_chain * np.arange(C)[:, None]).ravel(), C * per_chain


def covariance(x: np.ndarray, y: np.ndarray, fdr: float = FDR) -> Scores:
    """Cov and Corr of every column of x with every column of y over pooled draws.

    Args:
        x: (C, D, a) series, e.g. per-sample losses ℓ_i at each chain and draw.
        y: (C, D, b) series, e.g. query-token losses φ_t.
    Returns:
        Scores with arrays of shape (a, b).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    C, D, a = x.shape
    b = y.shape[2]
    N = C * D
    xc = (x - x.mean(axis=(0, 1))).reshape(N, a)
    yc = (y - y.mean(axis=(0, 1))).reshape(N, b)
    sx = np.sqrt((xc**2).mean(0))  # (a,)
    sy = np.sqrt((yc**2).mean(0))  # (b,)
    batch_of, K = _batches(C, D)
    sums = np.zeros((K, a, b))
    for k in range(K):  # K ≈ C·√D batches; each an (a, b) product
        sel = batch_of == k
        sums[k] = xc[sel].T @ yc[sel] / sel.sum()
    cov_mean = xc.T @ yc / N  # (a, b) mean of products (biased covariance)
    return from_moments(cov_mean, sums.std(0, ddof=1) / math.sqrt(K), np.outer(sx, sy), N, K, fdr)


def from_moments(cov_mean: np.ndarray, cov_se: np.ndarray, scale: np.ndarray, N: int, K: int,
                 fdr: float = FDR) -> Scores:
    """Scores from the biased covariance, its batch-means SE and sd(x)·sd(y), over N draws in K batches."""
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(scale > 0, cov_mean / scale, 0.0)
        corr_se = np.where(scale > 0, cov_se / scale, np.inf)
        t = np.where(cov_se > 0, cov_mean / cov_se, 0.0)
    p = 2 * stats.t.sf(np.abs(t), df=K - 1)
    unbiased = N / (N - 1)
    return _with_fdr(-cov_mean * unbiased, cov_se * unbiased, corr, corr_se, p, N, K, fdr)


def _with_fdr(bif, bif_se, corr, corr_se, p, N, K, fdr) -> Scores:
    q = bh_adjust_observed(p)
    return Scores(bif=bif, bif_se=bif_se, corr=corr, corr_se=corr_se, p=p, q=q,
                  significant=np.nan_to_num(q, nan=1.0) < fdr, n_draws=N, n_batches=K)


def bh_adjust_observed(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q), same shape, by `scipy.stats.false_discovery_control`.

    NaN entries (unobserved positions) stay NaN and are not counted in m; scipy itself refuses NaN."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def masked(scores: Scores, keep: np.ndarray, fdr: float = FDR) -> Scores:
    """Scores with entries where `keep` is False set to NaN, and the FDR correction redone over the rest."""
    nan = lambda a: np.where(keep, a, np.nan)  # noqa: E731
    return _with_fdr(nan(scores.bif), nan(scores.bif_se), nan(scores.corr), nan(scores.corr_se), nan(scores.p),
                     scores.n_draws, scores.n_batches, fdr)


def topk_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / max(|A|, |B|) of two index sets (1.0 when both are empty)."""
    A, B = set(np.ravel(a).tolist()), set(np.ravel(b).tolist())
    return 1.0 if not A and not B else len(A & B) / max(len(A), len(B))


def jaccard(a, b) -> float | None:
    """|A ∩ B| / |A ∪ B|; None when both sets are empty (agreement on nothing is not agreement)."""
    A, B = set(np.ravel(a).tolist()), set(np.ravel(b).tolist())
    return None if not A and not B else len(A & B) / len(A | B)
