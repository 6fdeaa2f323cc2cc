"""Evidence: how well BIF and the baselines predict real retraining (LDS), find known sources, and at what cost.

Reads results written by `python -m bif.evaluation` (folder `results/`, or $BIF_RESULTS). Never computes.
"""

import os
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from bif.evaluation import figures
from bif.evaluation.report import EVAL_JSON, SWEEP_JSON, describe_config, load_results, takeaway
from views import common, exports
from views.ui.html import md_escape

RESULTS = os.environ.get("BIF_RESULTS", "results")
COMMAND = "python -m bif.evaluation --out results/"
EXPLAIN = """
This page does not look at your run: it shows how far any attribution method can be trusted, measured once on a
small benchmark model where the truth can be checked by retraining.

* **LDS** (linear datamodeling score): the model is retrained on many random halves of the training data. A good
  method's scores, summed over the half that was kept, put those retrained models in the right order of the query's
  loss (Spearman rank correlation averaged over queries: 1 = perfect order, 0 = chance). Shown with a 95 % interval.
* **Known-source retrieval**: each query paraphrases one training conversation. **MRR** (mean reciprocal rank) is 1
  when that source is always ranked first, 0.5 when second, …; **recall@k** is how often it is in the top k.
  Every method ranks all 128 training conversations of the benchmark, so the source is always among them: the
  ranked set does not depend on the query.
* **Flagged-set Jaccard**: how much two independent seeds agree on which samples stand out of the noise (1 = the same).
* The other methods, for comparison: **TracIn** and **gradient dot product / cosine** (similarity of loss gradients),
  **EK-FAC** (a classical influence function with an approximate Hessian). Grey bars are references, not methods:
  word overlap, random scores, TracIn keeping only its top sample, and an oracle that knows the source.
  Bars: BIF dark grey, other methods mid grey, references light grey (blue and orange keep their meaning,
  supports and opposes, on the other pages).
"""


@st.cache_data(show_spinner=False)
def _load(folder: str, name: str, stamp: float):
    return load_results(folder, name)


def _stamp(name: str) -> float:
    try:
        return os.path.getmtime(os.path.join(RESULTS, name))
    except OSError:
        return 0.0


def _fmt(x, nd=2):
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def _table(res: dict) -> pd.DataFrame:
    return pd.DataFrame([{
        "method": r["label"], "LDS": _fmt(r["lds"]), "95 % CI": f"[{_fmt(r['lds_ci'][0])}, {_fmt(r['lds_ci'][1])}]",
        "source MRR": _fmt(r["mrr"]), "recall@1": _fmt(r["recall@1"]), "recall@10": _fmt(r["recall@10"]),
        "wall time (s)": "—" if r["kind"] == "reference" else f"{r['seconds']:.1f}"} for r in res["methods"]])


def evaluation_section(res: dict) -> None:
    b, s = res["benchmark"], res["lds_setup"]
    st.info(f"**What this shows.** {md_escape(takeaway(res))}", icon=":material/lightbulb:")
    st.subheader("LDS: does the score predict retraining?")
    st.caption(f"{s['subsets']} random half-subsets of the {b['n_train']}-conversation benchmark set, each retrained "
               f"with the same recipe (seeds {s['seeds']}); {b['n_queries']} paraphrase queries. "
               f"Error bars: 95 % bootstrap interval over subsets. Computed {res['created']}.")
    exports.chart(figures.lds_bars(res), "bif_evidence_lds")
    st.dataframe(_table(res), hide_index=True, width="stretch")
    with st.expander("Sign convention and what each method computed"):
        st.markdown(md_escape(res["convention"]))
        st.markdown(md_escape(b["description"]))
        st.markdown("\n".join(f"- **{md_escape(r['label'])}**: {md_escape(r['info']['note'])}" for r in res["methods"]
                               if r["info"].get("note")))

    st.subheader("Predicted against actual loss, per subset")
    labels = [r["label"] for r in res["methods"]]
    c1, c2 = st.columns(2)
    m = c1.selectbox("Method", range(len(labels)), format_func=lambda i: labels[i])
    queries = res["queries"]
    q = c2.selectbox("Query", range(len(queries)), format_func=lambda i: queries[i]["prompt"].replace("\n", " ⏎ "))
    exports.chart(figures.predicted_vs_actual(res, m, q), f"bif_evidence_predicted_m{m}_q{q}")
    st.caption("Completion (the source conversation's answer) and the source training text:")
    st.text(queries[q]["completion"].strip())
    st.text(queries[q]["source_text"])

    st.subheader("Known-source retrieval")
    st.caption("Each query paraphrases one training conversation; how high does each method rank it?")
    exports.chart(figures.retrieval_bars(res), "bif_evidence_retrieval")
    st.subheader("Wall time")
    exports.chart(figures.time_bars(res), "bif_evidence_time")


