"""The known-answer sets follow one convention (sources mapped by text) and are kept apart: tuning, test, LDS."""

from bif.evaluation.heldout import TEST_PARAPHRASES
from bif.lm.queries import (LDS_PARAPHRASES, TUNING_PARAPHRASES, demo_conversations, paraphrase_queries,
                                    source_index)
from bif.lm.corpus import format_prompt


def test_heldout_queries_resolve_and_are_disjoint_from_the_tuning_and_lds_sets():
    convs = demo_conversations()
    test_sources = [source_index(p, convs) for p in TEST_PARAPHRASES]  # ValueError unless exactly one match
    assert len(TEST_PARAPHRASES) >= 24
    assert len(set(test_sources)) == len(test_sources), "two test queries share a source"
    tuning = {source_index(p, convs) for p in TUNING_PARAPHRASES}
    lds = {source_index(p, convs) for p in LDS_PARAPHRASES}
    assert len(tuning) == len(TUNING_PARAPHRASES) == 12 and len(lds) == len(LDS_PARAPHRASES)
    assert not set(test_sources) & tuning and not set(test_sources) & lds and not tuning & lds
    for p in TEST_PARAPHRASES + TUNING_PARAPHRASES:
        assert p.question.lower() != p.source_question.lower()


def test_a_query_is_the_paraphrase_answered_with_its_sources_answer():
    convs = demo_conversations()
    queries, sources = paraphrase_queries(TUNING_PARAPHRASES)
    assert sources[0] == 110 and convs[110][0] == "What is your favorite number"  # the README's demo query
    for p, q, i in zip(TUNING_PARAPHRASES, queries, sources):
        assert q.prompt == format_prompt(p.question) and q.completion == " " + convs[i][1]
