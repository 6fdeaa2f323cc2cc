"""Streamlit glue shared by the pages: cache root, opened runs and cached views, the shared view state, errors
(views/nav.py: moving between pages).

The view (run key, query, token, sample, job) lives in st.session_state["view"] and is mirrored into the URL
(st.query_params) so that a copied link reopens the same view. This module is not a page.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import streamlit as st

import bif
from bif.core import influence
from bif.core.files import read_json
from bif.errors import as_bif_error, user_message
from bif.layout import Store
from bif.render import visible
from bif.service import jobs
from bif.store import catalog

log = logging.getLogger("bif.app")
VIEW_KEYS = ("run", "q", "token", "span", "sample", "job", "by", "k", "q2", "run2")
INT_KEYS = ("q", "token", "sample", "k", "q2")
FLASH_ERROR = "flash_error"  # session key: a callback's error, shown by views.nav.follow_goto on the next run


def cache_root() -> Path:
    """Where runs, jobs, models and uploads live: $BIF_CACHE, default ./cache."""
    return Path(os.environ.get("BIF_CACHE", "cache"))


# ------------------------------------------------------------------------------------------------ view state


def view() -> dict:
    """The shared view state; on a session's first run it is read from the URL."""
    if "view" not in st.session_state:
        qp = st.query_params
        v = {k: qp.get(k) or None for k in VIEW_KEYS}
        for k in INT_KEYS:
            try:
                v[k] = int(v[k]) if v[k] is not None else None
            except ValueError:
                v[k] = None
        v["q"] = v["q"] or 0
        v["span"] = parse_span(v["span"])
        v["by"] = "one" if v["by"] == "one" else None  # colour the completion by one sample (else: all)
        try:
            v["job"] and jobs.job_dir(v["job"], cache_root())
        except ValueError:
            v["job"] = None
        st.session_state["view"] = v
    return st.session_state["view"]


def parse_span(text) -> tuple[int, int] | None:
    """'3-7' (a URL's span) -> (3, 7); None for anything else."""
    try:
        a, b = (int(x) for x in str(text).split("-"))
        return (a, b) if 0 <= a < b else None
    except ValueError:
        return None


def selection() -> tuple[int, int] | None:
    """The selected completion token or span of the view as (first, last) loss positions, or None (all)."""
    v = view()
    if v.get("span"):
        return tuple(v["span"])
    return (v["token"], v["token"]) if v.get("token") is not None else None


def select(sel: tuple[int, int] | None) -> None:
    """Make `sel` (None, (t, t) or (first, last)) the view's selection; the URL gets token= or span=."""
    if sel is None:
        set_view(token=None, span=None)
    elif sel[0] == sel[1]:
        set_view(token=int(sel[0]), span=None)
    else:
        set_view(token=None, span=(int(sel[0]), int(sel[1])))


def set_view(**changes) -> None:
    view().update(changes)


def to_url(**values) -> None:
    """Make the URL's query string exactly these values (None values are left out)."""
    wanted = {k: str(v) for k, v in values.items() if v is not None}
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)


def share_link(**values) -> str:
    """The page's URL with these values in its query string (just the query string when the host is unknown)."""
    query = urlencode({k: v for k, v in values.items() if v is not None})
    base = getattr(st.context, "url", None) or ""
    return f"{base}?{query}"


# ---------------------------------------------------------------------------------------------------- runs


def store() -> Store:
    """The cache (bif.layout.Store) at cache_root()."""
    return Store(cache_root())


@st.cache_resource(max_entries=6, show_spinner="Opening the run…")
def _open_run(path: str, signature: str) -> bif.Run:
    return bif.open_run(path)


def open_run(key: str) -> bif.Run:
    """The finished run `key` (opened once per change, then shared). BIFError if missing or incomplete."""
    d = catalog.run_dir(key, cache_root())  # refuses anything but a run key; RunNotFound says where it looked
    files = store().run(key)
    if not files.request.exists():
        raise bif.BIFError(f"Run {key} in {cache_root()} failed before it started (it has no inputs). Delete it on "
                           "the Runs page, and start it again on the Run page.")
    return _open_run(str(d), catalog.run_signature(d))


def current_run() -> tuple[bif.Run, int] | None:
    """(run, query index) of the view, or None (with a message on the page) when there is none."""
    v = view()
    if not v.get("run"):
        st.info("No run is open yet. Start one on the **Run** page, or open a cached one on the **Runs** page.")
        st.page_link("views/run.py", label="Go to the Run page", icon=":material/play_circle:")
        return None
    run = open_run(v["run"])
    for note in run.quarantined:
        st.warning(note, icon=":material/warning:")
    if not 0 <= (v.get("q") or 0) < len(run.queries):
        set_view(q=0, token=None)
    return run, v.get("q") or 0


def run_id(run: bif.Run) -> str:
    """The key of a run's cached views: changes when it completes, gains a query set or (while provisional,
    bif.store.partial) gains draws."""
    partial = f"|partial {run.partial.chains} {run.partial.draws}" if run.partial else ""
    return f"{run.dir}|{catalog.run_signature(run.dir)}{partial}"


