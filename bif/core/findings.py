"""What a ranking found, in words: the headline of a view, the tokens that carry a sample's influence, and whether a
run is large enough for findings at all (docs/method.md §4).

These read `Scores.significant` as it comes from `bif.core.influence` (the finding rule lives there, not here) and
only put it into sentences. Sign convention as everywhere: `support` = +Corr, positive = makes the completion more
likely; `bif` = −Cov, additive over tokens (negative = supports).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bif.core.config import SamplerConfig
from bif.core.estimators import Scores
from bif.core.influence import MIN_CHAINS  # the finding rule's own minimum (two halves of ≥ 2 chains)

MIN_DRAWS = 400  # chains × draws of demo-cpu, the smallest preset whose findings were measured to replicate
CARRIER_SHARE = 0.5  # carriers: the fewest tokens that hold this share of a sample's same-sign influence
MAX_CARRIERS = 5


def too_small(config: SamplerConfig) -> str | None:
    """Why a run is too small for findings (a sentence), or None when it is large enough.

    Below MIN_CHAINS chains or MIN_DRAWS kept draws in all (the smoke preset: 2 × 10) the error bars are so wide
    that whatever is coloured is mostly Monte Carlo noise; such runs are for checking that things work.
    """
    total = config.chains * config.draws
    if config.chains >= MIN_CHAINS and total >= MIN_DRAWS:
        return None
    return (f"This run is too small for findings ({config.chains} chains × {config.draws} draws; findings need at "
            f"least {MIN_CHAINS} chains and {MIN_DRAWS} draws in all, as in the demo-cpu preset). It checks that "
            "everything works; its colours are mostly noise.")


@dataclass(frozen=True)
class Headline:
    """The one-sentence conclusion of a ranking.

    kind: 'one' (a single training text stands out), 'several', 'none' (nothing stands out) or 'too small'.
    standouts: row indices (into the scored set) of the samples that stand out, strongest |support| first.
    """

    kind: str
    sentence: str
    standouts: list[int] = field(default_factory=list)


def _quote(text: str, n: int = 60) -> str:
    one = " ".join(str(text).split())
    return "'" + (one if len(one) <= n else one[:n].rsplit(" ", 1)[0] + "…") + "'"


def headline(scores: Scores, train_ids: list[int], texts: list[str], what: str = "this completion",
             config: SamplerConfig | None = None) -> Headline:
    """The sentence a presenter would say about a ranking (scores of shape (n,), from `influence.samples`).

    Plain text (escape it before rendering as HTML or Markdown: it quotes training data).
    """
    s = np.asarray(scores.support, dtype=float)
    sig = np.asarray(scores.significant, dtype=bool) & np.isfinite(s)
    order = [int(i) for i in np.argsort(-np.abs(np.nan_to_num(s)), kind="stable") if sig[i]]
    reason = too_small(config) if config is not None else None
    if reason:
        return Headline("too small", f"No conclusion from this run: it is too small for findings. Run a larger "
                                     f"preset (demo-cpu or careful-cpu) to explain {what}.", order)
    if not order:
        return Headline("none", f"Nothing stands out of the noise yet for {what}: no training text's influence is "
                                "larger than the sampling noise. Sample more (a longer preset) before reading the "
                                "ranking.", order)
    top = order[0]
    direction = "explains" if s[top] > 0 else "works against"
    name = f"#{train_ids[top]} {_quote(texts[top])}"
    if len(order) == 1:
        return Headline("one", f"One training text clearly {direction} {what}: {name} (support {s[top]:+.2f}).",
                        order)
    n_sup = int(sum(s[i] > 0 for i in order))
    parts = [f"{n_sup} support it" if n_sup else "", f"{len(order) - n_sup} oppose it" if len(order) > n_sup else ""]
    return Headline("several", f"{len(order)} training texts stand out for {what} ({', '.join(p for p in parts if p)}"
                               f"); the strongest {direction} it: {name} (support {s[top]:+.2f}).", order)


def carriers(tokens: Scores, share: float = CARRIER_SHARE, limit: int = MAX_CARRIERS) -> list[int]:
    """The positions of one training sample that carry its influence (tokens: `influence.train_tokens`, (P,)).

    `bif` is additive over a sample's tokens (their sum is the sample's bif), so the carriers are the fewest
    positions, largest first, whose bif of the sample's overall sign adds up to `share` of the sample's bif
    (at most `limit`). Empty when the sample's bif is zero or not finite.
    """
    b = np.asarray(tokens.bif, dtype=float)
    ok = np.isfinite(b)
    total = float(b[ok].sum()) if ok.any() else 0.0
    if not total or not np.isfinite(total):
        return []
    same = np.where(ok & (np.sign(b) == np.sign(total)), np.abs(b), 0.0)
    order = np.argsort(-same, kind="stable")
    out, held = [], 0.0
    for p in order[:limit]:
        if same[p] <= 0:
            break
        out.append(int(p))
        held += same[p]
        if held >= share * abs(total):
            break
    return sorted(out)


@dataclass(frozen=True)
class Contrast:
    """Two rankings over the same training samples (two queries, or two runs with the same ranked set).

    rows: the samples worth showing side by side (those that stand out in either, else the k most supporting and
    k most opposing of each),
    strongest first. sentence: what a presenter would say ('this answer came from here, that one from there')."""

    sentence: str
    rows: list[int]


def contrast(a: Scores, b: Scores, train_ids: list[int], texts: list[str], names=("the first", "the second"),
             k: int = 3) -> Contrast:
    """Compare the rankings `a` and `b` (shape (n,), same samples in the same order). Plain text (escape it)."""
    sa, sb = (np.nan_to_num(np.asarray(s.support, dtype=float)) for s in (a, b))
    siga, sigb = (np.asarray(s.significant, dtype=bool) for s in (a, b))
    rows = [int(i) for i in np.flatnonzero(siga | sigb)]
    if not rows:
        rows = sorted({int(i) for s in (a, b) for i in list(s.top(k)) + list(s.top(k, "oppose"))})
    rows.sort(key=lambda i: -max(abs(sa[i]), abs(sb[i])))

    def source(s, sig):
        best = [i for i in np.argsort(-s, kind="stable") if sig[i] and s[i] > 0]
        return int(best[0]) if best else None

    ia, ib = source(sa, siga), source(sb, sigb)
    label = lambda i: f"#{train_ids[i]} {_quote(texts[i], 40)}"  # noqa: E731
    if ia is None and ib is None:
        sentence = ("Neither completion has a supporting training text that stands out of the noise: the two lists "
                    "below are patterns, not findings.")
    elif ia is not None and ib is not None and ia == ib:
        sentence = f"Both completions draw on the same training text: {label(ia)}."
    elif ia is not None and ib is not None:
        sentence = (f"{names[0].capitalize()} completion came from {label(ia)}; {names[1]} from {label(ib)} — "
                    "different training texts.")
    else:
        found, other = (ia, names[1]) if ia is not None else (ib, names[0])
        which = names[0] if ia is not None else names[1]
        sentence = (f"{which.capitalize()} completion came from {label(found)}; for {other} completion no "
                    "training text stands out of the noise.")
    return Contrast(sentence, rows)
