"""Influence page: the completion coloured by influence, the top supporting/opposing samples, token × token."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from bif import render
from views import ask, common
from views.ui import html as ui

EXPLAIN = """
The **completion** is drawn token by token. Each token's colour says how the training data influenced the model
towards it: **blue** = made it more likely (*supports*), **orange** = made it less likely (*opposes*), white = no
measurable effect. Grey tokens are the prompt (context; not explained). Hover a token for its number.

The number is the **support**: the posterior correlation between a training text's loss and the completion's loss
while the weights are jiggled around the trained model (−1 … +1; the paper's BIF is the covariance with the opposite
sign). Every number has a **± standard error** from Monte Carlo noise; a score **stands out** when it is larger
than the noise would plausibly produce (Benjamini–Hochberg, 5 % false discoveries). Most scores do not: with a
short run only the strongest influences are resolved.

**Pick a completion token** to rank the training texts for that token alone. **Inspect** a training text to see
which of its tokens matter for which completion token (the heatmap).
"""


def select_token(key: str) -> None:
    common.set_view(token=st.session_state[key])


def select_sample(train_id: int) -> None:
    common.set_view(sample=train_id)


def select_query() -> None:
    common.set_view(q=st.session_state["query_pick"], token=None, sample=None)


def sample_cards(run, rid, q, scores, idx, token, vmax, column, sign, inspected) -> None:
    for rank, i in enumerate(idx, 1):
        tt = common.train_token_scores(run, rid, q, int(i), token)
        body = ui.tokens_html(run.train_tokens[i], tt, vmax=vmax)
        tid = run.train_ids[i]
        column.html(ui.page_html(ui.sample_card_html(rank, tid, float(scores.support[i]),
                                                             float(scores.support_se[i]),
                                                             bool(scores.significant[i]), body)))
        here = tid == inspected
        column.button(f"Inspecting sample #{tid}" if here else f"Inspect sample #{tid}", key=f"inspect-{sign}-{tid}",
                      on_click=select_sample, args=(tid,), type="primary" if here else "secondary",
                      help="Show this training text's token × completion-token heatmap below.")


@common.guarded
def main() -> None:
    st.title("Which training data made this completion?")
    common.explain(EXPLAIN)
    current = common.current_run()
    if current is None:
        return
    run, q = current
    v, rid = common.view(), common.run_id(run)
    if len(run.queries) > 1:
        st.session_state["query_pick"] = q
        st.selectbox("Query", range(len(run.queries)), key="query_pick", on_change=select_query,
                     format_func=lambda i: f"{i + 1}: "
                                           + common.query_label(run.queries[i].prompt, run.queries[i].completion, 60, 40),
                     help="Queries of this run (those added later were scored at its stored draws or by replay).")
    ask.ask_box(run, q)
    trace, row = run.trace(q)
    tokens = run.query_tokens(q)
    positions = [int(p) for p in np.flatnonzero(trace.masks["query"][row]) if p + 1 < len(tokens)]
    token = v.get("token") if v.get("token") in positions else None
    row_of = {tid: i for i, tid in enumerate(run.train_ids)}

    # the completion, coloured
    scores = common.sample_scores(run, rid, q, token)
    default_sample = int(scores.top(1, "support")[0]) if len(scores.top(1, "support")) else 0
    srow = row_of.get(v.get("sample"), default_sample)
    sid = run.train_ids[srow]
    st.subheader("The completion, coloured by influence")
    if "colour_by" not in st.session_state:  # first render: as the shared link says
        st.session_state["colour_by"] = v.get("by") or "all"
    by = st.radio("Colour by", ["all", "one"], horizontal=True, key="colour_by",
                  format_func={"all": "the whole training set", "one": f"training sample #{sid} only"}.get,
                  help="Whole training set: the summed influence of all ranked samples. One sample: the influence "
                       "of the sample inspected below.")
    agg = common.completion_scores(run, rid, q, None if by == "all" else srow)
    vmax = render.scale_max(agg.support)
    st.html(ui.page_html(ui.tokens_html(tokens, agg, vmax=vmax, selected=token),
                             ui.legend_html(vmax)))
    if not np.asarray(agg.significant)[np.isfinite(np.asarray(agg.support, dtype=float))].any():
        st.caption(":material/info: No completion token's score stands out of the noise here (none is underlined): "
                   "the colours are scaled to the largest score, so they show the pattern, not an established "
                   "effect. A longer run (more draws) shrinks the noise.")
    key = f"token-pick-{run.key}-{q}"
    if st.session_state.get(key) != token:
        st.session_state[key] = token
    st.pills("Rank the training samples for one completion token (click again for the whole completion)",
             positions, key=key, on_change=select_token, args=(key,),
             format_func=lambda p: ui.md_escape(render.label_token(tokens[p + 1])),
             help="Each completion token has its own ranking: the training texts that made *that* token likely.")

    # the rankings
    what = "the whole completion" if token is None else f"token {render.label_token(tokens[token + 1])!r}"
    k = int(st.columns([1, 3])[0].number_input("Samples per list", 1, 50, 5, key="topk",
                                               help="The k most supporting and k most opposing training samples."))
    stab = common.stability(run, rid, q, token, 10)
    n_sig = int(scores.significant.sum())
    st.markdown(f"**Ranking for {ui.md_escape(what)}** · {len(run.train_ids)} training samples ranked · "
                f"{n_sig} {'stands' if n_sig == 1 else 'stand'} out of the noise · top-10 agree between chain halves: "
                f"support {round(stab['topk_support_overlap'] * 10)}/10, oppose "
                f"{round(stab['topk_oppose_overlap'] * 10)}/10",
                help="Stability: the same ranking computed from the first and from the second half of the chains "
                     f"(rank correlation {stab['spearman']:+.2f}). Low agreement means the ranking is mostly Monte "
                     "Carlo noise: run longer (more draws) before reading anything into it.")
    sup, opp = scores.top(k, "support"), scores.top(k, "oppose")
    card_vmax = render.scale_max(*[common.train_token_scores(run, rid, q, int(i), token).support
                                   for i in list(sup) + list(opp)])
    left, right = st.columns(2, gap="large")
    left.markdown("#### :blue[Most supporting]", help="Up-weighting these texts makes the completion more likely.")
    right.markdown("#### :orange[Most opposing]", help="Up-weighting these texts makes the completion less likely.")
    sample_cards(run, rid, q, scores, sup, token, card_vmax, left, "sup", sid)
    sample_cards(run, rid, q, scores, opp, token, card_vmax, right, "opp", sid)
    if not len(sup) and not len(opp):
        st.info("No sample has a non-zero score for this view.")
    elif n_sig < len(sup) + len(opp):
        st.caption(":material/info: Samples without the *stands out* badge are within the noise: their order is not "
                   "a finding and changes from seed to seed (on the 12 demo queries, two independently seeded demo-cpu runs "
                   "shared 27 % of their top-5 supporting lists, mostly the one finding; `python -m bif bench`).")
    st.caption(f"Tokens inside each training text are coloured by their own influence on {what} "
               f"(full colour = ±{card_vmax:.3f}).")

    # one training sample in detail
    st.subheader(f"Training sample #{sid} × completion tokens")
    pick = f"sample-pick-{run.key}"
    st.session_state[pick] = sid
    st.selectbox("Inspect any ranked training sample", run.train_ids, key=pick,
                 on_change=lambda: common.set_view(sample=st.session_state[pick]),
                 format_func=lambda t: f"#{t}: {common.short(run.train_texts[row_of[t]], 90)}",
                 help="Any of the ranked training samples, not only the top ones.")
    pair = common.pair_scores(run, rid, q, srow)
    fig = render.pair_figure(run.train_tokens[srow], tokens, pair,
                             title=f"Training sample #{sid}: which of its tokens support which completion token")
    st.plotly_chart(fig, key="pair", width="stretch")
    st.html(ui.page_html(ui.tokens_html(run.train_tokens[srow],
                                                common.train_token_scores(run, rid, q, srow, token))))
    st.caption(f"Above: the training text with each token coloured by its influence on {what}. Heatmap rows: "
               "training tokens; columns: completion tokens; a cell's colour is the support of that training token's "
               "loss for that completion token's loss.")

    # all scores
    st.plotly_chart(render.histogram_figure(scores.support, float(scores.support[srow]),
                                            title=f"Support of every ranked training sample for {what}"),
                    key="hist", width="stretch")
    notes(run)
    shown = {"run": run.key, "q": q, "token": token, "sample": sid, "by": "one" if by == "one" else None}
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
    rows = render.samples_rows(scores, run.train_ids, run.train_texts)
    meta = {"run": run.key, "query": run.queries[shown["q"]].to_dict(), "query_index": shown["q"],
            "token_position": shown["token"], "quantity": render.QUANTITY, "sample": shown["sample"]}
    c1, c2, c3 = st.columns(3)
    c1.download_button("Ranking as CSV", lambda: pd.DataFrame(rows).to_csv(index=False), "bif_ranking.csv",
                       "text/csv", on_click="ignore", help="Every ranked sample with support ± SE, BIF, p, q.")
    c2.download_button("View as JSON", lambda: json.dumps({**meta, "samples": rows}, indent=1), "bif_view.json",
                       "application/json", on_click="ignore", help="The same table plus what the view shows.")
    c3.download_button("Heatmap as HTML", lambda: fig.to_html(include_plotlyjs=True), "bif_heatmap.html",
                       "text/html", on_click="ignore",
                       help="An interactive page that opens offline. (PNG export needs the kaleido package, which "
                            "is not installed here.)")


main()