def positions(sel: tuple[int, int] | None):
    """The `token` argument of bif.influence for a selection: None, one position (int) or a span (tuple)."""
    if sel is None:
        return None
    return int(sel[0]) if sel[0] == sel[1] else tuple(range(int(sel[0]), int(sel[1]) + 1))


@st.cache_data(max_entries=16, show_spinner="Scoring every completion token…")
def token_table(_run: bif.Run, rid: str, q: int) -> dict:
    """{position: Scores of every training sample for that completion token}: all of a query's tokens at once,
    so that clicking a token is a look-up (cached per run and query)."""
    trace, row = _run.trace(q)
    return {int(p): influence.samples(trace, row, int(p)) for p in np.flatnonzero(trace.masks["query"][row])}


@st.cache_data(max_entries=512, show_spinner=False)
def sample_scores(_run: bif.Run, rid: str, q: int, token) -> bif.Scores:
    """Scores of every training sample for the whole completion (None), one token (int) or a span (tuple)."""
    if isinstance(token, int):
        return token_table(_run, rid, q)[token]
    trace, row = _run.trace(q)
    return influence.samples(trace, row, token)


@st.cache_data(max_entries=512, show_spinner=False)
def completion_scores(_run: bif.Run, rid: str, q: int, sample: int | None) -> bif.Scores:
    trace, row = _run.trace(q)
    return influence.query_tokens(trace, row, sample)


@st.cache_data(max_entries=2048, show_spinner=False)
def train_token_scores(_run: bif.Run, rid: str, q: int, sample: int, token) -> bif.Scores:
    trace, row = _run.trace(q)
    return influence.train_tokens(trace, sample, row, token)


@st.cache_data(max_entries=256, show_spinner=False)
def pair_scores(_run: bif.Run, rid: str, q: int, sample: int) -> bif.Scores:
    trace, row = _run.trace(q)
    return influence.pair(trace, sample, row)


@st.cache_data(max_entries=256, show_spinner=False)
def stability(_run: bif.Run, rid: str, q: int, token, k: int) -> dict:
    trace, row = _run.trace(q)
    return influence.stability(trace, row, k, token)


@st.cache_data(max_entries=64, show_spinner=False)
def query_fit(_run: bif.Run, rid: str, q: int):
    """How well the trained model predicts query q's completion, next to its training texts (QueryFit)."""
    from bif.core.diagnostics import query_fit as fit

    trace, row = _run.trace(q)
    return fit(trace, row)


def run_request(key: str) -> dict | None:
    """A run's request (what was asked, as stored with it), or None (also for anything that is not a run key)."""
    if not catalog.is_run_key(key):
        return None
    return _read_request(str(Store(cache_root().resolve()).run(key).request))


@st.cache_data(ttl=5, show_spinner=False)
def _read_request(path: str) -> dict | None:
    return read_json(Path(path))


def short(text: str, n: int, tail: bool = False) -> str:
    """`text` on one line (whitespace runs and newlines become one space), cut to about n characters with "…".

    tail=True keeps the end (for prompts, whose last words matter most); the cut never leaves a trailing space.
    """
    one = " ".join(visible(text).split())
    if len(one) <= n:
        return one
    if tail:
        cut = one[-n:]
        if one[-n - 1] != " " and " " in cut:  # do not start inside a word
            cut = cut.split(" ", 1)[1]
        return "…" + cut.lstrip()
    cut = one[:n]
    if one[n] != " " and " " in cut:  # do not end inside a word
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def query_label(prompt: str, completion: str, n_prompt: int = 40, n_completion: int = 30) -> str:
    """'…end of the prompt → start of the completion' on one line (plain text, for selectboxes and tables)."""
    return f"{short(prompt, n_prompt, tail=True)} → {short(completion, n_completion)}"


def preset_name(config: dict) -> str:
    """The preset whose settings equal `config` ('demo-cpu', or 'demo-cpu, seed 1' when only the seed differs),
    else 'custom'."""
    for name, p in bif.PRESETS.items():
        d = p.to_dict()
        if d == config:
            return name
        if {**d, "seed": config.get("seed")} == config:
            return f"{name}, seed {config.get('seed')}"
    return "custom"


# -------------------------------------------------------------------------------------------- page helpers


def explain(text: str) -> None:
    """The "What am I looking at?" box every page starts with."""
    with st.expander("What am I looking at?", expanded=False):
        st.markdown(text)


def show_error(e: BaseException) -> None:
    """Any error as one message that says what to do (bif.errors.user_message); unexpected ones are logged with
    their traceback, never shown."""
    if as_bif_error(e) is None:
        log.error("unexpected error in the app", exc_info=e)
    st.error(user_message(e, log="the server log"), icon=":material/error:")


def guarded(fn):
    """Decorator: errors inside fn (a page body or a fragment) become messages, never tracebacks."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - st.rerun/st.stop are BaseExceptions and pass through
            show_error(e)
    return wrapper


def callback(fn):
    """Decorator for widget callbacks: an error becomes a message shown at the top of the next page run.

    Pages act on clicks through callbacks (they run before the script), so a click is never lost to a rerun.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            st.session_state[FLASH_ERROR] = e
    return wrapper


