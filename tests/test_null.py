"""The built-in null (bif.core.null): query losses paired with another, independent chain have zero influence by
construction, so whatever the finding rule flags there is a false finding. Pinned: ≈ 0 at every preset's shape."""

import numpy as np
import pytest

import bif
from bif.core import influence, null
from bif.core.config import PRESETS
from bif.core.trace import LossTrace


@pytest.mark.parametrize("chains", range(2, 9))
def test_every_null_chain_reads_another_chain_of_its_own_half(chains):
    perm = null.null_permutation(chains)
    assert sorted(perm) == list(range(chains)) and all(perm != np.arange(chains))
    if chains >= 4:
        for h in influence.chain_halves(chains):
            assert set(perm[h]) == set(range(chains)[h]), "halves stay disjoint: the null's halves are independent"


def ar_trace(C, D, n=256, q=8, planted=3, strength=0.6, drift=0.0, seed=0) -> tuple[LossTrace, int]:
    """Stationary AR(1) losses (ρ 0.5) of n samples and q queries; in each chain the first `planted` samples drive
    every query (a real influence); `drift` adds one trend shared by every chain (a trace that has not settled)."""
    rng = np.random.default_rng(seed)
    rho = 0.5
    x = np.empty((C, D, n))
    x[:, 0] = rng.normal(size=(C, n)) / np.sqrt(1 - rho**2)
    for t in range(1, D):
        x[:, t] = rho * x[:, t - 1] + rng.normal(size=(C, n))
    y = rng.normal(size=(C, D, q)) + strength * x[:, :, :planted].sum(-1, keepdims=True)
    trend = drift * np.linspace(0, 1, D)[None, :, None]
    x, y = x + trend * rng.uniform(0.5, 1.5, size=n), y + trend
    trace = LossTrace(losses={"train": x[..., None], "query": y[..., None]},
                      masks={"train": np.ones((n, 1), bool), "query": np.ones((q, 1), bool)},
                      init={"train": np.zeros((n, 1)), "query": np.zeros((q, 1))}, sampling_loss=np.zeros((C, 2)))
    return trace, q


@pytest.mark.parametrize("name", list(PRESETS))
def test_null_flags_about_nothing_at_every_preset_while_real_influences_are_found(name):
    cfg = PRESETS[name]
    trace, q = ar_trace(cfg.chains, cfg.draws, seed=len(name))
    result = null.check([(trace, i) for i in range(q)])
    assert result.null_queries_with_any <= null.NOMINAL and result.null_rate < 1e-3, result.sentence()
    if cfg.chains < influence.MIN_CHAINS:
        assert result.real.sum() == 0 and result.no_findings_reason, "smoke: no findings, and it says why"
        assert "not applicable" in result.sentence()
    else:
        assert result.no_findings_reason is None
        assert result.real_per_query >= 2, "the planted influences are found in the real pairing"
        assert "Null check (8 queries)" in result.sentence()


def test_a_trend_shared_by_all_chains_makes_the_null_flag_entries():
    trace, q = ar_trace(4, 100, drift=6.0)
    result = null.check([(trace, i) for i in range(q)])
    assert result.null_per_query > 10, "shared drift is not independence: the null exposes it"


def test_null_on_a_real_run_of_the_tiny_model(tiny_run):
    _, run = tiny_run  # smoke preset: 2 chains, so no findings either way
    result = null.check([run.trace(0)])
    assert result.real.sum() == result.null.sum() == 0 and "2 chains" in result.no_findings_reason


@pytest.mark.parametrize("preset", ["demo-cpu"])
def test_null_of_a_four_chain_run_of_the_tiny_model_flags_nothing(tiny_lm, tiny_corpus, tmp_path, preset):
    cfg = bif.preset(preset, burn_in=20, draws=60, keep_draws="off")  # the preset's shape of chains, fewer steps
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
                          [bif.Query(f"User: what is {a} plus 1?\nBot:", f" {a + 1}") for a in range(4)], cfg,
                          cache_root=tmp_path)
    result = null.check([run.trace(i) for i in range(len(run.queries))])
    assert result.no_findings_reason is None and result.null.sum() == 0, result.sentence()


def pure_noise(C=4, D=100, n=256, q=120, seed=0) -> LossTrace:
    """Independent Gaussian losses: every pairing is a null, the real one included."""
    rng = np.random.default_rng(seed)
    return LossTrace(losses={"train": rng.normal(size=(C, D, n, 1)), "query": rng.normal(size=(C, D, q, 1))},
                     masks={"train": np.ones((n, 1), bool), "query": np.ones((q, 1), bool)},
                     init={"train": np.zeros((n, 1)), "query": np.zeros((q, 1))}, sampling_loss=np.zeros((C, 2)))


def test_replication_removes_the_false_findings_that_bh_alone_allows(monkeypatch):
    """BH at 5 % flags something in ≈ 5 % of pure-noise queries, by design. Given such a pooled score, halves
    that agree pass a 5 % check almost surely (the old rule: it removed none); each half at 0.1 % removes them."""
    trace = pure_noise()
    flagged = lambda: sum(influence.samples(trace, i).significant.any() for i in range(120))  # noqa: E731
    bh_only = sum(influence.pooled_samples(trace, i).significant.any() for i in range(120))
    assert bh_only >= 3, "BH alone: a few pure-noise queries have a 'finding'"
    monkeypatch.setattr(influence, "REPLICATION_P", 0.05)
    assert flagged() == bh_only, "a 5 % check in each half replicated nothing"
    monkeypatch.undo()
    assert flagged() == 0, "each half at 0.1 %: no finding on pure noise"


def test_null_replicas_are_circular_shifts_of_the_other_chain_and_all_count():
    trace, q = ar_trace(4, 100)
    one, four = null.check([(trace, i) for i in range(q)]), null.check([(trace, i) for i in range(q)], replicas=4)
    assert len(one.null) == q and len(four.null) == 4 * q and four.replicas == 4
    assert np.array_equal(four.null[:q], one.null), "replica 0 is the unshifted null"
    assert np.array_equal(four.real, one.real) and "× 4 null replicas" in four.sentence()
    shifted = null.null_trace(trace, shift=25).losses["query"]
    assert np.array_equal(shifted[0, 25:], trace.losses["query"][null.null_permutation(4)[0], :75])


def test_the_null_reuses_the_summed_training_losses_and_never_the_real_query_sums():
    trace, q = ar_trace(4, 100)
    fresh = null.check([(ar_trace(4, 100)[0], i) for i in range(q)])
    trace.series("train"), trace.series("query")  # the real pairing's sums are now known
    shared = null.check([(trace, i) for i in range(q)])
    assert np.array_equal(shared.null, fresh.null) and np.array_equal(shared.real, fresh.real)
    assert null.null_trace(trace).series("train") is trace.series("train"), "summed once, shared"
    assert not np.array_equal(null.null_trace(trace).series("query"), trace.series("query"))
