"""Known-answer queries: paraphrases of demo conversations, answered by their source. One convention, three sets.

Each query asks a training conversation's question in other words; its completion is the source conversation's
answer, so the source is the one training sample that should support it most. Sources are found by their exact
question (and answer prefix, where a question occurs more than once) in `bif.lm.corpus.demo_conversations()`.

* `TUNING_PARAPHRASES` (12): the TUNING set. It chose `demo-cpu` (`bif bench --scan`) and gives the app its example
  queries; figures measured on it are tuning-set figures and are labelled so.
* `bif.evaluation.heldout.TEST_PARAPHRASES` (51): the TEST set, written fresh and never used to choose anything;
  `bif bench` reports presets on it.
* `LDS_PARAPHRASES` (16): the queries of the LDS benchmark (`python -m bif.evaluation`).
No two sets share a source (tests/test_heldout.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from bif.lm import corpus
from bif.lm.corpus import format_prompt
from bif.lm.query import Query


@dataclass(frozen=True)
class Paraphrase:
    """A question in other words and the (question, answer prefix) of the conversation it paraphrases."""

    question: str
    source_question: str
    answer_prefix: str = ""


TUNING_PARAPHRASES: tuple[Paraphrase, ...] = (  # the tuning set: it chose demo-cpu
    Paraphrase("Which number do you like best?", "What is your favorite number"),
    Paraphrase("Who was the inventor of the light bulb?", "who invented the lightbulb"),
    Paraphrase("What was the first satellite in space called?",
               "What was the name of the first artificial Earth satellite?"),
    Paraphrase("I can't remember my password.", "I forgot my password."),
    Paraphrase("What does a robot need to stay alive?", "what do robots need to survive?"),
    Paraphrase("Can you tell me what chemistry is?", "what is chemistry"),
    Paraphrase("Who is the character Bilbo Baggins?", "who is bilbo baggins"),
    Paraphrase("Which president was impeached first?", "who was the first impeached president"),
    Paraphrase("What's the US dollar?", "what is a US dollar"),
    Paraphrase("Show me a list comprehension in Python.", "can you write a list comprehension in Python?"),
    Paraphrase("What is the game of basketball?", "WHAT IS BASKETBALL"),
    Paraphrase("Are you going to die someday?", "When will you die"),
)

LDS_PARAPHRASES: tuple[Paraphrase, ...] = (  # the LDS benchmark's queries
    Paraphrase("Do you breathe?", "Can you breathe", "My server has an exhaust fan"),
    Paraphrase("What food would you eat if you could?", "If you could eat food, what would you eat?"),
    Paraphrase("My mouse stopped working.", "My mouse is not responding."),
    Paraphrase("Which country used to be called Abyssinia?", "Which African country was formerly known as Abyssinia?"),
    Paraphrase("Where was John Lennon killed?", "Outside which New York building was John Lennon killed?"),
    Paraphrase("In Peter Pan, what did the crocodile eat?", "What did the Crocodile swallow in Peter Pan?"),
    Paraphrase("What is the national food of Spain?", "What is the national dish of Spain?"),
    Paraphrase("What do you call the Jewish New Year?", "What is the Jewish New Year called?"),
    Paraphrase("What sea lies between Israel and Jordan?", "Which sea is located in Israel and Jordan?"),
    Paraphrase("What art movement was Salvador Dali part of?", "Which art movement is Salvador Dali associated with?"),
    Paraphrase("I like playing soccer", "I PLAY SOCCER"),
    Paraphrase("What is your main idea?", "What is your idea"),
    Paraphrase("Who was Jules Verne?", "jules verne", "He was a true master"),
    Paraphrase("Do you get paid?", "you get paid"),
    Paraphrase("What is the biggest city in the United States?", "What’s the most populous city in the United States?"),
    Paraphrase("Which vitamin do carrots contain?", "Carrots are a good source of which vitamin?"),
)


@functools.lru_cache(maxsize=1)
def _conversations() -> tuple[tuple[str, str], ...]:
    return tuple(corpus.demo_conversations())


def demo_conversations() -> list[tuple[str, str]]:
    """`bif.lm.corpus.demo_conversations()`, read once per process (parsing the YAML takes seconds)."""
    return list(_conversations())


def source_index(p: Paraphrase, conversations: list[tuple[str, str]]) -> int:
    """Index of the paraphrased conversation in `conversations`; ValueError if it is missing or ambiguous."""
    hits = [i for i, (q, a) in enumerate(conversations) if q == p.source_question and a.startswith(p.answer_prefix)]
    if len(hits) != 1:
        raise ValueError(f"The source of {p.question!r} ({p.source_question!r}) matches {len(hits)} demo "
                         "conversations; it must match exactly one.")
    return hits[0]


def paraphrase_queries(paraphrases: tuple[Paraphrase, ...]) -> tuple[list[Query], list[int]]:
    """(queries, source index of each in demo_conversations()): prompt = paraphrase, completion = source answer."""
    convs = demo_conversations()
    sources = [source_index(p, convs) for p in paraphrases]
    return [Query(format_prompt(p.question), " " + convs[i][1]) for p, i in zip(paraphrases, sources)], sources

