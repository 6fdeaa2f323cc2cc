"""'Rank all training texts' on the Influence page: the texts a run did not rank, scored at its stored draws in
a background job (bif.store.rank); its progress while it runs. Not a page: views/influence.py calls `rank_box`."""

from __future__ import annotations

import streamlit as st

import bif
from bif.core.draws import open_draws
from bif.service import cost, jobs, jobspec
from bif.store.rank import unranked
from views import common
from views.jobview import describe


def rank_job(run: bif.Run) -> dict | None:
    """The active job ranking this run's other training texts, if any."""
    return next((j for j in jobs.list_jobs(common.cache_root(), active_only=True)
                 if j["spec"] and j["spec"].kind == "rank" and j["spec"].run_key == run.key), None)


@common.callback
def _start(run: bif.Run) -> None:
    jobs.start_job(jobspec.rank_job_spec(run, common.cache_root()), common.cache_root())


def rank_box(run: bif.Run) -> None:
    """Progress of the ranking job, or the button that starts it; nothing once every text is ranked."""
    rest = unranked(run)
    if rest <= 0 or open_draws(run.dir, run.config.chains) is None:
        return
    job = rank_job(run)
    if job is not None:
        st.fragment(_progress, run_every=2.0)(job["id"], rest)
        return
    n, root = run.request.get("n_train", "?"), common.cache_root()
    st.button(f"Rank all {n} training texts ({rest} more)", key=f"rank-{run.key}", on_click=_start, args=(run,),
              icon=":material/format_list_numbered:",
              help="Scores the training texts this run did not rank at its stored draws (no sampling), in the "
                   f"background, about {jobs.format_seconds(cost.rank_seconds(run, rest, root))}. The rankings then "
                   "cover the whole training set and the approximation note goes.")


@common.guarded
def _progress(job_id: str, rest: int) -> None:
    s = jobs.job_status(job_id, common.cache_root())
    if s["state"] not in jobs.ACTIVE:
        st.rerun(scope="app")  # the run now ranks everything: draw it again
    st.progress(min(max(float(s["progress"].get("fraction", 0.0)), 0.0), 1.0),
                text=f"Ranking the {rest} other training texts in the background (a question asked meanwhile comes "
                     f"first): {describe(s['progress'])}")
