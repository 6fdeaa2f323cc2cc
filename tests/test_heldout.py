"""The held-out test paraphrases resolve to one conversation each and share no source with the tuning or LDS sets."""

from bif.evaluation.heldout import TEST_PARAPHRASES
from bif.evaluation.queries import PARAPHRASES, demo_conversations, source_index
from bif.lm.corpus import DEMO_QUERIES


def test_heldout_queries_resolve_and_are_disjoint_from_the_tuning_and_lds_sets():
    convs = demo_conversations()
    test_sources = [source_index(p, convs) for p in TEST_PARAPHRASES]  # ValueError unless exactly one match
    assert len(TEST_PARAPHRASES) >= 24
    assert len(set(test_sources)) == len(test_sources), "two test queries share a source"
    tuning = {q["source"] for q in DEMO_QUERIES}
    assert all(convs[q["source"]][0] == q["source_question"] for q in DEMO_QUERIES)  # tuning indices still valid
    lds = {source_index(p, convs) for p in PARAPHRASES}
    assert not set(test_sources) & tuning and not set(test_sources) & lds
    assert all(p.question.lower() != p.source_question.lower() for p in TEST_PARAPHRASES)
