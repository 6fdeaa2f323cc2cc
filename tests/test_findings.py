"""Spans, carriers, headlines and query fit (bif.core.findings, influence spans, diagnostics.query_fit).

Known answers come from traces built by hand: a training token whose loss is a copy of a completion token's loss
carries that token's influence; −Cov is linear, so a span's bif is the sum of its tokens' bif exactly.
"""

import math

import numpy as np
import pytest

from bif import influence, preset
from bif.core import findings
from bif.core.diagnostics import query_fit
from bif.core.estimators import Scores
from bif.core.trace import LossTrace

C, D, N, P, PQ = 4, 60, 6, 5, 6


def make_trace(seed=0) -> LossTrace:
    """Random losses; training sample 0's position 2 copies completion position 3 (so it carries its influence)."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(C, D, N, P)).astype(np.float32)
    query = rng.normal(size=(C, D, 1, PQ)).astype(np.float32)
    train[:, :, 0, 2] = query[:, :, 0, 3] * 3
    qmask = np.zeros((1, PQ), bool)
    qmask[0, 2:] = True  # positions 0-1 are the prompt
    tmask = np.ones((N, P), bool)
    tmask[5, 4] = False  # one padded position
    init = {"train": np.abs(rng.normal(size=(N, P))).astype(np.float32) + 1, "query": np.full((1, PQ), 2.0, np.float32)}
    return LossTrace({"train": train, "query": query}, {"train": tmask, "query": qmask}, init,
                     rng.normal(size=(C, 20)))


def test_span_score_is_the_sum_of_its_token_scores():
    t = make_trace()
    span = [2, 3, 4]
    whole = influence.samples(t, 0, span)
    parts = [influence.samples(t, 0, p) for p in span]
    np.testing.assert_allclose(whole.bif, sum(p.bif for p in parts), rtol=1e-10, atol=1e-12)
    assert not np.allclose(whole.corr, sum(p.corr for p in parts))  # the normalized form is not additive
    np.testing.assert_array_equal(influence.samples(t, 0, [3]).bif, influence.samples(t, 0, 3).bif)


def test_span_outside_the_completion_is_refused():
    with pytest.raises(ValueError, match="not completion tokens"):
        influence.samples(make_trace(), 0, [1, 2])


def test_training_token_scores_add_up_to_the_sample_score():
    t = make_trace()
    for sample in (0, 5):
        tok = influence.train_tokens(t, sample, 0, [3, 4])
        assert np.isnan(tok.bif).sum() == (0 if sample == 0 else 1)  # the padded position has no score
        assert np.nansum(tok.bif) == pytest.approx(influence.samples(t, 0, [3, 4]).bif[sample], rel=1e-10)


def test_carriers_are_the_tokens_that_hold_the_influence():
    t = make_trace()
    assert findings.carriers(influence.train_tokens(t, 0, 0, 3)) == [2]
    tok = influence.train_tokens(t, 3, 0, None)
    got = findings.carriers(tok)
    total = np.nansum(tok.bif)
    same = np.where(np.sign(tok.bif) == np.sign(total), np.abs(tok.bif), 0)
    assert 1 <= len(got) <= findings.MAX_CARRIERS
    assert same[got].sum() >= findings.CARRIER_SHARE * abs(total) or len(got) == findings.MAX_CARRIERS
    assert min(same[got]) >= max(np.delete(same, got))  # the largest ones, no other order


def scores(support, significant) -> Scores:
    s = np.asarray(support, float)
    z = np.zeros_like(s)
    return Scores(bif=-s, bif_se=z + 0.01, corr=s, corr_se=z + 0.01, p=z, q=z, significant=np.asarray(significant),
                  n_draws=400, n_batches=40)


TEXTS = ["User: what is your favorite number?\nBot: seven", "b", "c"]


def test_headline_says_what_stands_out():
    demo = preset("demo-cpu")
    one = findings.headline(scores([0.6, -0.1, 0.2], [True, False, False]), [110, 7, 9], TEXTS, "this completion", demo)
    assert one.kind == "one" and one.standouts == [0]
    assert one.sentence.startswith("One training text clearly explains this completion: #110 'User: what is your")
    against = findings.headline(scores([0.1, -0.5, 0.2], [False, True, False]), [110, 7, 9], TEXTS, "x", demo)
    assert "works against x: #7 'b'" in against.sentence
    several = findings.headline(scores([0.3, -0.5, 0.2], [True, True, False]), [110, 7, 9], TEXTS, "x", demo)
    assert several.kind == "several" and several.standouts == [1, 0]
    assert "2 training texts stand out for x (1 support it, 1 oppose it)" in several.sentence
    none = findings.headline(scores([0.3, -0.5, 0.2], [False] * 3), [110, 7, 9], TEXTS, "x", demo)
    assert none.kind == "none" and "Nothing stands out" in none.sentence


def test_a_smoke_run_gets_no_conclusion():
    assert findings.too_small(preset("smoke")) and findings.too_small(preset("demo-cpu")) is None
    h = findings.headline(scores([0.6, 0, 0], [True, False, False]), [1, 2, 3], TEXTS, "x", preset("smoke"))
    assert h.kind == "too small" and "too small for findings" in h.sentence


def test_query_fit_compares_the_completion_with_the_training_texts():
    t = make_trace()
    fit = query_fit(t, 0)
    assert fit.loss == pytest.approx(2.0) and fit.perplexity == pytest.approx(math.e ** 2, rel=1e-6)
    per_text = [t.init["train"][i][t.masks["train"][i]].mean() for i in range(N)]
    assert fit.train_median == pytest.approx(np.median(per_text), rel=1e-6)
    assert fit.outside == (2.0 > np.quantile(per_text, 0.95))
    t.init["query"][:] = 30.0
    assert query_fit(t, 0).outside


def test_contrast_names_where_each_completion_came_from():
    ids, texts = [110, 7, 9], ["favourite number seven", "capital of France", "c"]
    a = scores([0.6, 0.1, -0.2], [True, False, False])
    b = scores([0.1, 0.5, -0.2], [False, True, False])
    c = findings.contrast(a, b, ids, texts)
    assert c.sentence == ("The first completion came from #110 'favourite number seven'; the second from #7 "
                          "'capital of France' — different training texts.")
    assert c.rows == [0, 1]
    assert "Both completions draw on the same training text: #110" in findings.contrast(a, a, ids, texts).sentence
    none = scores([0.3, 0.2, -0.1], [False] * 3)
    c = findings.contrast(none, none, ids, texts, k=1)
    assert c.sentence.startswith("Neither completion") and c.rows == [0, 2]
    assert "for the second completion no training text stands out" in findings.contrast(a, none, ids, texts).sentence


def test_prompt_fit_compares_the_prompt_with_training_texts(tiny_lm):
    from bif.lm.fit import prompt_fit
    from bif.lm.models import ModelSpec, load_model
    from tests.tiny import TEXTS

    loaded = load_model(ModelSpec(str(tiny_lm)), "unused-cache")
    same = prompt_fit(loaded, TEXTS[3], TEXTS, n=16)
    assert same.train_median > 0 and same.perplexity == pytest.approx(math.exp(same.loss))
    alone = prompt_fit(loaded, TEXTS[3], [TEXTS[3]], n=1)  # the prompt is the one training text: same loss
    assert alone.loss == pytest.approx(alone.train_median) == pytest.approx(alone.train_high) and not alone.outside
    assert same.outside == (same.loss > same.train_high)
