"""'Ask about another completion' on the Influence page: a new query on the open run.

With stored draws (bif.core.draws) the query is scored here, in this process, by one forward pass per draw
(seconds), and the page switches to it. Without them a replay job re-runs every SGLD step (minutes); the box
says so, with the estimate, and the Run page follows the job. Not a page: views/influence.py calls `ask_box`.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st

import bif
from bif.service import jobs, jobspec
from bif.store.replay import draws_note, query_method, replay_estimate_s
from views import common
from views.ui import html as ui


_LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bif-model")
_MODELS: dict[tuple, Future] = {}  # the models of the runs asked about, loaded once per app process
_MODELS_LOCK = threading.Lock()
MAX_MODELS = 2


def _load(spec: str, root: str, device: str):
    return bif.load_model(bif.ModelSpec(**json.loads(spec)), root, device=device), threading.Lock()


def _future(run: bif.Run) -> Future:
    from bif.core.sampler import resolve_device

    key = (json.dumps(run.request["model"], sort_keys=True), str(common.cache_root()),
           str(resolve_device(run.config.device)))
    with _MODELS_LOCK:
        if key not in _MODELS or (_MODELS[key].done() and _MODELS[key].exception() is not None):
            while len(_MODELS) >= MAX_MODELS:
                _MODELS.pop(next(iter(_MODELS)))
            _MODELS[key] = _LOADER.submit(_load, *key)
        return _MODELS[key]


def preload(run: bif.Run) -> None:
    """Start loading the run's model in the background (the page does not wait for it)."""
    _future(run)


def model_of(run: bif.Run):
    """(the run's model, loaded once per app process, and the lock that serializes questions on it)."""
    return _future(run).result()


@common.callback
def _ask(run: bif.Run, method: str) -> None:
    prompt, completion = st.session_state.get("ask_prompt", ""), st.session_state.get("ask_completion", "")
    if not prompt.strip() or not completion.strip():
        raise bif.BIFError("Type both a prompt and the completion to explain.")
    query = bif.Query(prompt, completion)
    if method == "replay":
        spec = jobspec.ask_job_spec(run, [query], common.cache_root())
        common.set_view(job=jobs.start_job(spec, common.cache_root()))
        st.session_state["ask_result"] = ("replay", None)
        return
    t0 = time.perf_counter()
    loaded, lock = model_of(run)
    with lock:  # one question at a time on the shared model (scoring may put draws into it, then w* again)
        new = bif.add_queries(run, [query], common.cache_root(), method="draws", loaded=loaded)
    index = next(i for i, q in enumerate(new.queries) if q == query)
    common.set_view(q=index, token=None, sample=None)
    st.session_state["ask_result"] = (new.answered_by(index), time.perf_counter() - t0)


def ask_box(run: bif.Run, q: int) -> None:
    """The box: prompt (the current query's by default) and completion; Enter or the button answers."""
    method = query_method(run)
    if method == "draws":
        preload(run)  # loaded in the background while the user reads and types, so that Enter only scores
    with st.expander("Ask about another completion", expanded=bool(st.session_state.get("ask_result"))):
        done = st.session_state.pop("ask_result", None)
        if done and done[0] == "replay":
            st.info("The replay job started: follow it on the **Run** page; the new query appears in the Query "
                    "list here when it is done.")
        elif done:
            how = "stored draws" if done[0] == "draws" else "the run itself (this query was already there)"
            st.success(f"Answered from {how} in {done[1]:.1f} s: the completion above is the new one.")
        if method == "draws":
            st.caption("This run stored its draws: a new completion is scored by one forward pass per draw "
                       f"({run.config.chains} × {run.config.draws}), no sampling — seconds.")
        else:
            st.caption(f"This run has no stored draws ({ui.md_escape(draws_note(run.dir))}): a new completion is "
                       "added by replaying every SGLD step, about "
                       f"{jobs.format_seconds(replay_estimate_s(run))} (the time the run's sampling took).")
        with st.form("ask", border=False):
            if "ask_prompt" not in st.session_state:
                st.session_state["ask_prompt"] = run.queries[q].prompt
            st.text_area("Prompt", key="ask_prompt", height=80)
            st.text_input("Completion to explain", key="ask_completion",
                          help="The text after the prompt whose tokens you want explained (start it with a space "
                               "if the model would).")
            st.form_submit_button("Ask" if method == "draws" else "Start the replay", type="primary",
                                  on_click=_ask, args=(run, method))

