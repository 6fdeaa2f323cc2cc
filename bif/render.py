"""What the app draws: tokens coloured by influence (escaped HTML) and Plotly figures. No streamlit import.

Quantity on screen: "support" = +Corr(ℓ_i, φ) (estimators.py): positive = the training data makes the completion
more likely (blue), negative = less likely (orange). A loss position p is the loss of predicting token p+1, so its
score is drawn on token p+1; the first token of a text has no score. All text that comes from training data or
queries goes through `html.escape` here (training data is untrusted).
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import plotly.graph_objects as go

from bif.core.estimators import Scores

SUPPORT_RGB = (33, 102, 172)  # blue
OPPOSE_RGB = (179, 88, 6)  # orange (blue/orange reads for most colour-blind viewers)
SUPPORT_HEX, OPPOSE_HEX = "#2166ac", "#b35806"
COLORSCALE = [[0.0, OPPOSE_HEX], [0.5, "#f7f7f7"], [1.0, SUPPORT_HEX]]
QUANTITY = "support = posterior correlation Corr(loss of the training data, loss of the completion)"
CHAIN_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]

TOKEN_CSS = (".bif-toks{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:0.95rem;line-height:2.0;"
             "white-space:pre-wrap;word-break:break-word}"
             ".bif-tok{padding:2px 1px;border-radius:3px;border-bottom:2px solid transparent}"
             ".bif-tok.sig{border-bottom:2px solid #222}"
             ".bif-tok.ctx{color:#888}"
             ".bif-tok.sel{outline:2px solid #d62728;outline-offset:1px}"
             ".bif-card{border:1px solid #ddd;border-radius:6px;padding:6px 10px;margin:4px 0}"
             ".bif-head{font-size:0.85rem;color:#444;margin-bottom:2px}"
             ".bif-badge{font-size:0.75rem;padding:1px 6px;border-radius:8px;margin-left:6px}"
             ".bif-badge.sig{background:#222;color:#fff}.bif-badge.noise{background:#eee;color:#555}"
             ".bif-legend{font-size:0.85rem;color:#333}"
             ".bif-sw{display:inline-block;width:1.6em;height:0.9em;vertical-align:middle;border-radius:2px}")


def esc(text: str) -> str:
    """HTML-escape (quotes too): use for every piece of training or query text put into HTML."""
    return html.escape(str(text), quote=True)


def md_escape(text: str) -> str:
    """Escape Markdown (and Streamlit's :directives: and $math$) so text shows literally in st.markdown/labels."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~<>$:&])", r"\\\1", str(text)).replace("\n", " ")


def show_token(tok: str) -> str:
    """A token as displayed: newlines and tabs made visible (still unescaped)."""
    return tok.replace("\r", "").replace("\n", "↵\n").replace("\t", "→\t") if tok else "∅"


def label_token(tok: str) -> str:
    """A one-line label for a token (axis ticks, buttons): whitespace shown as symbols, unescaped."""
    s = tok.replace("\n", "↵").replace("\t", "→")
    return s if s.strip() else s.replace(" ", "␣") or "∅"


NOISE_FADE = 0.35  # a score within the noise is drawn at this fraction of its colour's strength


def color(value: float, vmax: float, within_noise: bool = False) -> str:
    """Background colour for a support value on a diverging scale centred at zero; faded when within the noise,
    so that only scores that stand out are drawn in full colour."""
    if value is None or not math.isfinite(value) or vmax <= 0:
        return "transparent"
    a = min(abs(value) / vmax, 1.0) * 0.85 * (NOISE_FADE if within_noise else 1.0)
    r, g, b = SUPPORT_RGB if value > 0 else OPPOSE_RGB
    return f"rgba({r},{g},{b},{a:.3f})"


def scale_max(*arrays: np.ndarray) -> float:
    """The largest |support| among finite values (the colour scale's end), at least 1e-6."""
    vals = [np.abs(a[np.isfinite(a)]).max() for a in map(np.asarray, arrays) if np.isfinite(a).any()]
    return max(vals + [1e-6])


def describe(value: float, se: float, significant: bool) -> str:
    """'support +0.231 ± 0.052 · stands out of the noise' (plain text)."""
    if value is None or not math.isfinite(value):
        return "no score (context)"
    noise = "stands out of the noise" if significant else "within the noise"
    return f"support {value:+.3f} ± {se:.3f} · {noise}"


def tokens_html(tokens: list[str], scores: Scores | None, vmax: float | None = None, offset: int = 1,
                selected: int | None = None, context_note: str = "context (not scored)") -> str:
    """Tokens as coloured <span>s with hover text. Token i shows scores[i - offset] (loss positions: offset=1).

    Tokens without a finite score are grey context. `selected` is a position (marked with a red outline).
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
    parts = []
    for i, tok in enumerate(tokens):
        v = support[i]
        scored = math.isfinite(v)
        cls = "bif-tok" + (" sig" if sig[i] else "") + ("" if scored else " ctx") + (
            " sel" if selected is not None and i - offset == selected else "")
        title = f"{label_token(tok)!r} · " + (describe(v, se[i], sig[i]) if scored else context_note)
        parts.append(f'<span class="{cls}" style="background:{color(v, vmax, not sig[i])}" title="{esc(title)}">'
                     f"{esc(show_token(tok))}</span>")
    return f'<div class="bif-toks">{"".join(parts)}</div>'


def legend_html(vmax: float, what: str = "the completion") -> str:
    """The colour legend in words."""
    return (f'<div class="bif-legend"><span class="bif-sw" style="background:{color(1, 1)}"></span> blue: makes '
            f'{esc(what)} <b>more</b> likely (supports) &nbsp; <span class="bif-sw" style="background:'
            f'{color(-1, 1)}"></span> orange: makes it <b>less</b> likely (opposes) &nbsp; white/grey: no measurable '
            f"effect or not scored. Strong, underlined colour: the score stands out of the noise "
            "(Benjamini–Hochberg, 5 % false discoveries, replicated in both halves of the chains); "
            f'<span class="bif-sw" style="background:{color(1, 1, True)}"></span> faint colour: within the noise, '
            f"a pattern, not an established effect. Full colour = ±{vmax:.3f}, the largest score in this view (the "
            "scale is relative). Hover a token for its score ± standard error. "
            f"Quantity: {esc(QUANTITY)}.</div>")


def sample_card_html(rank: int, train_id: int, value: float, se: float, significant: bool, body: str) -> str:
    """One training sample in a top-k list: rank, id, score ± SE, noise badge, then its coloured tokens."""
    badge = ('<span class="bif-badge sig" title="q &lt; 0.05 after Benjamini–Hochberg, and the same sign in both '
             'independently seeded halves of the chains">stands out</span>' if significant
             else '<span class="bif-badge noise" title="not distinguishable from Monte Carlo noise">noise</span>')
    return (f'<div class="bif-card"><div class="bif-head"><b>{rank}.</b> training sample #{train_id} · '
            f"support <b>{value:+.3f}</b> ± {se:.3f}{badge}</div>{body}</div>")


def page_html(*parts: str) -> str:
    """Wrap fragments with the token CSS (for st.html)."""
    return f"<style>{TOKEN_CSS}</style>" + "".join(parts)


def _significance(sig) -> list[str]:
    return ["stands out of the noise" if s else "within the noise" for s in np.ravel(sig)]


def pair_figure(train_tokens: list[str], query_tokens: list[str], scores: Scores, title: str = "") -> go.Figure:
    """Heatmap of training tokens (rows) × completion tokens (columns); scores (P, Pq) over loss positions."""
    s = np.asarray(scores.support, dtype=float)
    rows = [p for p in range(s.shape[0]) if np.isfinite(s[p]).any() and p + 1 < len(train_tokens)]
    cols = [p for p in range(s.shape[1]) if np.isfinite(s[:, p]).any() and p + 1 < len(query_tokens)]
    z = s[np.ix_(rows, cols)] if rows and cols else np.zeros((0, 0))
    se = np.asarray(scores.support_se, dtype=float)[np.ix_(rows, cols)] if rows and cols else z
    sig = np.asarray(scores.significant)[np.ix_(rows, cols)] if rows and cols else z.astype(bool)
    ylab = [esc(label_token(train_tokens[p + 1])) for p in rows]
    xlab = [esc(label_token(query_tokens[p + 1])) for p in cols]
    noise = np.array(_significance(sig), dtype=object).reshape(z.shape)
    custom = np.dstack([np.array([[y] * len(cols) for y in ylab], dtype=object).reshape(z.shape),
                        np.array([xlab] * len(rows), dtype=object).reshape(z.shape), se, noise]) if z.size else None
    vmax = scale_max(z)
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=list(range(len(cols))), y=list(range(len(rows))), zmid=0, zmin=-vmax, zmax=vmax,
        colorscale=COLORSCALE, customdata=custom.tolist() if custom is not None else None,
        colorbar={"title": {"text": "support"}},
        hovertemplate="training token %{customdata[0]} → completion token %{customdata[1]}<br>support "
                      "%{z:+.3f} ± %{customdata[2]:.3f}<br>%{customdata[3]}<extra></extra>"))
    fig.update_layout(
        title={"text": esc(title), "yref": "container", "y": 0.98, "yanchor": "top"},
        height=min(1400, 170 + 18 * max(len(rows), 4)), margin={"l": 10, "r": 10, "t": 120, "b": 10},
        xaxis={"title": "completion token (predicted)", "tickvals": list(range(len(cols))), "ticktext": xlab,
               "side": "top", "tickangle": 0 if len(cols) < 12 else -45},
        yaxis={"title": "training token (predicted)", "tickvals": list(range(len(rows))), "ticktext": ylab,
               "autorange": "reversed"}, plot_bgcolor="#fff")
    return fig


def histogram_figure(support: np.ndarray, marked: float | None = None, title: str = "") -> go.Figure:
    """Histogram of all samples' support scores; `marked` draws a line at one value (the chosen sample)."""
    v = np.asarray(support, dtype=float)
    v = v[np.isfinite(v)]
    fig = go.Figure(go.Histogram(x=v.tolist(), nbinsx=min(60, max(10, len(v) // 4)), marker_color="#7f7f7f",
                                 hovertemplate="support %{x}<br>%{y} samples<extra></extra>"))
    fig.add_vline(x=0, line_color="#333", line_width=1)
    if marked is not None and math.isfinite(marked):
        fig.add_vline(x=marked, line_color="#d62728", line_dash="dash", annotation_text="selected")
    fig.update_layout(title={"text": esc(title)}, height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="support (−1 … +1)", yaxis_title="training samples", bargap=0.05)
    return fig


def loss_figure(curves: dict[int, tuple[list, list]], burn_in: int | None = None, total_steps: int | None = None,
                init_loss: float | None = None, title: str = "Sampling loss per chain") -> go.Figure:
    """Sampling-loss traces: curves[chain] = (steps, losses). Burn-in is shaded, L(w*) is a dotted line."""
    fig = go.Figure()
    for c, (x, y) in sorted(curves.items()):
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines", name=f"chain {c + 1}",
                                 line={"color": CHAIN_COLORS[c % len(CHAIN_COLORS)], "width": 1.5},
                                 hovertemplate=f"chain {c + 1}<br>step %{{x}}<br>loss %{{y:.4f}}<extra></extra>"))
    if burn_in:
        fig.add_vrect(x0=0, x1=burn_in, fillcolor="#999", opacity=0.15, line_width=0,
                      annotation_text="burn-in (discarded)", annotation_position="top left")
    if init_loss is not None and math.isfinite(init_loss):
        fig.add_hline(y=init_loss, line_dash="dot", line_color="#333", annotation_text="loss at the trained weights")
    fig.update_layout(title={"text": esc(title)}, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"title": "SGLD step", "range": [0, total_steps] if total_steps else None},
                      yaxis_title="minibatch loss", legend={"orientation": "h", "y": -0.25})
    return fig


