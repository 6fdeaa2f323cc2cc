"""The live panel of a background job (progress, ETA, sampling-loss chart, cancel). Not a page."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from bif.service import jobs
from bif import render
from views import common, nav
from views.ui.html import md_escape

STAGES = {"start": "Starting the worker (Python, torch)", "load": "Loading the model",
          "tokenizer": "Building the demo model: training its tokenizer",
          "train": "Building the demo model (first use only): training",
          "convert": "Converting SmolLM2 to safetensors (first use only, about half a minute)",
          "save": "Saving the converted model", "data": "Reading and tokenizing the training data",
          "init": "Scoring the training samples at the trained weights (once per run)", "sample": "Sampling",
          "scoring stored draws": "Scoring the new query at the stored draws", "seal": "Sealing the run",
          "rank": "Ranking the other training texts at the stored draws"}


def stage_words(p: dict) -> str:
    """The stage of a job's progress in words; a chain's stages name the chain ('Sampling chain 2 of 4')."""
    stage = p.get("stage")
    words = STAGES.get(stage, "waiting for the worker")
    if stage in ("sample", "rank", "scoring stored draws") and "chain" in p:
        words += f" chain {int(p['chain']) + 1} of {p.get('chains', '?')}" if stage == "sample" else \
            f": chain {int(p['chain']) + 1} of {p.get('chains', '?')}"
    return words


def status_line(s: dict) -> str:
    """'running · Sampling · 33 %, about 2 min left' — the one line the job panel and the sidebar both show."""
    p = s.get("progress") or {}
    line = f"{s['state']} · {stage_words(p) if s['state'] in jobs.ACTIVE else ''}"
    if s["state"] in jobs.ACTIVE:
        line += f" · {float(p.get('fraction', 0.0)):.0%}"
        if p.get("eta_s") is not None:
            line += f", about {jobs.format_seconds(p.get('eta_s'))} left"
    return line.replace(" ·  · ", " · ").rstrip(" ·")


def what(s: dict) -> str:
    """'model · query' of a job's request (plain text)."""
    spec = s.get("spec")
    q = spec.query if spec else None
    model = spec.run.model.name_or_path if spec else "?"
    return f"{common.short(Path(str(model)).name or model, 40)} · " \
           f"{common.query_label(q.prompt if q else '', q.completion if q else '', 40, 30)}"


def sidebar_line(job_id: str) -> None:
    """The job's line in the sidebar; while it is active it refreshes itself every second, like the panel."""
    s = jobs.job_status(job_id, common.cache_root())
    if s["state"] in jobs.ACTIVE:
        st.fragment(_sidebar_body, run_every=1.0)(job_id)


def _sidebar_body(job_id: str) -> None:
    s = jobs.job_status(job_id, common.cache_root())
    if s["state"] not in jobs.ACTIVE:
        st.rerun(scope="app")  # stop refreshing
    st.caption(f"Background job: {md_escape(status_line(s))}  \n{md_escape(what(s))}")


def describe(p: dict) -> str:
    """The stage of a job in words, with its place and time left: the job panel and the sidebar both say this."""
    stage = p.get("stage", "start")
    if stage == "sample":
        return (f"Sampling chain {p.get('chain', 0) + 1} of {p.get('chains', '?')} · draw {p.get('draw', 0)} of "
                f"{p.get('draws', '?')} · step {p.get('step', 0)} of {p.get('steps', '?')} · about "
                f"{jobs.format_seconds(p.get('eta_s'))} left")
    if stage == "rank":
        return (f"{STAGES[stage]}: chain {p.get('chain', 0) + 1} of {p.get('chains', '?')}, draw {p.get('draw', 0)} "
                f"of {p.get('draws', '?')} ({p.get('rows', '?')} texts)")
    if stage == "scoring stored draws":
        return (f"{STAGES[stage]}: chain {p.get('chain', 0) + 1} of {p.get('chains', '?')}, draw {p.get('draw', 0)} "
                f"of {p.get('draws', '?')}")
    if stage == "train":
        return f"{STAGES['train']} step {p.get('step', 0)} of {p.get('steps', '?')} (about " \
               f"{jobs.format_seconds(p.get('eta_s'))} left)"
    return STAGES.get(stage, f"Working ({stage})") + "…"


def panel(job_id: str) -> None:
    """Show a job; refresh every second while it is active (an st.fragment, so the rest of the page stays)."""
    active = jobs.job_status(job_id, common.cache_root())["state"] in jobs.ACTIVE
    if active:
        st.fragment(_body, run_every=1.0)(job_id, True)
    else:  # not a fragment: its buttons must rerun the whole app (a page switch happens in app.py)
        _body(job_id, False)


@common.guarded
def _body(job_id: str, was_active: bool) -> None:
    s = jobs.job_status(job_id, common.cache_root())
    if was_active and s["state"] not in jobs.ACTIVE:
        if s["state"] == "done":
            common.set_view(run=s["result"]["run_key"], q=s["result"]["query"], token=None, sample=None)
        st.rerun(scope="app")  # stop polling and refresh the sidebar
    p = s["progress"]
    kind = {"replay": "Replay for a new query", "rank": "Ranking the whole training set"}.get(
        s["spec"].kind if s["spec"] else None, "Run")
    with st.container(border=True):
        st.markdown(f"**{kind}** · job `{job_id}` · **{md_escape(status_line(s))}**  \n{md_escape(what(s))}")
        if s["state"] in jobs.ACTIVE:
            st.progress(min(max(float(p.get("fraction", 0.0)), 0.0), 1.0), text=describe(p))
            if s["spec"] and s["spec"].kind == "run":
                st.page_link("views/influence.py", label="Provisional results, while it samples: Influence page",
                             icon=":material/target:")
            st.button("Cancel", key=f"cancel-{job_id}", on_click=jobs.cancel_job, args=(job_id, common.cache_root()),
                      help="Stops the worker at its next report. Finished chains are kept: starting the same run "
                           "again resumes from them.")
        elif s["state"] == "done":
            r = s["result"]
            st.success("Finished. The run is now the current run (sidebar): see the Influence and Diagnostics pages.")
            st.button("Open the influence view →", key=f"open-{job_id}", type="primary", icon=":material/target:",
                      on_click=nav.go, args=("views/influence.py",),
                      kwargs={"run": r["run_key"], "q": r["query"], "token": None, "sample": None})
        elif s["state"] == "cancelled":
            st.warning("Cancelled. Finished chains were kept; starting the same run again resumes from them.")
        else:
            st.error(s["message"] or "The job failed.", icon=":material/error:")
        history = p.get("history") or {}
        if history:
            cfg = s["spec"].run.config.to_dict() if s["spec"] else {}
            steps = cfg.get("burn_in", 0) + cfg.get("draws", 0) * cfg.get("steps_between", 1)
            fig = render.loss_figure(render.history_curves(history), burn_in=cfg.get("burn_in"),
                                     total_steps=steps or None,
                                     title="Sampling loss per chain" + (" (live)" if was_active else ""))
            st.plotly_chart(fig, key=f"live-{job_id}", width="stretch")
            st.caption("It should rise from the trained model's loss and level off after the burn-in (shaded). "
                       "A curve that keeps climbing means the scores will not be trustworthy: see Diagnostics.")
