"""The demo corpus: the English chatterbot conversations (installed from PyPI as chatterbot-corpus), formatted
with the demo model's one chat template, and the 12 paraphrase queries whose source conversation is known.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

from bif.errors import DataError

DEMO_MAX_CHARS = 300


class CorpusError(DataError):
    """The demo corpus cannot be read (the package or the language is missing)."""


def _clean(turn) -> str:
    return " ".join(str(turn).split())


def chatterbot_conversations(language: str = "english", dedupe: bool = False) -> list[tuple[str, str]]:
    """Reads the installed ``chatterbot-corpus`` as (prompt, answer) pairs, in a deterministic order.

    The prompt is a conversation's first turn and the answer its other turns joined by a space, with
    whitespace collapsed; files are read in sorted order and malformed or empty conversations skipped.

    Args:
        language: A folder of ``chatterbot_corpus/data/``.
        dedupe: Keep only the first copy of each identical (prompt, answer) pair.

    Raises:
        CorpusError: If the package or the language is missing.
    """
    return list(_read_conversations(language, dedupe))


@functools.lru_cache(maxsize=8)
def _read_conversations(language: str, dedupe: bool) -> tuple[tuple[str, str], ...]:
    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("chatterbot-corpus is not installed: pip install chatterbot-corpus==1.3.3")
    files = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "data", language, "*.yml")))
    if not files:
        raise CorpusError(f"chatterbot-corpus has no language {language!r}")
    pairs, seen = [], set()
    for path in files:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        for conv in data.get("conversations") or []:
            if not isinstance(conv, list) or len(conv) < 2:
                continue
            question, answer = _clean(conv[0]), " ".join(t for t in map(_clean, conv[1:]) if t)
            if not question or not answer or (dedupe and (question, answer) in seen):
                continue
            seen.add((question, answer))
            pairs.append((question, answer))
    return tuple(pairs)


def format_prompt(question: str) -> str:
    """Formats a question with the one chat template of the demo model."""
    return f"User: {question}\nBot:"


def format_example(question: str, answer: str) -> str:
    """Formats a (question, answer) pair as one training text: the prompt, a space, the answer."""
    return f"{format_prompt(question)} {answer}"


def demo_conversations() -> list[tuple[str, str]]:
    """The demo corpus: the English conversations, deduplicated, whose example fits ``DEMO_MAX_CHARS``."""
    pairs = chatterbot_conversations("english", dedupe=True)
    return [(q, a) for q, a in pairs if len(format_example(q, a)) <= DEMO_MAX_CHARS]


def demo_texts() -> list[str]:
    """All demo training texts, formatted with :func:`format_example`."""
    return [format_example(q, a) for q, a in demo_conversations()]


def demo_prompt_completion() -> list[tuple[str, str]]:
    """The demo texts split as (prompt, completion); ``prompt + completion`` is the training text."""
    return [(format_prompt(q), " " + a) for q, a in demo_conversations()]


_QUERIES = [  # (paraphrase, index of its source in demo_texts(), source question, that question's only answer)
    ("Which number do you like best?", 110, "What is your favorite number", "I find I'm quite fond of the number 42."),
    ("Who was the inventor of the light bulb?", 323, "who invented the lightbulb", "thomas edison."),
    ("What was the first satellite in space called?", 593,
     "What was the name of the first artificial Earth satellite?", "Sputnik 1"),
    ("I can't remember my password.", 587, "I forgot my password.",
     "Use the password reset option or contact your admin."),
    ("What does a robot need to stay alive?", 265, "what do robots need to survive?",
     "not much just a little electricity"),
    ("Can you tell me what chemistry is?", 534, "what is chemistry", "the science of mixing chemicals."),
    ("Who is the character Bilbo Baggins?", 363, "who is bilbo baggins",
     "Bilbo Baggins is a character in Tolkein's Lord of the Rings."),
    ("Which president was impeached first?", 463, "who was the first impeached president", "Andrew Johnson."),
    ("What's the US dollar?", 409, "what is a US dollar", "dollar: unit of currency in the United States."),
    ("Show me a list comprehension in Python.", 155, "can you write a list comprehension in Python?",
     "Here's a list comprehension: ``` squares = [x*x for x in range(10)] ```"),
    ("What is the game of basketball?", 561, "WHAT IS BASKETBALL", "A game with tall players."),
    ("Are you going to die someday?", 46, "When will you die", "I am effectively immortal and cannot be terminated."),
]
DEMO_QUERIES: list[dict] = [  # 12 topics; the prompt is new, the completion is the source's answer
    {"prompt": format_prompt(q), "completion": " " + a, "question": q, "source": i, "source_question": sq,
     "answer": a}
    for q, i, sq, a in _QUERIES
]
