"""Diagnostics on synthetic traces with known behaviour."""

import numpy as np

from bif.core.diagnostics import diagnose, ess, lag1_autocorr, split_rhat
from bif.core.trace import LossTrace


def ar1(C, D, n, rho, rng):
    x = np.zeros((C, D, n))
    x[:, 0] = rng.normal(size=(C, n)) / np.sqrt(1 - rho**2)
    for t in range(1, D):
        x[:, t] = rho * x[:, t - 1] + rng.normal(size=(C, n))
    return x


def test_ess_and_rhat_of_known_processes():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 500, 50))
    assert 0.8 < np.median(ess(iid)) / 2000 < 1.2
    assert np.all(np.abs(split_rhat(iid) - 1) < 0.05)
    x = ar1(4, 2000, 50, 0.7, rng)
    expected = 8000 * (1 - 0.7) / (1 + 0.7)  # ≈ 1412
    assert 0.75 < np.median(ess(x)) / expected < 1.25
    assert abs(np.median(lag1_autocorr(x)) - 0.7) < 0.05
    shifted = iid.copy()
    shifted[0] += 3.0  # one chain elsewhere
    assert np.median(split_rhat(shifted)) > 1.2


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


def test_loss_below_w_star_and_disagreeing_chains_are_named():
    rng = np.random.default_rng(4)
    S, burn = 120, 20
    fell = np.concatenate([np.full((4, 1), 5.6), np.full((4, S - 1), 5.4)], 1) + 0.01 * rng.normal(size=(4, S))
    d = diagnose(trace_with(fell), nbeta=10, burn_in=burn)
    assert d.verdict == "below w*" and "not a local minimum" in d.advice
    levels = np.array([0.6, 0.7, 0.8, 0.9])[:, None]
    apart = np.concatenate([np.full((4, 1), 0.5), np.repeat(levels, S - 1, 1)], 1) + 0.01 * rng.normal(size=(4, S))
    d = diagnose(trace_with(apart), nbeta=10, burn_in=burn)
    assert d.verdict == "chains disagree" and "R-hat" in d.advice
