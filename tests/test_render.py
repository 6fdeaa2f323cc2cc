"""Token HTML and figures: escaping, the position -> token offset, the sign and colour convention."""

import html
import json
import re

import numpy as np

from bif import export, render
from views.ui import html as ui
from bif.core.estimators import Scores


def scores(support, se=None, sig=None) -> Scores:
    s = np.asarray(support, dtype=float)
    se = np.full(s.shape, 0.01) if se is None else np.asarray(se, dtype=float)
    sig = np.zeros(s.shape, dtype=bool) if sig is None else np.asarray(sig)
    return Scores(bif=-s, bif_se=se, corr=s, corr_se=se, p=np.full(s.shape, 0.5), q=np.full(s.shape, 0.5),
                  significant=sig, n_draws=20, n_batches=4)


def spans(body: str) -> list[tuple[str, str, str]]:
    """(class, style, text) of every token span."""
    return [(c, st, html.unescape(t)) for c, st, t in
            re.findall(r'<span class="([^"]*)" style="([^"]*)" title="[^"]*">(.*?)</span>', body, re.S)]


def test_score_of_position_p_is_drawn_on_token_p_plus_1():
    tokens = ["A", "B", "C", "D"]
    body = ui.tokens_html(tokens, scores([np.nan, 0.5, -0.5], sig=[False, True, True]), vmax=0.5)
    (c0, s0, _), (c1, s1, _), (c2, s2, _), (c3, s3, _) = spans(body)
    assert "ctx" in c0 and "ctx" in c1  # nothing predicts token 0; position 0 is masked (NaN)
    r, g, b = render.SUPPORT_RGB
    assert f"rgba({r},{g},{b},0.850)" in s2  # position 1 (+0.5, supports) on token 2, full blue
    r, g, b = render.OPPOSE_RGB
    assert f"rgba({r},{g},{b},0.850)" in s3  # position 2 (−0.5, opposes) on token 3, full orange


def test_scores_within_the_noise_are_drawn_faint():
    body = ui.tokens_html(["A", "B", "C"], scores([0.5, 0.5], sig=[True, False]), vmax=0.5)
    _, (_, strong, _), (_, faint, _) = spans(body)
    r, g, b = render.SUPPORT_RGB
    assert f"rgba({r},{g},{b},0.850)" in strong
    assert f"rgba({r},{g},{b},{0.85 * ui.NOISE_FADE:.3f})" in faint  # same score, but not a finding


def test_support_is_plus_corr_and_minus_bif():
    s = scores([0.3, -0.2])
    assert np.all(np.sign(s.support) == -np.sign(s.bif))
    rows = export.sample_rows(s, [10, 11], ["a", "b"])
    assert [r["train_id"] for r in rows] == [10, 11] and rows[0]["support"] == 0.3 and rows[0]["bif"] == -0.3


def test_hover_text_has_score_se_and_noise_verdict():
    body = ui.tokens_html(["x", "y", "z"], scores([0.2, -0.1], se=[0.05, 0.2], sig=[True, False]))
    titles = [html.unescape(t) for t in re.findall(r'title="([^"]*)"', body)]
    assert "support +0.200 ± 0.050 · stands out of the noise" in titles[1]
    assert "support -0.100 ± 0.200 · within the noise" in titles[2]
    assert 'class="bif-tok sig"' in body  # significant tokens are underlined


def test_untrusted_text_is_escaped_everywhere():
    evil = ['<script>window.__pwned=1</script>', '"><img src=x onerror=alert(1)>', "&amp;"]
    body = ui.tokens_html(evil, scores([0.1, 0.2]), selected=1)
    assert "<script" not in body and "<img" not in body
    assert [t for _, _, t in spans(body)] == evil
    fig = render.pair_figure(evil, evil, scores(np.full((2, 2), 0.1)), title="<b onmouseover=x>")
    spec = json.dumps(fig.to_plotly_json(), default=str)
    assert "<script" not in spec and "<img" not in spec and "<b " not in spec
    card = ui.sample_card_html(1, 7, 0.1, 0.01, True, body)
    assert "<script" not in card
    assert ui.md_escape("**bold** :red[x] $x$") == r"\*\*bold\*\* \:red\[x\] \$x\$"


def test_pair_figure_cells_match_scores():
    train, query = ["t0", "t1", "t2", "t3"], ["q0", "q1", "q2"]
    z = np.array([[np.nan, np.nan], [0.1, -0.2], [0.3, np.nan]])  # (P=3, Pq=2); row 0 masked
    fig = render.pair_figure(train, query, scores(z))
    h = fig.data[0]
    assert list(fig.layout.yaxis.ticktext) == ["t2", "t3"] and list(fig.layout.xaxis.ticktext) == ["q1", "q2"]
    assert h.z[0][1] == -0.2 and h.z[1][0] == 0.3 and h.zmid == 0


def test_whitespace_tokens_are_visible():
    assert render.label_token(" ") == "␣" and render.label_token("\n") == "↵" and render.label_token("") == "·"
    assert render.show_token("a\nb") == "a↵\nb"


def test_other_figures():
    fig = render.histogram_figure(np.array([0.1, -0.2, np.nan]), marked=0.1, title="t")
    assert list(fig.data[0].x) == [0.1, -0.2]
    loss = np.arange(12, dtype=float).reshape(2, 6)
    fig = render.loss_figure(render.trace_curves(loss), burn_in=2, total_steps=6, init_loss=0.0)
    assert [t.name for t in fig.data] == ["chain 1", "chain 2"] and list(fig.data[1].y) == list(loss[1])
    curves = render.history_curves({"0": [[1, 5.0], [6, 4.0]]})
    assert curves == {0: ([1, 6], [5.0, 4.0])}
    assert "blue" in ui.legend_html(0.2) and "orange" in ui.legend_html(0.2)
    assert export.token_rows(["a", "b", "c"], scores([np.nan, 0.4]))[0]["token"] == "c"
