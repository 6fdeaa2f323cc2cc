"""Estimators against numpy, additivity over tokens, the sign convention, BH, and error-bar calibration."""

import numpy as np
import pytest

from bif.core import influence
from bif.core.estimators import bh_adjust_observed, covariance, jaccard, topk_overlap
from bif.core.trace import LossTrace


def synthetic_trace(C=4, D=60, n=6, P=5, q=2, Pq=4, seed=0) -> LossTrace:
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(C, D, 1, 1))
    train = rng.normal(size=(C, D, n, P)) + 0.5 * common
    query = rng.normal(size=(C, D, q, Pq)) + 0.5 * common
    query[:, :, 0, :2] += 2 * train[:, :, 0, :2]  # sample 0's first tokens drive query 0's first tokens
    tmask = np.ones((n, P), bool)
    tmask[3, 3:] = False  # padding
    qmask = np.ones((q, Pq), bool)
    qmask[:, 0] = False  # prompt
    return LossTrace(losses={"train": train, "query": query}, masks={"train": tmask, "query": qmask},
                     init={"train": np.zeros((n, P)), "query": np.zeros((q, Pq))}, sampling_loss=np.zeros((C, 10)))


def test_covariance_equals_numpy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 40, 5)), rng.normal(size=(3, 40, 2))
    x[..., 0] += y[..., 1]
    s = covariance(x, y)
    flat_x, flat_y = x.reshape(120, 5), y.reshape(120, 2)
    full_cov = np.cov(flat_x.T, flat_y.T)[:5, 5:]
    full_corr = np.corrcoef(flat_x.T, flat_y.T)[:5, 5:]
    np.testing.assert_allclose(s.bif, -full_cov, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s.corr, full_corr, rtol=1e-12, atol=1e-14)


def test_token_level_sums_to_sample_level():
    tr = synthetic_trace()
    for sample in range(6):
        tokens = influence.train_tokens(tr, sample, query=0)
        whole = influence.samples(tr, query=0)
        np.testing.assert_allclose(np.nansum(tokens.bif), whole.bif[sample], rtol=1e-10)
    per_query_token = influence.query_tokens(tr, query=0, sample=2)
    np.testing.assert_allclose(np.nansum(per_query_token.bif), influence.samples(tr, 0).bif[2], rtol=1e-10)
    pair = influence.pair(tr, 0, 0)
    np.testing.assert_allclose(np.nansum(pair.bif), influence.samples(tr, 0).bif[0], rtol=1e-10)
    assert np.isnan(pair.bif[:, 0]).all(), "prompt positions of the query are not observables"


def test_sign_convention_supporting_sample_has_negative_bif_and_positive_support():
    tr = synthetic_trace()
    s = influence.samples(tr, query=0)
    assert s.bif[0] < 0 and s.corr[0] > 0 and s.support[0] > 0
    assert s.top(1, "support")[0] == 0 and s.significant[0]
    tr.losses["query"][:, :, 0, :2] -= 4 * tr.losses["train"][:, :, 0, :2]  # now sample 0 opposes
    s = influence.samples(tr, query=0)
    assert s.bif[0] > 0 and s.support[0] < 0 and s.top(1, "oppose")[0] == 0


def test_masked_positions_are_nan_and_never_significant():
    tr = synthetic_trace()
    s = influence.train_tokens(tr, sample=3, query=0)
    assert np.isnan(s.corr[3:]).all() and not s.significant[3:].any()
    q = influence.query_tokens(tr, query=0)
    assert np.isnan(q.corr[0]) and np.isfinite(q.corr[1:]).all()


def test_bh_adjust_observed_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> monotone from the top: 0.04, 0.0533, 0.0533, 0.5
    np.testing.assert_allclose(bh_adjust_observed(p), [0.04, 0.053333333, 0.053333333, 0.5], rtol=1e-6)
    q = bh_adjust_observed(np.array([[np.nan, 0.2], [0.01, np.nan]]))
    assert np.isnan(q[0, 0]) and np.isnan(q[1, 1]), "unobserved entries stay NaN"
    np.testing.assert_allclose(q[[0, 1], [1, 0]], [0.2, 0.02]), "and are not counted in m (m = 2 here)"
    assert np.isnan(bh_adjust_observed(np.full(3, np.nan))).all()


