"""Diagnostics of a run (docs/method.md §5): stationarity of the sampling loss, split R-hat, ESS, LLC.

A sampling loss that keeps drifting makes every covariance share the drift, so rankings become meaningless;
`diagnose` says so in words, with what to change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from bif.core.estimators import batch_length
from bif.core.trace import LossTrace


def split_rhat(x: np.ndarray) -> np.ndarray:
    """Split-chain R-hat (Gelman et al.) of series x (C, D, ...) -> (...). ≈1 when chains agree; > 1.1 is a warning."""
    C, D = x.shape[:2]
    h = D // 2
    s = np.concatenate([x[:, :h], x[:, h:2 * h]], axis=0).astype(np.float64)  # (2C, h, ...)
    m = s.shape[0]
    means = s.mean(1)
    W = s.var(1, ddof=1).mean(0)
    B = h * means.var(0, ddof=1)
    var_plus = (h - 1) / h * W + B / h
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(W > 0, np.sqrt(var_plus / W), np.nan) if m > 1 else np.full(W.shape, np.nan)


def ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size of series x (C, D, ...) -> (...), Geyer's initial positive sequence over pooled chains."""
    x = np.asarray(x, dtype=np.float64)
    C, D = x.shape[:2]
    xc = x - x.mean(1, keepdims=True)
    n = 1 << (2 * D - 1).bit_length()
    f = np.fft.rfft(xc, n=n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), n=n, axis=1)[:, :D] / D  # (C, D, ...)
    W = (acov[:, 0] * D / (D - 1)).mean(0)
    B_over_n = x.mean(1).var(0, ddof=1) if C > 1 else 0.0
    var_plus = (D - 1) / D * W + B_over_n
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1 - (W - acov.mean(0)) / var_plus  # (D, ...)
    rho = np.nan_to_num(rho, nan=0.0)
    pairs = rho[: D - D % 2].reshape(D // 2, 2, *rho.shape[1:]).sum(1)  # Γ_k = ρ_2k + ρ_2k+1
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)
    pairs = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    tau = -1 + 2 * np.where(positive, pairs, 0).sum(0)
    return C * D / np.maximum(tau, 1.0 / math.log10(max(C * D, 10)))


def lag1_autocorr(x: np.ndarray) -> np.ndarray:
    """Mean over chains of the lag-1 autocorrelation of series x (C, D, ...)."""
    xc = x - x.mean(1, keepdims=True)
    num = (xc[:, 1:] * xc[:, :-1]).sum(1)
    den = (xc**2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(den > 0, num / den, np.nan), axis=0)


@dataclass
class Diagnosis:
    verdict: str  # "ok", "drifting", "left basin", "below w*", "chains disagree" or "too short"
    advice: str
    init_loss: float  # mean sampling loss of the first step (≈ L(w*))
    kept_loss: float  # mean sampling loss over kept draws
    drift: float  # mean loss of the last third minus the first third of the kept part
    drift_se: float
    rhat_loss: float  # split R-hat of the sampling loss (kept part)
    rhat_samples_median: float  # of the per-sample losses
    rhat_samples_max: float
    ess_median: float  # of the per-sample losses, over all chains together
    ess_per_draw: float
    lag1_median: float
    llc: float  # λ̂ = nβ · (E_p[L] − L(w*)), on the scored training set
    llc_se: float

    def to_dict(self) -> dict:
        return asdict(self)


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
    rhat_loss = float(split_rhat(kept[..., None])[0]) if K >= 4 else float("nan")
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
    if verdict == "ok" and rhat_loss > 1.1:
        verdict = "chains disagree"
        advice += (f" But the chains disagree about its level (R-hat {rhat_loss:.2f} > 1.1): raise burn_in or draws, "
                   "or lower step_size.")
    return {"verdict": verdict, "advice": advice, "init_loss": init_loss, "kept_loss": kept_loss, "drift": drift,
            "drift_se": drift_se, "rhat_loss": rhat_loss}


def diagnose(trace: LossTrace, nbeta: float, burn_in: int, train: str = "train") -> Diagnosis:
    """Verdict and numbers for one run. `burn_in` is the number of sampling steps before the first kept draw."""
    v = loss_verdict(trace.sampling_loss, burn_in)
    verdict, advice = v["verdict"], v["advice"]
    C = trace.sampling_loss.shape[0]
    x = trace.series(train)  # (C, D, n)
    rh = split_rhat(x)
    e = ess(x)
    mean_loss = x.sum(-1) / max(1, trace.masks[train].sum())  # (C, D) mean token loss of the scored set
    init_mean = float((trace.init[train] * trace.masks[train]).sum() / max(1, trace.masks[train].sum()))
    per_chain = nbeta * (mean_loss.mean(1) - init_mean)
    llc = float(per_chain.mean())
    llc_se = float(per_chain.std(ddof=1) / math.sqrt(C)) if C > 1 else float("nan")
    if verdict == "ok" and np.nanmax(rh) > 1.2:
        advice += f" Some per-sample losses disagree across chains (max R-hat {np.nanmax(rh):.2f}): more draws help."
    D = x.shape[1]
    return Diagnosis(
        verdict=verdict, advice=advice, init_loss=v["init_loss"], kept_loss=v["kept_loss"], drift=v["drift"],
        drift_se=v["drift_se"], rhat_loss=v["rhat_loss"], rhat_samples_median=float(np.nanmedian(rh)),
        rhat_samples_max=float(np.nanmax(rh)),
        ess_median=float(np.nanmedian(e)), ess_per_draw=float(np.nanmedian(e) / (C * D)),
        lag1_median=float(np.nanmedian(lag1_autocorr(x))), llc=llc, llc_se=llc_se)


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
