"""Diagnostics: our figures are arviz-stats' (Vehtari et al. 2021) on the same draws; known-answer processes; verdicts."""

import warnings

import numpy as np
from arviz_stats.base import array_stats

from bif.core.diagnostics import (ESS_MIN_PER_CHAIN, RHAT_MAX, diagnose, ess_bulk, ess_tail, lag1_autocorr,
                                  mcse_mean, rhat)
from bif.core.trace import LossTrace


def ar1(C, D, n, rho, rng):
    x = np.zeros((C, D, n))
    x[:, 0] = rng.normal(size=(C, n)) / np.sqrt(1 - rho**2)
    for t in range(1, D):
        x[:, t] = rho * x[:, t - 1] + rng.normal(size=(C, n))
    return x


def test_figures_are_arviz_stats_on_the_same_draws():
    x = ar1(4, 300, 7, 0.5, np.random.default_rng(3))
    kw = {"chain_axis": 0, "draw_axis": 1}
    np.testing.assert_array_equal(rhat(x), array_stats.rhat(x, method="rank", **kw))
    np.testing.assert_array_equal(ess_bulk(x), array_stats.ess(x, method="bulk", **kw))
    np.testing.assert_array_equal(ess_tail(x), array_stats.ess(x, method="tail", prob=(0.05, 0.95), **kw))
    np.testing.assert_array_equal(mcse_mean(x), array_stats.mcse(x, method="mean", **kw))
    # and diagnose() reports them for the per-sample series and the sampling loss
    losses = x[..., None]  # (C, D, n, 1): one scored position per sample
    sl = np.concatenate([np.full((4, 10), 1.0), 1.0 + 0.01 * x[:, :, 0]], axis=1)  # (C, 10 + D): burn-in 10
    d = diagnose(LossTrace(losses={"train": losses}, masks={"train": np.ones((7, 1), bool)},
                           init={"train": np.zeros((7, 1))}, sampling_loss=sl), nbeta=1.0, burn_in=10)
    assert d.rhat_loss == float(array_stats.rhat(sl[:, 10:], method="rank", **kw))
    assert d.ess_bulk_loss == float(array_stats.ess(sl[:, 10:], method="bulk", **kw))
    assert d.rhat_samples_max == float(np.max(rhat(x)))
    assert d.ess_median == float(np.median(ess_bulk(x)))
    assert d.ess_samples_min == float(np.min(np.fmin(ess_bulk(x), ess_tail(x))))


def test_known_processes():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 500, 50))
    assert 0.85 < np.median(ess_bulk(iid)) / 2000 < 1.15
    assert 0.85 < np.median(ess_tail(iid)) / 2000 < 1.15
    assert np.median(np.abs(rhat(iid) - 1)) < 0.005 and np.mean(rhat(iid) < RHAT_MAX) > 0.9
    # MCSE of the mean of iid draws: sd / sqrt(N)
    np.testing.assert_allclose(np.median(mcse_mean(iid) / (iid.std(axis=(0, 1)) / np.sqrt(2000))), 1.0, atol=0.1)
    x = ar1(4, 1000, 50, 0.9, rng)
    expected = 4000 * (1 - 0.9) / (1 + 0.9)  # ≈ 211: ESS of an AR(1) mean
    assert 0.75 < np.median(ess_bulk(x)) / expected < 1.25
    assert abs(np.median(lag1_autocorr(x)) - 0.9) < 0.03
    shifted = iid.copy()
    shifted[0] += 1.0  # one of 4 chains 1 sd away: between-split-chain variance 2·(3/4)²+6·(1/4)² over 7 = 0.214
    assert np.all(rhat(shifted) > RHAT_MAX)
    assert abs(np.median(rhat(shifted)) - np.sqrt(1 + 0.214)) < 0.02  # R-hat² ≈ (W + B/n) / W, W = 1


def test_undefined_cases_are_nan_without_warnings():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 50, 3))
    x[:, :, 0] = 2.0  # constant
    x[1, 3, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(rhat(x)[:2]).all() and np.isfinite(rhat(x)[2])
        assert np.isnan(rhat(x[:1])).all() and np.isnan(ess_bulk(x[:1])).all()  # one chain
        assert np.isnan(ess_bulk(x[:, :3])).all()  # fewer than 4 draws


def trace_with(sampling_loss, C=4, D=40, n=5):
    rng = np.random.default_rng(1)
    return LossTrace(losses={"train": rng.normal(1.0, 0.1, size=(C, D, n, 3))}, masks={"train": np.ones((n, 3), bool)},
                     init={"train": np.full((n, 3), 0.9)}, sampling_loss=sampling_loss)


def test_verdicts():
    rng = np.random.default_rng(2)
    burn, S = 20, 120
    steps = np.arange(S)
    level = 0.5 + 0.3 * (1 - np.exp(-steps / 5))  # rises, then flat
    ok = diagnose(trace_with(level + 0.02 * rng.normal(size=(4, S))), nbeta=10, burn_in=burn)
    assert ok.verdict == "ok", ok.advice
    drifting = diagnose(trace_with(0.5 + 0.01 * steps + 0.02 * rng.normal(size=(4, S))), nbeta=10, burn_in=burn)
    assert drifting.verdict == "drifting" and "burn_in" in drifting.advice
    left = diagnose(trace_with(np.concatenate([np.full((4, 1), 0.3), np.full((4, S - 1), 9.4)], 1)
                               + 0.01 * rng.normal(size=(4, S))), nbeta=10, burn_in=burn)
    assert left.verdict == "left basin" and "step_size" in left.advice
    # LLC = nβ (E[L] − L(w*)) on the scored set: 10 * (1.0 − 0.9)
    assert abs(ok.llc - 1.0) < 0.05


def test_checks_state_the_published_thresholds():
    rng = np.random.default_rng(6)
    d = diagnose(trace_with(0.5 + 0.02 * rng.normal(size=(4, 120))), nbeta=10, burn_in=20)
    checks = {c.name: c for c in d.checks()}
    assert checks["R-hat of the sampling loss"].threshold == "< 1.01"
    assert checks["Bulk ESS of the sampling loss"].threshold.startswith(f"≥ {4 * ESS_MIN_PER_CHAIN}")
    # 40 iid draws per chain: 160 effective draws at most, below the 400 recommended for 4 chains
    assert checks["Smallest bulk or tail ESS of a sample's loss"].ok is False and d.ess_low == 1.0
    assert checks["R-hat of the sampling loss"].ok is (d.rhat_loss < 1.01)


def test_loss_below_w_star_and_disagreeing_chains_are_named():
    rng = np.random.default_rng(4)
    S, burn = 120, 20
    fell = np.concatenate([np.full((4, 1), 5.6), np.full((4, S - 1), 5.4)], 1) + 0.01 * rng.normal(size=(4, S))
    d = diagnose(trace_with(fell), nbeta=10, burn_in=burn)
    assert d.verdict == "below w*" and "not a local minimum" in d.advice
    levels = np.array([0.6, 0.7, 0.8, 0.9])[:, None]
    apart = np.concatenate([np.full((4, 1), 0.5), np.repeat(levels, S - 1, 1)], 1) + 0.01 * rng.normal(size=(4, S))
    d = diagnose(trace_with(apart), nbeta=10, burn_in=burn)
    assert d.verdict == "chains disagree" and "R-hat" in d.advice and "1.01" in d.advice