def sweep_section(sw: dict) -> None:
    st.subheader("BIF across seeds and budgets")
    st.caption(re.sub(r"Base sampler: \{[^}]*\}", "Base sampler: " + describe_config(sw.get("base") or {}),
                      sw["description"]) if isinstance(sw.get("base"), dict) else sw["description"])
    metric = st.radio("Show", ["mrr", "jaccard", "lds"], horizontal=True,
                      format_func={"mrr": "source MRR", "jaccard": "flagged-set Jaccard", "lds": "LDS"}.get)
    exports.chart(figures.frontier(sw, metric), f"bif_evidence_frontier_{metric}")
    st.dataframe(pd.DataFrame([{
        "setting": r["setting"], "chains × draws": f"{r['chains']} × {r['draws']}", "cost (s)": round(r["cost_s"]),
        "MRR seed 0": _fmt(r["mrr"][0]), "MRR seed 1": _fmt(r["mrr"][1]), "flagged/query": _fmt(r["flagged"], 1),
        "Jaccard": _fmt(r["jaccard"]), "LDS": _fmt(r["lds"])} for r in sw["rows"]]), hide_index=True,
        width="stretch")
    st.caption(sw["notes"])


def budget_title(stem: str) -> str:
    """'bif-2x10-seed0' -> 'BIF with 2 chains × 10 draws, seed 0' (the file's own name when it does not parse)."""
    m = re.fullmatch(r"bif-(\d+)x(\d+)-seed(\d+)", stem)
    return f"BIF with {m[1]} chains × {m[2]} draws, seed {m[3]}" if m else stem


def small_budgets_section(folder: Path) -> None:
    """results/fast/: BIF at small budgets with EK-FAC re-timed in the same invocation (Markdown written by the
    evaluation; shown as text, HTML is not rendered)."""
    files = sorted(folder.glob("bif-*.md"))
    if not files:
        return
    st.subheader("BIF at EK-FAC's cost")
    st.caption("Small BIF budgets, each measured with EK-FAC re-timed in the same invocation (commands in "
               f"`{folder}/README.md`). They rank; they are far too small for findings that replicate across seeds.")
    for f in files:
        with st.expander(budget_title(f.stem)):
            st.markdown(f.read_text())


st.title("Evidence")
common.explain(EXPLAIN)
st.markdown("How well does each attribution method predict what **retraining without a sample** would do? "
            "Scores from BIF and the baselines are compared against models actually retrained on random halves "
            "of the training set (the linear datamodeling score, LDS), and on queries whose source is known.")
try:
    res = _load(RESULTS, EVAL_JSON, _stamp(EVAL_JSON))
    sw = _load(RESULTS, SWEEP_JSON, _stamp(SWEEP_JSON))
    if res is None:
        st.info(f"No evaluation results in `{RESULTS}/` yet. Compute them (tens of minutes on a CPU) with:")
        st.code(COMMAND, language="bash")
    else:
        evaluation_section(res)
    if sw is not None:
        sweep_section(sw)
    small_budgets_section(Path(RESULTS) / "fast")
except Exception as e:  # a damaged or older results file: say so instead of a traceback
    st.error(f"The stored results could not be shown ({type(e).__name__}: {e}). Recompute them with `{COMMAND}`.")
