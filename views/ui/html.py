"""Escaped HTML for the pages: tokens coloured by influence, sample cards, the legend, the CSS (for st.html).

Moved here from bif/render.py (which keeps the Plotly figures and token labels the CLI and exports need): HTML and
CSS are the app's look, not the library's. Every piece of training or query text goes through `esc` (untrusted).
"""

from __future__ import annotations

import math
import re

import numpy as np

from bif.core.estimators import Scores
from bif.render import OPPOSE_RGB, SUPPORT_RGB, esc, label_token, scale_max, show_token, visible

TOKEN_CSS = (".bif-toks{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.95rem;line-height:2.0;"
             "white-space:pre-wrap;word-break:break-word}"
             ".bif-tok{padding:2px 1px;border-radius:3px;border-bottom:2px solid transparent}"
             ".bif-tok.sig{border-bottom:2px solid #222}"
             ".bif-tok.ctx{color:#888}"
             ".bif-tok.sel{outline:2px solid #d62728;outline-offset:1px}"
             ".bif-tok.car{outline:2px solid #111;outline-offset:0;font-weight:700}"
             ".bif-card{border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:4px 0}"
             ".bif-card.noise{background:#f6f6f6;border-color:#e4e4e4;color:#777;filter:grayscale(1);opacity:.75}"
             ".bif-card.noise .bif-tok.car{outline-color:#999}"
             ".bif-more{color:#888;font-style:italic}.bif-carry{font-size:0.8rem;color:#555;margin-top:2px}"
             ".bif-head{font-size:0.85rem;color:#444;margin-bottom:2px}"
             ".bif-badge{font-size:0.75rem;padding:1px 6px;border-radius:8px;margin-left:6px}"
             ".bif-badge.sig{background:#222;color:#fff}.bif-badge.noise{background:#eee;color:#555}"
             ".bif-legend{font-size:0.85rem;color:#333}"
             ".bif-sw{display:inline-block;width:1.6em;height:0.9em;vertical-align:middle;border-radius:2px}")


def md_escape(text: str) -> str:
    """Escape Markdown (and Streamlit's :directives: and $math$) so text shows literally in st.markdown/labels;
    bidi controls are shown as ⟨U+XXXX⟩ (bif.render.visible)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>$:&])", r"\\\1", visible(text)).replace("\n", " ")


NOISE_FADE = 0.35  # a score within the noise is drawn at this fraction of its colour's strength


def color(value: float, vmax: float, within_noise: bool = False) -> str:
    """Background colour for a support value on a diverging scale centred at zero; faded when within the noise,
    so that only scores that stand out are drawn in full colour."""
    if value is None or not math.isfinite(value) or vmax <= 0:
        return "transparent"
    a = min(abs(value) / vmax, 1.0) * 0.85 * (NOISE_FADE if within_noise else 1.0)
    r, g, b = SUPPORT_RGB if value > 0 else OPPOSE_RGB
    return f"rgba({r},{g},{b},{a:.3f})"


def describe(value: float, se: float, significant: bool) -> str:
    """'support +0.231 ± 0.052 · stands out of the noise' (plain text)."""
    if value is None or not math.isfinite(value):
        return "no score (context)"
    noise = "stands out of the noise" if significant else "within the noise"
    return f"support {value:+.3f} ± {se:.3f} · {noise}"


def tokens_html(tokens: list[str], scores: Scores | None, vmax: float | None = None, offset: int = 1,
                selected=None, context_note: str = "context (not scored)", clickable: bool = False,
                carriers=(), truncated: bool = False) -> str:
    """Tokens as coloured <span>s with hover text. Token i shows scores[i - offset] (loss positions: offset=1).

    Tokens without a finite score are grey context. `selected`: a loss position or (first, last) span, marked
    with a red outline. `carriers`: loss positions drawn boxed and bold (the tokens carrying a sample's
    influence). clickable: scored tokens get data-p="position" (for views/ui/pick.py). truncated: a note that
    the text goes on beyond the tokens scored.
    """
    n = len(tokens)
    support = np.full(n, np.nan)
    se = np.full(n, np.nan)
    sig = np.zeros(n, dtype=bool)
    if scores is not None:
        s = np.asarray(scores.support, dtype=float)
        for i in range(offset, n):
            p = i - offset
            if 0 <= p < s.shape[0]:
                support[i], se[i], sig[i] = s[p], scores.support_se[p], bool(scores.significant[p])
    vmax = vmax if vmax is not None else scale_max(support)
    lo, hi = (selected, selected) if isinstance(selected, (int, np.integer)) else (selected or (None, None))
    carry = set(int(c) for c in carriers)
    parts = []
    for i, tok in enumerate(tokens):
        v = support[i]
        scored = math.isfinite(v)
        p = i - offset
        cls = "bif-tok" + (" sig" if sig[i] else "") + ("" if scored else " ctx") + (
            " sel" if lo is not None and lo <= p <= hi else "") + (" car" if p in carry else "")
        title = f"{label_token(tok)!r} · " + (describe(v, se[i], sig[i]) if scored else context_note)
        if p in carry:
            title += " · carries this sample's influence"
        attr = f' data-p="{p}"' if clickable and scored else ""
        parts.append(f'<span class="{cls}"{attr} style="background:{color(v, vmax, not sig[i])}" '
                     f'title="{esc(title)}">{esc(show_token(tok))}</span>')
    more = '<span class="bif-more"> … (cut here: the rest of the text was not scored)</span>' if truncated else ""
    return f'<div class="bif-toks">{"".join(parts)}{more}</div>'


def legend_html(vmax: float, what: str = "the completion") -> str:
    """The colour legend in plain words (the exact test is in the token hover text and the page's details)."""
    return (f'<div class="bif-legend"><span class="bif-sw" style="background:{color(1, 1)}"></span> blue: makes '
            f'{esc(what)} <b>more</b> likely (supports) &nbsp; <span class="bif-sw" style="background:'
            f'{color(-1, 1)}"></span> orange: makes it <b>less</b> likely (opposes) &nbsp; white/grey: no measurable '
            f"effect or not scored. Strong, underlined colour: larger than the sampling noise; "
            f'<span class="bif-sw" style="background:{color(1, 1, True)}"></span> faint colour: within the noise '
            f"(a pattern, not an established effect). Full colour = ±{vmax:.3f}, the largest score in this view. "
            "Hover a token for its score ± standard error.</div>")


def sample_card_html(rank: int, train_id: int, value: float, se: float, significant: bool, body: str,
                     carried_by: list[str] | None = None) -> str:
    """One training sample in a top-k list: rank, id, score ± SE, badge, its coloured tokens, and the tokens that
    carry its influence. A sample within the noise is drawn muted (grey) so that findings stand out."""
    badge = ('<span class="bif-badge sig" title="larger than the sampling noise, and the same sign in both '
             'independently seeded halves of the chains">stands out</span>' if significant
             else '<span class="bif-badge noise" title="not distinguishable from Monte Carlo noise">noise</span>')
    carry = ""
    if carried_by:
        carry = ('<div class="bif-carry">carried by: '
                 + ", ".join(f"<b>{esc(repr(label_token(t)))}</b>" for t in carried_by) + "</div>")
    return (f'<div class="bif-card{"" if significant else " noise"}"><div class="bif-head"><b>{rank}.</b> training '
            f"sample #{train_id} · support <b>{value:+.3f}</b> ± {se:.3f}{badge}</div>{body}{carry}</div>")


def page_html(*parts: str) -> str:
    """Wrap fragments with the token CSS (for st.html)."""
    return f"<style>{TOKEN_CSS}</style>" + "".join(parts)
