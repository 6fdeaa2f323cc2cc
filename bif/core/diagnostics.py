"""Diagnostics of a run (docs/method.md §5): stationarity of the sampling loss, R-hat, bulk/tail ESS, LLC.

R-hat, ESS and MCSE are those of Vehtari et al. (2021), computed by arviz-stats (ArviZ's numpy implementation of
that paper); the thresholds applied are the paper's (RHAT_MAX, ESS_MIN_PER_CHAIN).

A sampling loss that keeps drifting makes every covariance share the drift, so rankings become meaningless;
`diagnose` says so in words, with what to change.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from bif.core.estimators import batch_length
from bif.core.trace import LossTrace


# Thresholds of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021), "Rank-normalization, folding, and
# localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16(2) 667-718, §4:
# use the draws only if R-hat < 1.01 and bulk and tail ESS are each > 100 per chain (400 with 4 chains).
RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
THRESHOLDS_SOURCE = ("Vehtari et al. (2021), Rank-normalization, folding, and localization: an improved R-hat, "
                     "Bayesian Analysis 16(2)")
TAIL_PROB = (0.05, 0.95)  # tail ESS: the worse of the ESS of the 5 % and 95 % quantile indicators


def _stats():
    from arviz_stats.base import array_stats  # arviz-stats: numpy-only implementations of Vehtari et al. (2021)

    return array_stats


def _quiet(fn, x: np.ndarray, **kw) -> np.ndarray:
    """Call an arviz-stats function on series x (C, D, ...) -> (...); NaN where undefined (constant series,
    one chain, fewer than 4 draws), without its warnings."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2 or x.shape[1] < 4:
        return np.full(x.shape[2:], np.nan)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(fn(x, chain_axis=0, draw_axis=1, **kw), dtype=np.float64)


def rhat(x: np.ndarray) -> np.ndarray:
    """Rank-normalized split R-hat (Vehtari et al. 2021) of series x (C, D, ...) -> (...), by arviz-stats.

    ≈ 1 when the chains agree; use the draws only if < RHAT_MAX (1.01)."""
    return _quiet(_stats().rhat, x, method="rank")


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk effective sample size (rank-normalized, all chains together) of x (C, D, ...) -> (...)."""
    return _quiet(_stats().ess, x, method="bulk")


def ess_tail(x: np.ndarray) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the 5 % and 95 % quantile indicators, x (C, D, ...) -> (...)."""
    return _quiet(_stats().ess, x, method="tail", prob=TAIL_PROB)


