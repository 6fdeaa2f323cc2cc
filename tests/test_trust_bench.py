"""bench/trust.py on the tiny model: two seeds, the null, source ranks and flagged-set agreement, in seconds."""

import numpy as np
import pytest

import bif
from bench import trust
from tests.tiny import TEXTS


def answers():
    pairs = [(3, 4), (5, 1), (7, 2), (0, 3)]
    return [trust.KnownAnswer(bif.Query(f"User: what is {a} plus {b}?\nBot:", f" {a + b}"),
                              TEXTS.index(f"User: what is {a} plus {b}?\nBot: {a + b}")) for a, b in pairs]


def test_trust_figures_of_a_preset_on_known_answers(tiny_lm, tiny_corpus, tmp_path):
    data = bif.DataSpec(str(tiny_corpus), n_scored=20, subset_seed=1)  # random: the same set for every query
    known = answers()
    r = trust.measure("demo-cpu", bif.ModelSpec(str(tiny_lm)), data, known, tmp_path,
                      overrides={**trust.FAST, "keep_draws": "off"})
    assert [s.seed for s in r.seeds] == [0, 1] and r.n_scored == 20 and "20 of 40" in r.how_scored
    ranked = set(bif.open_run(next((tmp_path / "runs").iterdir())).train_ids)
    for s in r.seeds:
        assert len(s.real) == len(known) and len(s.null) == trust.NULL_REPLICAS * len(known) and s.seconds > 0
        assert [rr is None for rr in s.reciprocal_ranks] == [a.source not in ranked for a in known]
        assert all(0 < rr <= 1 for rr in s.reciprocal_ranks if rr is not None)
    assert r.null_rate == pytest.approx(sum(int(s.null.sum()) for s in r.seeds) / (20 * 2 * trust.NULL_REPLICAS * len(known)))
    for j, a, b in zip(r.jaccard, r.seeds[0].flagged, r.seeds[1].flagged):
        assert j == (None if not a | b else len(a & b) / len(a | b))
    tops = [s.top for s in r.seeds]
    assert all(len(t) == trust.TOP and len(set(t)) == trust.TOP for seed in tops for t in seed)
    assert r.top_shared == pytest.approx(np.mean([len(set(a) & set(b)) / trust.TOP for a, b in zip(*tops)]))
    lines = trust.report([r], len(known))
    assert lines[0].startswith("trust on the TEST set (4 held-out") and "20 of 40 training samples" in lines[0]
    assert lines[3].startswith("| demo-cpu | ") and lines[4].startswith("null = the same finding rule")
    assert lines[5].startswith("demo-cpu: ") and lines[5] == r.verdict(), "a verdict per preset: real against null"
    assert np.isfinite(r.load[0])
    again = trust.measure("demo-cpu", bif.ModelSpec(str(tiny_lm)), data, known, tmp_path,
                          overrides={**trust.FAST, "keep_draws": "off"})
    assert all(s.cached for s in again.seeds) and "cached" in trust.report([again], len(known))[3]


def test_one_seed_alone_fills_the_cache_and_says_it_has_no_agreement(tiny_lm, tiny_corpus, tmp_path):
    data = bif.DataSpec(str(tiny_corpus), n_scored=None)  # every training text ranked: every source has a rank
    r = trust.measure("demo-cpu", bif.ModelSpec(str(tiny_lm)), data, answers(), tmp_path, seeds=(1,),
                      overrides={**trust.FAST, "keep_draws": "off"})
    assert [s.seed for s in r.seeds] == [1] and r.jaccard == [] and r.n_scored == 40
    assert None not in r.seeds[0].reciprocal_ranks
    row = trust.report([r], 4)[3]
    assert "— (one seed)" in row and "(4 of 4)" in row and np.isnan(r.top_shared)


def _trust(real, null, seeds=2):
    result = [trust.SeedResult(s, 1.0, "ok", np.array(real), np.array(null), [], [], []) for s in range(seeds)]
    return trust.PresetTrust("demo-cpu", {}, 850, "all", result, [], (0.0, 0.0))


def test_the_verdict_says_when_findings_are_no_better_than_the_null():
    assert "NOT better than its null" in _trust([1, 0, 0, 1], [1, 0, 0, 0]).verdict()
    assert "NOT better than its null" in _trust([0, 0], [0, 0]).verdict(), "no findings at all is no evidence"
    good = _trust([3, 1, 2, 2] * 10, [0] * 39 + [1])
    assert good.null_queries_with_any == pytest.approx(1 / 40) and "within the 5%" in good.verdict()
    assert "ABOVE the 5%" in _trust([9] * 10, [1] + [0] * 9).verdict()


def test_a_scored_set_chosen_by_the_queries_is_refused(tiny_lm, tiny_corpus, tmp_path):
    data = bif.DataSpec(str(tiny_corpus), n_scored=20, query_neighbours=2)
    with pytest.raises(ValueError, match="query_neighbours=0"):
        trust.measure("demo-cpu", bif.ModelSpec(str(tiny_lm)), data, answers(), tmp_path)


def test_the_test_set_is_the_held_out_one():
    from bif.evaluation.heldout import TEST_PARAPHRASES

    known = trust.test_set(3)
    assert len(known) == 3 and known[0].query.prompt == f"User: {TEST_PARAPHRASES[0].question}\nBot:"
