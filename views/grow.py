"""'Sample more' on the Influence page: the open run grows by more draws per chain, in a background job.

Each chain continues from its saved state (bif.store.grow), so nothing already sampled is computed again and the
result equals a fresh run with the larger number of draws. While the job runs the page shows its provisional
results (views/provisional.py). Not a page: views/influence.py calls `sample_more`.
"""

from __future__ import annotations

import streamlit as st

import bif
from bif.service import jobs, jobspec
from bif.store.grow import growth_estimate_s, state_name
from bif.store.replay import query_method
from views import common

MAX_DRAWS = 100_000  # SamplerConfig's limit


@common.callback
def _start(spec: jobspec.JobSpec) -> None:
    common.set_view(job=jobs.start_job(spec, common.cache_root()))


def sample_more(run: bif.Run) -> None:
    """The 'Sample more' button (twice the draws per chain) with its estimate from this run's measured speed."""
    cfg = run.config
    target = min(2 * cfg.draws, MAX_DRAWS)
    if target <= cfg.draws or not (run.dir / state_name(0)).exists():
        return
    spec = jobspec.grow_job_spec(run, target, common.cache_root())
    seconds = jobs.WORKER_START_S + growth_estimate_s(run.dir, target, jobs.default_procs(spec))
    st.button(f"Sample more ({cfg.draws} → {target} draws)", key=f"grow-{run.key}", on_click=_start,
              args=(spec,), icon=":material/add_circle:",
              help="Continues every chain from where it stopped: nothing is sampled twice, and the result equals a "
                   "fresh run with that many draws. Error bars shrink by about 1/√2.")
    later = len(run.query_sets) > 1 and query_method(run) == "draws"
    st.caption(f"{cfg.draws} → {target} draws per chain, about {jobs.format_seconds(seconds)} (from this run's own "
               "speed). Provisional results show here while it samples."
               + (" The queries asked later on this run are asked again on the grown one, at its stored draws "
                  "(seconds each)." if later else ""))
