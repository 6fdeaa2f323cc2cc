"""`python -m bench.mcse`: are the scores' error bars calibrated? Batch means (ours) against arviz-stats' MCSE.

Known answer: two Gaussian AR(1) series per chain, x_t = φ x_{t-1} + e_t and y_t = φ y_{t-1} + f_t with
Corr(e, f) = ρ, so Cov(x, y) = ρ / (1 − φ²) exactly and BIF = −Cov. For each (chains, draws, φ) the estimate is
replicated R times with fresh draws; a method is calibrated when its nominal 95 % interval covers the true value in
95 % of replicates.
- batch means: `bif.core.estimators.covariance` (what every score in the app uses), interval ± t_{K−1, 0.975}·SE,
  the t quantile its p-values use (K batches).
- arviz MCSE: `arviz_stats` mcse(method="mean") of the centred product series (x − x̄)(y − ȳ), whose mean is the
  covariance, interval ± 1.96·MCSE (normal, as the library's ESS-based MCSE implies).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from scipy import stats

from bif.core.diagnostics import mcse_mean
from bif.core.estimators import covariance

RHO = 0.3
CASES = [(2, 10), (4, 25), (4, 100), (4, 400)]  # smoke, small, demo-cpu, careful-cpu chains × draws
PHIS = [0.0, 0.5, 0.9]


def draws(C: int, D: int, phi: float, R: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (C, D, R): R independent replicates of the stationary bivariate AR(1)."""
    def innov():
        e = rng.normal(size=(2, C, R))
        return e[0], RHO * e[0] + np.sqrt(1 - RHO**2) * e[1]

    x, y = np.empty((C, D, R)), np.empty((C, D, R))
    e, f = innov()
    x[:, 0], y[:, 0] = e / np.sqrt(1 - phi**2), f / np.sqrt(1 - phi**2)
    for t in range(1, D):
        e, f = innov()
        x[:, t], y[:, t] = phi * x[:, t - 1] + e, phi * y[:, t - 1] + f
    return x, y


def coverage(C: int, D: int, phi: float, R: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    x, y = draws(C, D, phi, R, rng)
    truth = -RHO / (1 - phi**2)  # BIF = −Cov
    hit_bm, width_bm, K = 0, [], None
    for r in range(R):
        s = covariance(x[:, :, r:r + 1], y[:, :, r:r + 1])
        K = s.n_batches
        half = stats.t.ppf(0.975, K - 1) * s.bif_se[0, 0]
        hit_bm += abs(s.bif[0, 0] - truth) <= half
        width_bm.append(half)
    N = C * D
    z = (x - x.mean(axis=(0, 1))) * (y - y.mean(axis=(0, 1)))  # (C, D, R): mean over draws = biased Cov
    est = -z.mean(axis=(0, 1)) * N / (N - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_mc = 1.96 * mcse_mean(z) * N / (N - 1)
    ok = np.isfinite(half_mc)
    return {"chains": C, "draws": D, "phi": phi, "R": R, "batches": K, "cover_bm": hit_bm / R,
            "cover_mcse": float((np.abs(est - truth)[ok] <= half_mc[ok]).mean()) if ok.any() else float("nan"),
            "width_bm": float(np.median(width_bm)), "width_mcse": float(np.nanmedian(half_mc)),
            "mcse_defined": float(ok.mean())}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m bench.mcse", description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = [coverage(C, D, phi, args.replicates, args.seed + i)
            for i, ((C, D), phi) in enumerate((c, f) for c in CASES for f in PHIS)]
    print(f"Coverage of nominal 95 % intervals for BIF = −Cov (true value known), {args.replicates} replicates each, "
          f"ρ = {RHO}")
    print("| chains × draws | φ | batches K | batch means (t, K−1 df) | arviz MCSE (±1.96) | median half-width "
          "BM / MCSE |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['chains']} × {r['draws']} | {r['phi']:.1f} | {r['batches']} | {r['cover_bm']:.3f} | "
              f"{r['cover_mcse']:.3f} | {r['width_bm']:.3f} / {r['width_mcse']:.3f} |")
    return rows


if __name__ == "__main__":
    main()
