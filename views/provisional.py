"""Provisional results on the Influence page while the view's run job computes (bif.store.partial).

The page then draws the run as far as it has sampled, under a banner that says so, and is drawn again as draws
arrive (at 10 % more pooled draws per chain, or when other chains join); when the job finishes, the finished run
replaces it and the banner goes. Not a page: views/influence.py calls `current`.
"""

from __future__ import annotations

import streamlit as st

import bif
from bif.core.findings import MIN_CHAINS as FINDING_CHAINS
from bif.service import jobs
from bif.store.partial import MIN_CHAINS, MIN_DRAWS, chain_progress, open_partial, pick_chains
from views import common
from views.jobview import describe

REFRESH_S = 1.0  # how often the page looks for new draws (a look is a few small reads; a redraw costs more)
REDRAW_PERCENT = 10  # the page is drawn again once the pooled draws per chain grew by 10 % (at least one)
ADOPTED = "adopted_job"  # session key: the finished job whose run the view was given (once per job)


def live_job() -> dict | None:
    """The view's job while it computes a run (its folder may not be known yet: the worker is starting), else None."""
    job = common.view().get("job")
    if not job:
        return None
    try:
        s = jobs.job_status(job, common.cache_root())
    except ValueError:
        return None
    if s["state"] not in jobs.ACTIVE or not s["spec"] or s["spec"].kind != "run":
        return None
    return s


def signature(run_dir) -> str:
    """'chains:draws per chain' that a provisional view of the computing run pools now (bif.store.partial.
    pick_chains); '' while there are not enough draws."""
    cfg = (common.run_request(run_dir.name) or {}).get("config") or {}
    chains, draws = pick_chains([w for _, w in chain_progress(run_dir, int(cfg.get("chains", 0)))])
    return f"{','.join(map(str, chains))}:{draws}" if chains else ""


def worth_redrawing(old: str, new: str) -> bool:
    """Whether the page should be drawn again for signature `new` when it shows `old`: the first view, other
    chains, or REDRAW_PERCENT % more draws per chain (at least one more). A rerun of the whole page costs seconds
    on a busy CPU, while new draws come every second."""
    if new == old or not new:
        return False
    if not old or old.split(":")[0] != new.split(":")[0]:
        return True
    have, now = int(old.split(":")[1]), int(new.split(":")[1])
    return now >= have + max(1, -(-have * REDRAW_PERCENT // 100))  # integer ceiling: 100 -> 110, not 111


@st.cache_resource(max_entries=2, show_spinner=False)
def _open(path: str, sig: str) -> bif.Run | None:
    from pathlib import Path

    return open_partial(Path(path))


def current() -> tuple[bif.Run, int] | None:
    """(provisional run, query 0) while the view's job computes and has enough draws; else None (the page then
    shows its finished run). Draws the banner and starts the refresher either way while a job computes, also
    before the worker has made the run's folder."""
    s = live_job()
    if s is None:
        adopt_finished()
        return None
    key = s["progress"].get("run_key")
    run, sig = None, ""
    if key:
        run_dir = common.store().run(key).dir
        sig = signature(run_dir)
        run = _open(str(run_dir), sig) if sig else None
    banner(s, run)
    st.fragment(_refresh, run_every=REFRESH_S)(s["id"], sig)
    if run is None and not common.view().get("run"):
        st.stop()  # nothing to show yet; the refresher keeps looking
    return (run, 0) if run is not None else None


def adopt_finished() -> None:
    """Once the view's run job is done, make its run the view's when it has none (once per job): the sidebar's
    refresher can rerun the page before `_refresh` sees the end, which left the page saying that no run is open."""
    job = common.view().get("job")
    if not job or common.view().get("run") or st.session_state.get(ADOPTED) == job:
        return
    try:
        s = jobs.job_status(job, common.cache_root())
    except ValueError:
        return
    if s["state"] == "done" and s["spec"] and s["spec"].kind == "run" and s.get("result"):
        st.session_state[ADOPTED] = job
        common.set_view(run=s["result"]["run_key"], q=s["result"]["query"], token=None, span=None, sample=None)


def banner(s: dict, run: bif.Run | None) -> None:
    p = s["progress"]
    with st.container(border=True):
        if run is None:
            st.markdown(f"**Computing.** Provisional results appear here once {MIN_CHAINS} chains have "
                        f"{MIN_DRAWS} draws each.")
        else:
            part = run.partial
            few = len(part.chains) < FINDING_CHAINS
            st.markdown(f":orange-badge[Provisional] **from {part.draws} of {part.target} draws per chain "
                        f"({len(part.chains)} of {run.config.chains} chains, {part.draws * len(part.chains)} draws in "
                        "all).** The error bars are wide and shrink as draws arrive; rankings may still change. "
                        + (f"Nothing is marked as standing out until {FINDING_CHAINS} chains are in. " if few else "")
                        + "The mark goes when the run is finished.",
                        help=f"It pools the same number of draws from each chain it uses: the chains and number of "
                             f"draws with the most draws in all, from {MIN_CHAINS} chains × {MIN_DRAWS} draws on "
                             "(bif.store.partial). A chain still sampling adds its draws when that gives more in "
                             "all; while a run grows, its chains count once they hold more than the shorter run. "
                             f"The page is drawn again at {REDRAW_PERCENT} % more draws per chain, or when other "
                             "chains join.")
        st.progress(min(max(float(p.get("fraction", 0.0)), 0.0), 1.0), text=describe(p))


@common.guarded
def _refresh(job_id: str, sig: str) -> None:
    """Rerun the page when the job finishes (then showing the finished run) or new draws arrived."""
    s = jobs.job_status(job_id, common.cache_root())
    if s["state"] not in jobs.ACTIVE:
        if s["state"] == "done":
            common.set_view(run=s["result"]["run_key"], q=s["result"]["query"], token=None, span=None, sample=None)
        st.rerun(scope="app")
    key = s["progress"].get("run_key")
    if key and worth_redrawing(sig, signature(common.store().run(key).dir)):
        st.rerun(scope="app")
