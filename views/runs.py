"""Runs page: the cached runs (open, delete) and the background jobs (watch, cancel)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

import bif
from bif.service import jobs
from views.ui.html import md_escape
from views import common, jobview, nav

EXPLAIN = """
Every finished run is kept in the cache (`BIF_CACHE`, default `./cache`), keyed by the model's files, the training
data, the queries and the sampler settings: asking for the same run again opens it at once, and a new query on the
same model, data and sampler is added by replaying the chains. **Open** makes a run the current one for the
Influence and Diagnostics pages. Runs that were interrupted show as *incomplete*; starting them again resumes them.
"""


@common.callback
def delete(key: str, root) -> None:
    bif.delete_run(key, root)
    if common.view().get("run") == key:
        common.set_view(run=None, token=None, sample=None)


def query_text(key: str) -> str:
    """The run's first query from its start ('User: what is … → 7'), so that runs read apart in a table."""
    q = ((common.run_request(key) or {}).get("queries") or [{}])[0]
    return f"{common.short(q.get('prompt', '?'), 50)} → {common.short(q.get('completion', '?'), 30)}"


def when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def runs_section(root) -> None:
    runs = bif.list_runs(root)
    st.subheader(f"Cached runs ({len(runs)})")
    if not runs:
        st.caption("No runs yet. Start one on the Run page.")
        return
    # the columns that tell runs apart first: model (short) and query, then the rest
    table = pd.DataFrame([{
        "model": common.short(r["model"], 28), "query": query_text(r["key"]), "queries": r["n_queries"],
        "status": "finished" if r["complete"] else f"incomplete ({r['chains_done']} chains)" if r.get("started", True)
        else "failed at start (delete it)",
        "sampler check": r["verdict"] or "",
        "preset": common.preset_name(r["config"]),
        "chains × draws": f"{r['config'].get('chains', '?')} × {r['config'].get('draws', '?')}",
        "created": when(r["created"]), "data": r["data"].rsplit("/", 1)[-1], "run": r["key"],
        "size (MB)": round(r["size_mb"], 2)} for r in runs])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "model": st.column_config.TextColumn(help="The model's label (hover a cell for all of it)."),
        "query": st.column_config.TextColumn(width="large", help="The run's first query: prompt → completion."),
        "sampler check": st.column_config.TextColumn(
        help="The Diagnostics verdict from the sampling loss: 'ok' = it rose from the trained weights' loss and "
             "levelled off. Anything else (left basin, drifting, chains disagree, …): read its scores with care; "
             "the Diagnostics page says what to change.")})
    keys = [r["key"] for r in runs]
    labels = {r["key"]: f"{r['key']} · {query_text(r['key'])} · {when(r['created'])} · {common.short(r['model'], 40)}"
              for r in runs}
    current = common.view().get("run")
    # default: the current run, else the newest finished one (an incomplete run cannot be opened)
    first = next((i for i, r in enumerate(runs) if r["complete"]), 0)
    key = st.selectbox("Run", keys, index=keys.index(current) if current in keys else first, format_func=labels.get,
                       key="runs-pick", help="Pick a run to open or delete.")
    complete = next(r["complete"] for r in runs if r["key"] == key)
    c1, c2, _ = st.columns([1, 1, 2])  # at 800 px wide, narrower columns cut "Delete…" to "D…"
    c1.button("Open", type="primary", disabled=not complete, key="runs-open", on_click=nav.go,
              args=("views/influence.py",), kwargs={"run": key, "q": 0, "token": None, "sample": None},
              help="Make it the current run and show its influence view." if complete else
              "Only finished runs can be opened. Start the same run again on the Run page to resume it.")
    with c2.popover("Delete…", help="Remove the run's files from the cache."):
        st.markdown(f"Delete run `{key}`? This cannot be undone.")
        st.button("Delete for good", key="runs-delete", on_click=delete, args=(key, root))


def jobs_section(root) -> None:
    all_jobs = jobs.list_jobs(root)[:20]
    st.subheader("Background jobs")
    if not all_jobs:
        st.caption("No jobs yet.")
        return
    for j in all_jobs:
        c1, c2 = st.columns([5, 1])
        line = f"`{j['id']}` · **{md_escape(jobview.status_line(j))}** · {md_escape(jobview.what(j))}"
        if j["state"] == "failed":
            line += f" · {md_escape(j['message'][:160])}"
        c1.markdown(line)
        if j["state"] in jobs.ACTIVE:
            c2.button("Cancel", key=f"jobs-cancel-{j['id']}", on_click=jobs.cancel_job, args=(j["id"], root))
        elif j["state"] == "done" and j["result"]:
            c2.button("Open", key=f"jobs-open-{j['id']}", on_click=nav.go, args=("views/influence.py",),
                      kwargs={"run": j["result"]["run_key"], "q": j["result"]["query"], "token": None, "sample": None})


@common.guarded
def main() -> None:
    st.title("Runs")
    common.explain(EXPLAIN)
    root = common.cache_root()
    runs_section(root)
    jobs_section(root)
    st.caption(f"Cache: {root.resolve()}")
    common.to_url()


main()