def test_standard_errors_are_calibrated_on_null_autocorrelated_series():
    """Independent AR(1) series (lag-1 autocorrelation 0.7, like real traces): |z| < 1.96 about 95 % of the time."""
    rng = np.random.default_rng(3)
    C, D, n = 4, 200, 400
    x, y = np.zeros((C, D, n)), np.zeros((C, D, 1))
    for t in range(1, D):
        x[:, t] = 0.7 * x[:, t - 1] + rng.normal(size=(C, n))
        y[:, t] = 0.7 * y[:, t - 1] + rng.normal(size=(C, 1))
    s = covariance(x, y)
    false_pos = np.mean(s.p < 0.05)
    assert 0.01 < false_pos < 0.12, f"nominal 5 %, got {false_pos:.3f}"
    assert s.significant.sum() <= 2, "BH at 5 % FDR should flag (almost) nothing under the null"


def test_stability_and_set_agreement():
    tr = synthetic_trace(D=200)
    st = influence.stability(tr, query=0, k=1)
    assert st["topk_support_overlap"] == 1.0
    assert jaccard([], []) is None and jaccard([1, 2], [2, 3]) == pytest.approx(1 / 3)
    assert topk_overlap([1, 2, 3], [3, 4, 5]) == pytest.approx(1 / 3)


def test_a_finding_must_replicate_in_both_independent_halves_of_the_chains():
    rng = np.random.default_rng(5)
    C, D, n = 4, 200, 30
    train = rng.normal(size=(C, D, n, 1))
    query = rng.normal(size=(C, D, 1, 1))
    query[:2, :, 0, 0] += 1.5 * train[:2, :, 0, 0]  # sample 0 moves the query in chains 0-1 only
    query[:, :, 0, 0] += 0.6 * train[:, :, 1, 0]  # sample 1 does so everywhere
    tr = LossTrace(losses={"train": train, "query": query}, masks={"train": np.ones((n, 1), bool),
                                                                   "query": np.ones((1, 1), bool)},
                   init={"train": np.zeros((n, 1)), "query": np.zeros((1, 1))}, sampling_loss=np.zeros((C, 10)))
    pooled = influence.pooled_samples(tr, query=0)
    assert pooled.significant[0] and pooled.significant[1], "pooled over all chains both look like findings"
    s = influence.samples(tr, query=0)
    assert not s.significant[0], "the second, independently seeded half does not reproduce sample 0"
    assert s.significant[1], "a real effect replicates"


def test_fewer_than_four_chains_give_no_findings_and_say_why():
    rng = np.random.default_rng(6)
    for C in (2, 3):
        D, n = 200, 30
        train = rng.normal(size=(C, D, n, 1))
        query = rng.normal(size=(C, D, 1, 1)) + 2.0 * train[:, :, :1]  # sample 0 drives the query in every chain
        tr = LossTrace(losses={"train": train, "query": query},
                       masks={"train": np.ones((n, 1), bool), "query": np.ones((1, 1), bool)},
                       init={"train": np.zeros((n, 1)), "query": np.zeros((1, 1))}, sampling_loss=np.zeros((C, 10)))
        assert influence.pooled_samples(tr, query=0).significant[0], "pooled BH alone would flag it"
        for s in (influence.samples(tr, query=0), influence.query_tokens(tr, query=0),
                  influence.train_tokens(tr, sample=0, query=0), influence.pair(tr, sample=0, query=0)):
            assert not s.significant.any(), "without two halves of >= 2 chains nothing replicates"
            assert f"{C} chains" in s.no_findings_reason and ">= 4" in s.no_findings_reason.replace("≥", ">=")
    s = influence.samples(synthetic_trace(D=200), query=0)
    assert s.no_findings_reason is None
