"""Plotly figures of a run and token labels (used by the app, bif.export and the CLI). No streamlit import.

Quantity on screen: "support" = +Corr(ℓ_i, φ) (estimators.py): positive = the training data makes the completion
more likely (blue), negative = less likely (orange). A loss position p is the loss of predicting token p+1, so its
score is drawn on token p+1; the first token of a text has no score. All text that comes from training data or
queries goes through `esc` (training data is untrusted). The app's HTML (coloured tokens, cards, CSS) lives beside
the pages in views/ui/html.py.
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


# Unicode bidirectional controls: in untrusted text they could reorder what the page shows (an RTL override
# turns "evil" into "live"), so they are shown as visible code points, e.g. ⟨U+202E⟩.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with every bidirectional control character replaced by a visible ⟨U+XXXX⟩ (nothing else changes)."""
    return BIDI_CONTROLS.sub(lambda m: f"⟨U+{ord(m.group()):04X}⟩", str(text))


def esc(text: str) -> str:
    """HTML-escape (quotes too) and show bidi controls: use for every piece of training or query text in HTML."""
    return html.escape(visible(text), quote=True)


def show_token(tok: str) -> str:
    """A token as displayed: newlines and tabs made visible (still unescaped). A token that is only the first byte
    pieces of a character (shown whole on the token that completes it, see bif.lm.data) shows as nothing."""
    return visible(tok).replace("\r", "").replace("\n", "↵\n").replace("\t", "→\t")


def label_token(tok: str) -> str:
    """A one-line label for a token (axis ticks, buttons): whitespace shown as symbols, unescaped; '·' for the
    leading byte pieces of a character (bif.lm.data)."""
    s = visible(tok).replace("\n", "↵").replace("\t", "→")
    return s if s.strip() else s.replace(" ", "␣") or "·"


def scale_max(*arrays: np.ndarray) -> float:
    """The largest |support| among finite values (the colour scale's end), at least 1e-6."""
    vals = [np.abs(a[np.isfinite(a)]).max() for a in map(np.asarray, arrays) if np.isfinite(a).any()]
    return max(vals + [1e-6])


def _significance(sig) -> list[str]:
    return ["stands out of the noise" if s else "within the noise" for s in np.ravel(sig)]


def pair_figure(train_tokens: list[str], query_tokens: list[str], scores: Scores, title: str = "",
                vmax: float | None = None) -> go.Figure:
    """Heatmap of training tokens (rows) × completion tokens (columns); scores (P, Pq) over loss positions.

    vmax: the colour scale's end (default: this heatmap's largest |support|; pass one value to several heatmaps
    to make them comparable). Cells that stand out of the noise are marked with a dot."""
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
    vmax = vmax if vmax is not None else scale_max(z)
    fig = go.Figure(go.Heatmap(
        z=z.tolist(), x=list(range(len(cols))), y=list(range(len(rows))), zmid=0, zmin=-vmax, zmax=vmax,
        colorscale=COLORSCALE, customdata=custom.tolist() if custom is not None else None,
        colorbar={"title": {"text": "support"}},
        hovertemplate="training token %{customdata[0]} → completion token %{customdata[1]}<br>support "
                      "%{z:+.3f} ± %{customdata[2]:.3f}<br>%{customdata[3]}<extra></extra>"))
    if z.size and sig.any():
        r, c = np.nonzero(sig)
        fig.add_trace(go.Scatter(x=c.tolist(), y=r.tolist(), mode="markers", name="stands out of the noise",
                                 marker={"symbol": "circle", "size": 5, "color": "#111"}, hoverinfo="skip",
                                 showlegend=False))
    fig.update_layout(
        title={"text": esc(title), "yref": "container", "y": 0.98, "yanchor": "top"},
        height=min(1400, 170 + 18 * max(len(rows), 4)), margin={"l": 10, "r": 10, "t": 120, "b": 10},
        xaxis={"title": {"text": "completion token (predicted)", "standoff": 8}, "tickvals": list(range(len(cols))),
               "ticktext": xlab, "side": "top", "tickangle": 0 if len(cols) < 12 else -45, "automargin": True},
        yaxis={"title": {"text": "training token (predicted)", "standoff": 8}, "tickvals": list(range(len(rows))),
               "ticktext": ylab, "autorange": "reversed", "automargin": True}, plot_bgcolor="#fff")
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
