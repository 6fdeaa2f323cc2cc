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
        assert len(s.real) == len(s.null) == len(known) and s.seconds > 0
        assert [rr is None for rr in s.reciprocal_ranks] == [a.source not in ranked for a in known]
        assert all(0 < rr <= 1 for rr in s.reciprocal_ranks if rr is not None)
    assert r.null_rate == pytest.approx(sum(int(s.null.sum()) for s in r.seeds) / (20 * 2 * len(known)))
    for j, a, b in zip(r.jaccard, r.seeds[0].flagged, r.seeds[1].flagged):
        assert j == (None if not a | b else len(a & b) / len(a | b))
    lines = trust.report([r], len(known))
    assert lines[0].startswith("trust on the TEST set (4 held-out") and "20 of 40 training samples" in lines[0]
    assert lines[3].startswith("| demo-cpu | ") and "null = the same finding rule" in lines[-1]
    assert np.isfinite(r.load[0])


def test_a_scored_set_chosen_by_the_queries_is_refused(tiny_lm, tiny_corpus, tmp_path):
    data = bif.DataSpec(str(tiny_corpus), n_scored=20, query_neighbours=2)
    with pytest.raises(ValueError, match="query_neighbours=0"):
        trust.measure("demo-cpu", bif.ModelSpec(str(tiny_lm)), data, answers(), tmp_path)


def test_the_test_set_is_the_held_out_one():
    from bif.evaluation.heldout import TEST_PARAPHRASES

    known = trust.test_set(3)
    assert len(known) == 3 and known[0].query.prompt == f"User: {TEST_PARAPHRASES[0].question}\nBot:"