def trace_curves(sampling_loss: np.ndarray, max_points: int = 400) -> dict[int, tuple[list, list]]:
    """(C, S) array -> curves for loss_figure, downsampled to at most max_points per chain."""
    C, S = sampling_loss.shape
    stride = max(1, math.ceil(S / max_points))
    x = list(range(1, S + 1, stride))
    return {c: (x, sampling_loss[c, ::stride].tolist()) for c in range(C)}


def history_curves(history: dict) -> dict[int, tuple[list, list]]:
    """progress.json's {chain: [[step, loss], ...]} -> curves for loss_figure."""
    return {int(c): ([p[0] for p in pts], [p[1] for p in pts]) for c, pts in history.items()}


def samples_rows(scores: Scores, train_ids: list[int], texts: list[str]) -> list[dict]:
    """One dict per scored training sample (for CSV/JSON export), most supporting first."""
    order = np.argsort(-np.nan_to_num(scores.support, nan=-np.inf), kind="stable")
    return [{"rank": r + 1, "train_id": int(train_ids[i]), "support": float(scores.support[i]),
             "support_se": float(scores.support_se[i]), "bif": float(scores.bif[i]), "bif_se": float(scores.bif_se[i]),
             "p": float(scores.p[i]), "q": float(scores.q[i]), "stands_out": bool(scores.significant[i]),
             "text": texts[i]} for r, i in enumerate(order)]


def tokens_rows(tokens: list[str], scores: Scores, offset: int = 1) -> list[dict]:
    """One dict per scored token (for export): index, token, support ± SE, BIF, stands out."""
    out = []
    for p in range(len(scores.support)):
        if np.isfinite(scores.support[p]) and p + offset < len(tokens):
            out.append({"token_index": p + offset, "token": tokens[p + offset], "support": float(scores.support[p]),
                        "support_se": float(scores.support_se[p]), "bif": float(scores.bif[p]),
                        "stands_out": bool(scores.significant[p])})
    return out
