"""A LossTrace's summed series (Σ_pos ℓ over all rows) is computed once per losses array and shared: by the traces
of one Run (every query's trace carries the same training losses) and by its chains (`chains_of`). The scores
are the same numbers, bit for bit, as when every view sums them again."""

import numpy as np
import pytest

from bif.core import influence
from bif.core.trace import ChainStack, LossTrace
from tests.test_stream import synthetic_trace


def _fresh(t: LossTrace) -> LossTrace:
    """The same arrays without anything summed yet."""
    return LossTrace(dict(t.losses), t.masks, t.init, t.sampling_loss)


def test_a_runs_traces_share_the_training_losses_summed_once(tiny_run):
    _, run = tiny_run
    a, _ = run.trace(0)
    b, _ = run.trace(0)
    x = a.series("train")
    assert b.series("train") is x, "the second view reuses the first one's sum"
    np.testing.assert_array_equal(x, _fresh(a).series("train"))
    with pytest.raises(ValueError):
        x[0, 0, 0] = 1.0  # shared: nobody may change it in place
    assert a.series("train", [0, 2]) is not x and a.series("train", [0, 2]).flags.writeable, "rows: not kept"


def test_another_array_under_the_same_name_is_summed_anew():
    t = synthetic_trace(C=4)
    t.series("query")
    other = LossTrace({**t.losses, "query": t.losses["query"] + 1}, t.masks, t.init, t.sampling_loss, t.sums)
    np.testing.assert_array_equal(other.series("query"), _fresh(other).series("query"))


@pytest.mark.parametrize("mapped", [False, True])
def test_scores_with_the_shared_series_equal_scores_summed_anew(mapped):
    t = synthetic_trace(C=4)
    if mapped:  # a large run's memory-mapped trace
        t = LossTrace({k: ChainStack(list(v)) for k, v in t.losses.items()}, t.masks, t.init, t.sampling_loss)
    t.series("train"), t.series("query")  # known from an earlier view
    for token in (None, *map(int, np.flatnonzero(t.masks["query"][1]))):
        a, b = influence.samples(t, 1, token), influence.samples(_fresh(t), 1, token)
        for f in ("bif", "bif_se", "corr", "corr_se", "q", "significant"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_array_equal(influence.query_tokens(t, 1).bif, influence.query_tokens(_fresh(t), 1).bif)
    assert influence.stability(t, 1) == influence.stability(_fresh(t), 1)
    for chains in (*influence.chain_halves(4), np.array([3, 0])):  # the finding rule's halves; any chains
        part = t.chains_of(chains)
        assert part.sums["train"][0] is part.losses["train"], "the slice carries its part of the sum"
        a = influence.pooled_samples(part, 1)
        b = influence.pooled_samples(influence.select_chains(_fresh(t), chains), 1)
        np.testing.assert_array_equal(a.bif, b.bif)
        np.testing.assert_array_equal(a.corr_se, b.corr_se)
