"""Compare page: two queries side by side over the same training samples ("this answer came from here, that one
from there"). The second column can also be a query of another run that ranked the very same training samples."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import bif
from bif import render
from bif.core import findings
from views import common
from views.ui import html as ui

EXPLAIN = """
Two completions, two columns, the **same training samples**. Each column shows its completion coloured by the
influence of the whole training set, its headline and its most supporting samples. The table below puts the samples
that matter for either completion side by side, with both scores: a presenter can show that one answer came from one
training text and the other from another.

The second column is another query of this run (add one with **Ask about another completion** on the Influence page),
or a query of another run that ranked exactly the same training samples (same data, same ranked set).
"""


def choices(run: bif.Run) -> list[tuple[str, int]]:
    """(run key, query) pairs comparable with `run`: its own queries, then those of runs with the same ranked set."""
    out = [(run.key, i) for i in range(len(run.queries))]
    mine = run.request.get("fingerprints", {}).get("scored")
    for r in bif.list_runs(common.cache_root()):
        if r["key"] == run.key or not r["complete"]:
            continue
        req = common.run_request(r["key"]) or {}
        if mine and req.get("fingerprints", {}).get("scored") == mine:
            out += [(r["key"], i) for i in range(len(req.get("queries") or []))]
    return out


def label(pair: tuple[str, int], run: bif.Run) -> str:
    """'2: …end of the prompt → completion' (and the run, for another run's query)."""
    key, q = pair
    if key == run.key:
        query = run.queries[q]
        return f"{q + 1}: {common.query_label(query.prompt, query.completion, 40, 30)}"
    queries = (common.run_request(key) or {}).get("queries") or []
    text = common.query_label(queries[q]["prompt"], queries[q]["completion"], 40, 30) if q < len(queries) else "?"
    return f"{q + 1}: {text} · run {key[:8]}"


def column(col, run: bif.Run, q: int, k: int, name: str) -> bif.Scores:
    """One side: the coloured completion, its headline, its k most supporting samples (compact)."""
    rid = common.run_id(run)
    scores = common.sample_scores(run, rid, q, None)
    tokens = run.query_tokens(q)
    agg = common.completion_scores(run, rid, q, None)
    with col:
        st.markdown(f"#### {name}")
        st.html(ui.page_html(ui.tokens_html(tokens, agg, vmax=render.scale_max(agg.support))))
        h = findings.headline(scores, run.train_ids, run.train_texts, "this completion", run.config)
        st.caption(ui.md_escape(h.sentence))
        for rank, i in enumerate(scores.top(k, "support"), 1):
            tt = common.train_token_scores(run, rid, q, int(i), None)
            carry = findings.carriers(tt)
            toks = run.train_tokens[i]
            body = ui.tokens_html(toks, tt, carriers=carry)
            st.html(ui.page_html(ui.sample_card_html(rank, run.train_ids[i], float(scores.support[i]),
                                                     float(scores.support_se[i]), bool(scores.significant[i]), body,
                                                     [toks[p + 1] for p in carry if p + 1 < len(toks)])))
    return scores


def both_table(run: bif.Run, a: bif.Scores, b: bif.Scores, rows: list[int]) -> None:
    def cell(s, i):
        mark = " ★" if s.significant[i] else ""
        return f"{float(s.support[i]):+.3f} ± {float(s.support_se[i]):.3f}{mark}"

    st.dataframe(pd.DataFrame([{"training sample": f"#{run.train_ids[i]}", "left: support": cell(a, i),
                                "right: support": cell(b, i), "text": common.short(run.train_texts[i], 120)}
                               for i in rows]), hide_index=True, width="stretch",
                 column_config={"text": st.column_config.TextColumn(width="large")})
    st.caption("Support ± error of each training sample for each completion (positive = makes it more likely, "
               "negative = less likely); ★ = stands out of the noise for that completion.")


@common.guarded
def main() -> None:
    st.title("Compare two completions")
    common.explain(EXPLAIN)
    current = common.current_run()
    if current is None:
        return
    run, q = current
    v = common.view()
    options = choices(run)
    if len(options) < 2:
        st.info("This run has one query. Add a second one with **Ask about another completion** on the Influence "
                "page, then compare them here.")
        st.page_link("views/influence.py", label="Go to the Influence page", icon=":material/target:")
        return
    left_pick = (run.key, q)
    default = (v.get("run2") or run.key, v.get("q2") if v.get("q2") is not None else (1 if q == 0 else 0))
    if default not in options or default == left_pick:
        default = next(o for o in options if o != left_pick)
    c1, c2 = st.columns(2)
    c1.selectbox("Left", [p for p in options if p[0] == run.key], key="cmp-left",
                 index=[p for p in options if p[0] == run.key].index(left_pick),
                 format_func=lambda p: label(p, run),
                 on_change=lambda: common.set_view(q=st.session_state["cmp-left"][1], token=None, span=None))
    right = c2.selectbox("Right", options, index=options.index(default), key="cmp-right",
                         format_func=lambda p: label(p, run))
    k = int(st.number_input("Samples per side", 1, 20, 3, key="cmp-k"))
    other = run if right[0] == run.key else common.open_run(right[0])
    if other.train_ids != run.train_ids:
        raise bif.BIFError("The two runs ranked different training samples: pick a query of this run.")
    a_col, b_col = st.columns(2, gap="large")
    a = column(a_col, run, q, k, "Left")
    b = column(b_col, other, right[1], k, "Right")
    st.subheader("The same training samples, both completions")
    c = findings.contrast(a, b, run.train_ids, run.train_texts, names=("the left", "the right"), k=k)
    st.success(f"**{ui.md_escape(c.sentence)}**", icon=":material/compare_arrows:")
    both_table(run, a, b, c.rows)
    common.to_url(run=run.key, q=q, q2=right[1], run2=right[0] if right[0] != run.key else None)


main()
