"""Influence page: the completion coloured by influence, the top supporting/opposing samples, token × token."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from bif import render
from bif.export import context as export_context
from bif.core import findings
from bif.core.config import MEASURED
from views import ask, common, exports, grow, provisional, rankall, trust
from views.ui import html as ui, pick

EXPLAIN = """
The **headline** says in one sentence what the run found for the completion (or the selected tokens).

The **completion** is drawn token by token. Each token's colour says how the training data influenced the model
towards it: **blue** = made it more likely (*supports*), **orange** = made it less likely (*opposes*), white = no
measurable effect. Grey tokens are the prompt (context; not explained). Hover a token for its number.
**Click a token** to rank the training texts for that token alone; **drag across several tokens** (or shift-click
a second one) to rank them for that span (their summed loss); click the selected token again for the whole
completion.

The number is the **support**, from −1 to +1: how strongly a training text's loss and the completion's loss move
together while the model's weights are jiggled a little around the trained ones. Every number has a **± error**
from the randomness of that jiggling; a score **stands out** when it is larger than that noise could plausibly
make it. Samples within the noise are drawn grey. In each listed sample the **boxed tokens** carry most of its
influence.

*Details.* Support is the posterior correlation Corr(ℓ_i, φ) (the paper's BIF is −Cov, the same sign flipped);
errors are batch-means standard errors; *stands out* = Benjamini–Hochberg q < 0.05 (5 % false discoveries) and the
same sign in both independently seeded halves of the chains; carriers are the fewest tokens holding half of a
sample's bif (−Cov is additive over tokens). docs/method.md §3–4.
"""


def select_token(key: str) -> None:
    t = st.session_state[key]
    common.select(None if t is None else (t, t))


def select_sample(train_id: int) -> None:
    common.set_view(sample=train_id)


def select_query() -> None:
    common.set_view(q=st.session_state["query_pick"], token=None, span=None, sample=None)


def describe_selection(tokens: list[str], sel) -> str:
    """'the whole completion', "token ' seven'" or "the span ' seven is'" (plain text)."""
    if sel is None:
        return "the whole completion"
    text = "".join(tokens[p + 1] for p in range(sel[0], sel[1] + 1))
    return f"token {render.label_token(text)!r}" if sel[0] == sel[1] else f"the span {render.label_token(text)!r}"


def valid_selection(sel, positions: list[int]):
    if sel is None or sel[0] not in positions or sel[1] not in positions:
        return None
    return sel


def headline_section(run, scores, what: str) -> None:
    """Banner for runs too small for findings, the one-sentence conclusion, its numbers one click away."""
    small = findings.too_small(run.config)
    if small:
        st.warning(small, icon=":material/science:")
    h = findings.headline(scores, run.train_ids, run.train_texts, what, run.config)
    box = st.success if h.kind in ("one", "several") else st.info
    box(f"**{ui.md_escape(h.sentence)}**", icon=":material/lightbulb:")
    with st.expander("The numbers behind this sentence"):
        if h.standouts:
            st.dataframe(pd.DataFrame([{
                "training sample": f"#{run.train_ids[i]}", "support": round(float(scores.support[i]), 3),
                "± error": round(float(scores.support_se[i]), 3), "q (BH)": float(scores.q[i]),
                "text": common.short(run.train_texts[i], 80)} for i in h.standouts]), hide_index=True)
        st.caption(f"{int(np.isfinite(scores.support).sum())} training samples ranked; {len(h.standouts)} stand out "
                   f"of the noise ({scores.n_draws} draws in {scores.n_batches} batches). Stands out: "
                   "Benjamini–Hochberg q < 0.05 and the same sign in both independently seeded halves of the "
                   "chains (bif.core.influence.samples).")


def fit_hint(run, rid, q) -> None:
    """A hint when the completion is much harder for the model than its training texts (out of what it learned)."""
    fit = common.query_fit(run, rid, q)
    if fit.outside:
        st.info(f"The model finds this completion hard: perplexity {fit.perplexity:.0f} per token (loss "
                f"{fit.loss:.2f}), against {np.exp(fit.train_median):.0f} for a typical training text (95 % are "
                f"below {np.exp(fit.train_high):.0f}). The prompt is probably outside what the model learned: the "
                "scores then explain a guess, and few training texts are likely to stand out.",
                icon=":material/help:")


def completion_section(run, rid, q, tokens, positions, sel, srow, sid) -> str:
    """The coloured, clickable completion (and the token pills). Returns the colouring ('all' or 'one')."""
    st.subheader("The completion, coloured by influence")
    if "colour_by" not in st.session_state:  # first render: as the shared link says
        st.session_state["colour_by"] = common.view().get("by") or "all"
    by = st.radio("Colour by", ["all", "one"], horizontal=True, key="colour_by",
                  format_func={"all": "the whole training set", "one": f"training sample #{sid} only"}.get,
                  help="Whole training set: the summed influence of all ranked samples. One sample: the influence "
                       "of the sample inspected below.")
    agg = common.completion_scores(run, rid, q, None if by == "all" else srow)
    vmax = render.scale_max(agg.support)
    pick.completion(ui.tokens_html(tokens, agg, vmax=vmax, selected=sel, clickable=True), sel,
                    key=f"completion-{run.key}-{q}", on_pick=common.select)
    st.html(ui.page_html(ui.legend_html(vmax)))
    if not np.asarray(agg.significant)[np.isfinite(np.asarray(agg.support, dtype=float))].any():
        st.caption(":material/info: No completion token's score stands out of the noise here (none is underlined): "
                   "the colours are scaled to the largest score, so they show the pattern, not an established "
                   "effect. A longer run (more draws) shrinks the noise.")
    key = f"token-pick-{run.key}-{q}"
    single = sel[0] if sel and sel[0] == sel[1] else None
    if st.session_state.get(key) != single:
        st.session_state[key] = single
    st.pills("Or pick one completion token here (click it again for the whole completion)",
             positions, key=key, on_change=select_token, args=(key,),
             format_func=lambda p: ui.md_escape(render.label_token(tokens[p + 1])),
             help="Each completion token has its own ranking: the training texts that made *that* token likely.")
    return by


def ranking_line(run, rid, q, token, scores, what) -> None:
    stab = common.stability(run, rid, q, token, 10)
    n_sig = int(scores.significant.sum())
    n = int(np.isfinite(scores.support).sum())
    again = round(stab["topk_support_overlap"] * 10)
    st.markdown(f"**Ranking for {ui.md_escape(what)}** · {n} training samples ranked · "
                f"{n_sig} {'stands' if n_sig == 1 else 'stand'} out of the noise · repeatable: {again} of the top 10 "
                "supporting samples come out again from an independent half of the sampling",
                help="Details: the same ranking computed from the first and from the second half of the chains "
                     f"(independently seeded). Top-10 overlap: support {again}/10, oppose "
                     f"{round(stab['topk_oppose_overlap'] * 10)}/10; Spearman rank correlation "
                     f"{stab['spearman']:+.2f}. Low agreement means the ranking is mostly Monte Carlo noise: run "
                     "longer (more draws) before reading anything into it.")


def sample_cards(run, rid, q, scores, idx, token, vmax, column, sign, inspected) -> None:
    """The listed samples: coloured tokens, carriers boxed, muted (grey) when within the noise."""
    cut = int(run.request.get("data", {}).get("max_length", 0) or 0)
    for rank, i in enumerate(idx, 1):
        tt = common.train_token_scores(run, rid, q, int(i), token)
        carry = findings.carriers(tt)
        toks = run.train_tokens[i]
        body = ui.tokens_html(toks, tt, vmax=vmax, carriers=carry, truncated=bool(cut) and len(toks) >= cut)
        tid = run.train_ids[i]
        column.html(ui.page_html(ui.sample_card_html(rank, tid, float(scores.support[i]), float(scores.support_se[i]),
                                                     bool(scores.significant[i]), body,
                                                     [toks[p + 1] for p in carry if p + 1 < len(toks)])))
        here = tid == inspected
        column.button(f"Inspecting sample #{tid}" if here else f"Inspect sample #{tid}", key=f"inspect-{sign}-{tid}",
                      on_click=select_sample, args=(tid,), type="primary" if here else "secondary",
                      help="Show this training text's token × completion-token heatmap below.")


def ranking_section(run, rid, q, token, scores, what, sid) -> list[int]:
    """Samples per list, the ranking line, the two lists. Returns the listed rows (supporting, then opposing)."""
    if "topk" not in st.session_state:
        st.session_state["topk"] = min(max(int(common.view().get("k") or 5), 1), 50)
    k = int(st.columns([1, 3])[0].number_input("Samples per list", 1, 50, key="topk",
                                               help="The k most supporting and k most opposing training samples."))
    ranking_line(run, rid, q, token, scores, what)
    trust.findings_caption(run, rid, q, token)
    sup, opp = scores.top(k, "support"), scores.top(k, "oppose")
    listed = [int(i) for i in list(sup) + list(opp)]
    card_vmax = render.scale_max(*[common.train_token_scores(run, rid, q, i, token).support for i in listed])
    left, right = st.columns(2, gap="large")
    left.markdown("#### :blue[Most supporting]", help="Up-weighting these texts makes the completion more likely.")
    right.markdown("#### :orange[Most opposing]", help="Up-weighting these texts makes the completion less likely.")
    sample_cards(run, rid, q, scores, sup, token, card_vmax, left, "sup", sid)
    sample_cards(run, rid, q, scores, opp, token, card_vmax, right, "opp", sid)
    if not listed:
        st.info("No sample has a non-zero score for this view.")
    elif int(scores.significant.sum()) < len(listed):
        st.caption(":material/info: Grey cards (*noise* badge) are within the noise: their order is not a finding "
                   "and changes from seed to seed (on the 51 held-out test queries, two independently seeded "
                   f"demo-cpu runs had {MEASURED['top5_overlap']['demo-cpu'] * 100:.0f} % of their top-5 supporting "
                   "texts in common; `python -m bif bench --trust-only`).")
    st.caption(f"Tokens inside each training text are coloured by their own influence on {what}, on one scale for "
               f"all cards (full colour = ±{card_vmax:.3f}); boxed bold tokens carry most of the sample's influence.")
    return listed


def sample_section(run, rid, q, tokens, token, srow, sid, listed, what):
    """One training sample in detail: the token × token heatmap on the scale shared by the listed samples."""
    row_of = {tid: i for i, tid in enumerate(run.train_ids)}
    st.subheader(f"Training sample #{sid} × completion tokens")
    pick_key = f"sample-pick-{run.key}"
    st.session_state[pick_key] = sid
    st.selectbox("Inspect any ranked training sample", run.train_ids, key=pick_key,
                 on_change=lambda: common.set_view(sample=st.session_state[pick_key]),
                 format_func=lambda t: f"#{t}: {common.short(run.train_texts[row_of[t]], 90)}",
                 help="Any of the ranked training samples, not only the top ones.")
    pair = common.pair_scores(run, rid, q, srow)
    shared = render.scale_max(*[common.pair_scores(run, rid, q, i).support for i in sorted(set(listed) | {srow})])
    fig = render.pair_figure(run.train_tokens[srow], tokens, pair, title=f"Training sample #{sid}: its tokens × "
                             "completion tokens", vmax=shared)
    st.plotly_chart(fig, key="pair", width="stretch")
    exports.figure_buttons(fig, f"bif_heatmap_{run.key}_{sid}", export_context(run, q, token, sample=sid),
                           key="heatmap-image")
    tt = common.train_token_scores(run, rid, q, srow, token)
    st.html(ui.page_html(ui.tokens_html(run.train_tokens[srow], tt, carriers=findings.carriers(tt))))
    st.caption(f"One colour scale for this heatmap and those of all listed samples: full colour = ±{shared:.3f}, so "
               "a sample within the noise looks as faint as it is. Rows: training tokens; columns: completion tokens; "
               "a cell's colour is the support of that training token's loss for that completion token's loss; a "
               f"dot marks a cell that stands out of the noise. Below it: the text coloured by its influence on {what}.")
    return fig


@common.guarded
def main() -> None:
    st.title("Which training data made this completion?")
    common.explain(EXPLAIN)
    current = provisional.current() or common.current_run()
    if current is None:
        return
    run, q = current
    v = common.view()
    rid = common.run_id(run)
    if len(run.queries) > 1:
        st.session_state["query_pick"] = q
        st.selectbox("Query", range(len(run.queries)), key="query_pick", on_change=select_query,
                     format_func=lambda i: f"{i + 1}: "
                                           + common.query_label(run.queries[i].prompt, run.queries[i].completion, 60, 40),
                     help="Queries of this run (those added later were scored at its stored draws or by replay).")
    if run.partial is None:  # a provisional run (still computing) takes no new question and cannot grow yet
        ask.ask_box(run, q)
        grow.sample_more(run)
        rankall.rank_box(run)
    trace, row = run.trace(q)
    tokens = run.query_tokens(q)
    positions = [int(p) for p in np.flatnonzero(trace.masks["query"][row]) if p + 1 < len(tokens)]
    sel = valid_selection(common.selection(), positions)
    token = common.positions(sel)
    what = describe_selection(tokens, sel)
    row_of = {tid: i for i, tid in enumerate(run.train_ids)}
    scores = common.sample_scores(run, rid, q, token)
    default_sample = int(scores.top(1, "support")[0]) if len(scores.top(1, "support")) else 0
    srow = row_of.get(v.get("sample"), default_sample)
    sid = run.train_ids[srow]

    headline_section(run, scores, what)
    fit_hint(run, rid, q)
    by = completion_section(run, rid, q, tokens, positions, sel, srow, sid)
    listed = ranking_section(run, rid, q, token, scores, what, sid)
    fig = sample_section(run, rid, q, tokens, token, srow, sid, listed, what)
    hist = render.histogram_figure(scores.support, float(scores.support[srow]),
                                   title=f"All ranked samples: support for {common.short(what, 28)}")
    st.plotly_chart(hist, key="hist", width="stretch")
    exports.figure_buttons(hist, f"bif_histogram_{run.key}", export_context(run, q, token), key="hist-image")
    notes(run)
    shown = {"run": run.key, "q": q, "token": sel[0] if sel and sel[0] == sel[1] else None,
             "span": f"{sel[0]}-{sel[1]}" if sel and sel[0] != sel[1] else None, "sample": sid,
             "by": "one" if by == "one" else None, "k": st.session_state["topk"] if st.session_state["topk"] != 5
             else None}
    export(run, shown, srow, scores, fig)
    common.to_url(**shown)


def notes(run) -> None:
    req = run.request
    text = f"**How the samples were chosen:** {ui.md_escape(req.get('how_scored', '?'))}"
    if req.get("approximate"):
        text += ("  \n**Approximation:** only the parameters matching "
                 f"{ui.md_escape(', '.join(req['config'].get('param_patterns', [])))} were sampled.")
    cfg = run.config
    text += (f"  \n**Sampler:** {common.preset_name(req['config'])} · {cfg.chains} chains × {cfg.draws} draws "
             f"(step size {cfg.step_size:g}, nβ {cfg.nbeta:g}, γ {cfg.gamma:g}). Check the Diagnostics page "
             "before trusting a ranking.")
    st.info(text)


def export(run, shown, srow, scores, fig) -> None:
    st.subheader("Share and export")
    st.markdown("Link to this exact view (run, query, token, sample, colouring):")
    st.code(common.share_link(**shown), language=None)
    exports.view_downloads(run, shown["q"], common.positions(common.selection()), shown["sample"], scores, fig)

main()