def mcse_mean(x: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the mean of x (C, D, ...) -> (...): sd / sqrt(ESS of the mean)."""
    return _quiet(_stats().mcse, x, method="mean")


def lag1_autocorr(x: np.ndarray) -> np.ndarray:
    """Mean over chains of the lag-1 autocorrelation of series x (C, D, ...)."""
    xc = x - x.mean(1, keepdims=True)
    num = (xc[:, 1:] * xc[:, :-1]).sum(1)
    den = (xc**2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(den > 0, num / den, np.nan), axis=0)


@dataclass(frozen=True)
class Check:
    """One convergence check against a published threshold: `ok` is None when the value is undefined."""

    name: str  # e.g. "R-hat of the sampling loss"
    value: float
    threshold: str  # e.g. "< 1.01"
    ok: bool | None


@dataclass
class Diagnosis:
    """Verdict and numbers of one run. R-hat is rank-normalized split R-hat and ESS is bulk/tail ESS of Vehtari et
    al. (2021), computed by arviz-stats over chains × kept draws; thresholds RHAT_MAX and ESS_MIN_PER_CHAIN."""

    verdict: str  # "ok", "drifting", "left basin", "below w*", "chains disagree" or "too short"
    advice: str
    init_loss: float  # mean sampling loss of the first step (≈ L(w*))
    kept_loss: float  # mean sampling loss over kept draws
    drift: float  # mean loss of the last third minus the first third of the kept part
    drift_se: float
    rhat_loss: float  # R-hat of the sampling loss (kept steps)
    ess_bulk_loss: float  # bulk / tail ESS of the sampling loss (kept steps)
    ess_tail_loss: float
    rhat_samples_median: float  # of the per-sample losses at the kept draws
    rhat_samples_max: float
    rhat_samples_high: float  # share of samples with R-hat ≥ RHAT_MAX
    ess_median: float  # bulk ESS of the per-sample losses (median over samples), all chains together
    ess_tail_median: float
    ess_samples_min: float  # smallest bulk or tail ESS over samples
    ess_low: float  # share of samples with bulk or tail ESS below ess_min
    ess_min: float  # the ESS threshold applied: ESS_MIN_PER_CHAIN · chains
    ess_per_draw: float  # median bulk ESS / (chains · draws)
    lag1_median: float
    llc: float  # λ̂ = nβ · (E_p[L] − L(w*)), on the scored training set
    llc_se: float

    def to_dict(self) -> dict:
        return asdict(self)

    def checks(self) -> list[Check]:
        """The checks of Vehtari et al. (2021) that this run passes or fails, in the order the page shows them."""
        def ok(value, good):
            return None if not math.isfinite(value) else bool(good)

        r, e = f"< {RHAT_MAX:g}", f"≥ {self.ess_min:.0f} ({ESS_MIN_PER_CHAIN} per chain)"
        return [
            Check("R-hat of the sampling loss", self.rhat_loss, r, ok(self.rhat_loss, self.rhat_loss < RHAT_MAX)),
            Check("Bulk ESS of the sampling loss", self.ess_bulk_loss, e,
                  ok(self.ess_bulk_loss, self.ess_bulk_loss >= self.ess_min)),
            Check("Tail ESS of the sampling loss", self.ess_tail_loss, e,
                  ok(self.ess_tail_loss, self.ess_tail_loss >= self.ess_min)),
            Check("Largest R-hat of a sample's loss", self.rhat_samples_max, r,
                  ok(self.rhat_samples_max, self.rhat_samples_max < RHAT_MAX)),
            Check("Smallest bulk or tail ESS of a sample's loss", self.ess_samples_min, e,
                  ok(self.ess_samples_min, self.ess_samples_min >= self.ess_min)),
        ]


def loss_verdict(sampling_loss: np.ndarray, burn_in: int) -> dict:
    """The verdict from the sampling loss alone, (C, S): cheap (no trace), so run lists can show it.

    Returns verdict, advice, init_loss, kept_loss, drift, drift_se, rhat_loss (see Diagnosis)."""
    sl = np.asarray(sampling_loss, dtype=np.float64)
    kept = sl[:, burn_in:]
    C, K = kept.shape
    init_loss = float(sl[:, 0].mean())
    third = max(1, K // 3)
    first, last = kept[:, :third].mean(1), kept[:, -third:].mean(1)
    drift = float((last - first).mean())
    # noise of a third-mean from batch means of the kept series
    b = max(1, batch_length(K))
    nb = K // b
    bm = kept[:, : nb * b].reshape(C, nb, b).mean(-1) if nb >= 2 else kept
    drift_se = float(bm.std(ddof=1) / math.sqrt(max(1, C * third / b)) * math.sqrt(2)) if bm.size > 1 else float("nan")
    kept_loss = float(kept.mean())
    rhat_loss = float(rhat(kept))
    if K < 8:
        verdict, advice = "too short", "Too few kept steps to judge stationarity: raise draws."
    elif kept_loss > 3 * init_loss + 1.0:
        verdict = "left basin"
        advice = (f"The sampling loss rose from {init_loss:.3g} to {kept_loss:.3g}: the chain left the trained "
                  "basin, so scores describe a different model. Lower step_size or raise gamma.")
    elif abs(drift) > 3 * drift_se and abs(drift) > 0.05 * max(abs(kept_loss - init_loss), 1e-3):
        verdict = "drifting"
        advice = (f"The sampling loss still {'rises' if drift > 0 else 'falls'} across the kept draws "
                  f"({drift:+.3g} ± {drift_se:.2g}). A shared drift makes all scores look alike: raise burn_in, "
                  "raise gamma or lower step_size.")
    elif kept_loss < init_loss - 3 * drift_se:
        verdict = "below w*"
        advice = (f"The sampling loss fell from {init_loss:.3g} at the trained weights (w*) to {kept_loss:.3g}: "
                  "they are not a local minimum (the model is undertrained). The posterior is still localized "
                  "there, but scores then mix influence with further training. Prefer a converged model, or raise "
                  "gamma.")
    else:
        verdict, advice = "ok", (f"The sampling loss rose from {init_loss:.3g} at the trained weights (w*) and levelled "
                                 f"off at {kept_loss:.3g}.")
    if verdict == "ok" and rhat_loss >= RHAT_MAX:
        verdict = "chains disagree"
        advice += (f" But the chains disagree about its level (R-hat {rhat_loss:.3f}, recommended < {RHAT_MAX:g}): "
                   "raise burn_in or draws, or lower step_size.")
    return {"verdict": verdict, "advice": advice, "init_loss": init_loss, "kept_loss": kept_loss, "drift": drift,
            "drift_se": drift_se, "rhat_loss": rhat_loss}


def diagnose(trace: LossTrace, nbeta: float, burn_in: int, train: str = "train") -> Diagnosis:
    """Verdict and numbers for one run. `burn_in` is the number of sampling steps before the first kept draw.

    R-hat, bulk and tail ESS are those of Vehtari et al. (2021) through arviz-stats, of the sampling loss (kept
    steps, (C, S - burn_in)) and of each scored training sample's loss at the kept draws ((C, D) per sample)."""
    v = loss_verdict(trace.sampling_loss, burn_in)
    verdict, advice = v["verdict"], v["advice"]
    kept = np.asarray(trace.sampling_loss, dtype=np.float64)[:, burn_in:]  # (C, S - burn_in)
    C = trace.sampling_loss.shape[0]
    x = trace.series(train)  # (C, D, n)
    rh, bulk, tail = rhat(x), ess_bulk(x), ess_tail(x)  # (n,) each
    low = np.fmin(bulk, tail)
    ess_min = float(ESS_MIN_PER_CHAIN * C)
    mean_loss = x.sum(-1) / max(1, trace.masks[train].sum())  # (C, D) mean token loss of the scored set
    init_mean = float((trace.init[train] * trace.masks[train]).sum() / max(1, trace.masks[train].sum()))
    per_chain = nbeta * (mean_loss.mean(1) - init_mean)
    llc = float(per_chain.mean())
    llc_se = float(per_chain.std(ddof=1) / math.sqrt(C)) if C > 1 else float("nan")
    high = _share(rh >= RHAT_MAX, rh)
    if verdict == "ok" and high > 0:
        advice += (f" {high:.0%} of the ranked samples' losses have R-hat ≥ {RHAT_MAX:g} (largest "
                   f"{np.nanmax(rh):.3f}): more draws help.")
    D = x.shape[1]
    return Diagnosis(
        verdict=verdict, advice=advice, init_loss=v["init_loss"], kept_loss=v["kept_loss"], drift=v["drift"],
        drift_se=v["drift_se"], rhat_loss=v["rhat_loss"], ess_bulk_loss=float(ess_bulk(kept)),
        ess_tail_loss=float(ess_tail(kept)), rhat_samples_median=_nan(np.nanmedian, rh),
        rhat_samples_max=_nan(np.nanmax, rh), rhat_samples_high=high, ess_median=_nan(np.nanmedian, bulk),
        ess_tail_median=_nan(np.nanmedian, tail), ess_samples_min=_nan(np.nanmin, low),
        ess_low=_share(low < ess_min, low), ess_min=ess_min, ess_per_draw=_nan(np.nanmedian, bulk) / (C * D),
        lag1_median=_nan(np.nanmedian, lag1_autocorr(x)), llc=llc, llc_se=llc_se)


def _nan(fn, a: np.ndarray) -> float:
    """fn (nanmedian, nanmax, ...) of a, NaN when a has no finite value (instead of a warning)."""
    a = np.asarray(a, dtype=np.float64)
    return float(fn(a)) if np.isfinite(a).any() else float("nan")


def _share(flags: np.ndarray, values: np.ndarray) -> float:
    """Share of defined (finite) values where flags holds; NaN if none is defined."""
    ok = np.isfinite(values)
    return float(flags[ok].mean()) if ok.any() else float("nan")


OUTSIDE_QUANTILE = 0.95  # a completion harder for the model than this share of its training texts is 'outside'


@dataclass(frozen=True)
class QueryFit:
    """How well the trained model (w*) predicts a query's completion, next to how well it predicts its training
    texts: mean loss per token (nats) and perplexity exp(loss). `outside` when the completion is harder than
    OUTSIDE_QUANTILE of the scored training texts: the prompt is likely outside what the model learned, and the
    influence scores then explain a guess."""

    loss: float  # the completion's mean per-token loss at w*
    perplexity: float
    train_median: float  # median over scored training texts of their mean per-token loss at w*
    train_high: float  # their OUTSIDE_QUANTILE quantile
    outside: bool


def query_fit(trace: LossTrace, query: int, train: str = "train", queries: str = "query") -> QueryFit:
    """QueryFit of query `query` from the losses at w* stored with the trace (no model needed)."""
    qm = trace.masks[queries][query]
    loss = float(trace.init[queries][query][qm].mean()) if qm.any() else float("nan")
    tm = trace.masks[train]
    per_text = (trace.init[train] * tm).sum(-1) / np.maximum(tm.sum(-1), 1)
    per_text = per_text[tm.any(-1)]
    median = float(np.median(per_text)) if per_text.size else float("nan")
    high = float(np.quantile(per_text, OUTSIDE_QUANTILE)) if per_text.size else float("nan")
    return QueryFit(loss=loss, perplexity=float(math.exp(min(loss, 700.0))) if math.isfinite(loss) else loss,
                    train_median=median, train_high=high, outside=bool(math.isfinite(loss) and loss > high))
