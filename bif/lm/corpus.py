"""The demo corpus: the English chatterbot conversations (installed from PyPI as chatterbot-corpus), formatted
with the demo model's one chat template. Its known-answer queries (tuning and test sets) are in
bif.lm.queries.
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
