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

MIN_CHAINS = 4  # the finding rule checks replication in two independently seeded halves of the chains
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
