"""Run page: choose model, training data, query and sampler; see the cost; run it in the background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

import bif
from bif.layout import model_config
from bif.lm import registry
from bif.lm.data import scored_indices, source_mtime
from bif.service import cost, jobs, jobspec
from bif.store import catalog
from bif.store.request import RunRequest
from views import common, jobview, nav, runform, trust
from views.runform import KEEP
from views.ui.html import md_escape

MODELS = {**{m.name: m.choice for m in registry.MODELS.values()}, "local": "A model directory on disk"}
DATA = {**{d.name: d.label for d in registry.DATA.values()}, "upload": "Upload a file", "path": "A file on disk"}


@st.cache_data(show_spinner="Reading the training data…", max_entries=16)
def data_summary(source: str, mtime: float) -> tuple[int, float]:
    """(number of texts, rough tokens per text) of a training source."""
    return cost.training_size(bif.load_texts(source))


@st.cache_resource(show_spinner="Loading the model (on first use the demo model is trained and SmolLM2 converted: "
                                "minutes)…",
                   max_entries=1)
def loaded_model(spec: bif.ModelSpec, root: str):
    return bif.load_model(spec, root)


def save_upload(upload) -> str:
    return str(catalog.save_upload(common.cache_root(), upload.getvalue(), upload.name).resolve())


def pick_example() -> None:
    ex = st.session_state.get("example")
    if ex is not None:
        st.session_state["prompt"], st.session_state["completion"] = ex


def generate(spec: bif.ModelSpec, data: bif.DataSpec | None = None) -> None:
    try:
        loaded = loaded_model(spec, str(common.cache_root()))
        text = bif.generate_completion(loaded, st.session_state["prompt"])
        st.session_state["completion"] = text
        st.session_state.pop("prompt_fit", None)
        if data is not None:  # how familiar the prompt is to the model, next to 32 of its training texts
            from bif.lm.fit import prompt_fit

            st.session_state["prompt_fit"] = (st.session_state["prompt"],
                                              prompt_fit(loaded, st.session_state["prompt"], bif.load_texts(data.source)))
        st.session_state.pop("gen_error", None)
    except Exception as e:  # noqa: BLE001 - shown next to the button
        st.session_state["gen_error"] = e


def model_section() -> bif.ModelSpec:
    st.subheader("1 · Model")
    choice = st.radio("Model", list(MODELS), format_func=MODELS.get, key="model_choice", **KEEP,
                      on_change=runform.model_changed,
                      help="The causal language model whose completion you want to explain. Everything runs "
                           "offline on this machine. Choosing one picks its calibrated sampler preset.")
    if choice != "local":
        return bif.ModelSpec(choice)
    path = st.text_input("Model directory", key="model_dir", **KEEP, placeholder="/path/to/model",
                         help="A folder saved with save_pretrained: config.json, weights and tokenizer files.")
    if not path.strip():
        raise bif.BIFError("Type the path of a model directory (or pick the demo model).")
    folder = Path(path.strip()).expanduser().resolve()
    if not folder.is_dir():
        raise bif.BIFError(f"There is no folder {str(folder)!r} on this machine. Type the path of a model directory.")
    if not model_config(folder).is_file():
        raise bif.BIFError(f"{str(folder)!r} has no config.json: it is not a transformers model directory "
                           "(one saved with save_pretrained).")
    return bif.ModelSpec(str(folder))


def data_section() -> bif.DataSpec:
    st.subheader("2 · Training data")
    choice = st.radio("Training set", list(DATA), format_func=DATA.get, key="data_choice", **KEEP,
                      help="The texts whose influence is measured: one example per paragraph (.txt; per line if "
                           "there are no blank lines), or a 'text' column (.jsonl, .csv, .parquet).")
    source, problem = choice, None  # a built-in's name, unless a file is chosen
    if choice == "upload":
        upload = st.file_uploader("Training file", type=["txt", "jsonl", "csv", "parquet"], key="upload")
        if upload is None:
            problem = "Upload a training file (.txt, .jsonl, .csv or .parquet)."
        else:
            source = save_upload(upload)
            st.session_state.setdefault("upload_names", {})[Path(source).name] = upload.name
    elif choice == "path":
        path = st.text_input("Training file path", key="data_path", placeholder="/path/to/train.txt",
                             **KEEP)
        if not path.strip():
            problem = "Type the path of a training file (or pick the demo corpus)."
        source = str(Path(path.strip()).expanduser().resolve())
    with st.expander("Data options"):
        for key, value in (("max_length", 64), ("score_all", False), ("n_scored", 256), ("subset_seed", 0),
                           ("nearest", 8)):
            st.session_state.setdefault(key, value)
        max_length = st.number_input("Tokens per example", 2, 4096, key="max_length", **KEEP,
                                     help="Longer training texts are cut to this many tokens.")
        score_all = st.checkbox("Score every training sample", key="score_all", **KEEP,
                                help="Unticked: a random subset (with the texts most similar to the query, if "
                                     "asked below) is ranked; all texts still drive the sampler. Scoring all costs "
                                     "more per draw.")
        n_scored = None if score_all else st.number_input("Samples to rank", 2, 1_000_000, key="n_scored", **KEEP,
                                                          help="How many training samples are scored.")
        seed = st.number_input("Subset seed", 0, 2**31 - 1, key="subset_seed", **KEEP,
                               help="Which random subset.")
        near = st.number_input("Query neighbours (samples chosen by word overlap)", 0, 1000, key="nearest",
                               **KEEP, help="query_neighbours: this many of the ranked places go to the training "
                                            "texts sharing most words with the query, so that likely sources are "
                                            "ranked. The ranked set then depends on the query; every view says so. "
                                            "0 = a purely random subset.")
    if problem:
        raise bif.BIFError(problem)
    return bif.DataSpec(source, int(max_length), None if n_scored is None else int(n_scored), int(seed),
                        query_neighbours=int(near))


def fit_note() -> None:
    """After Generate: say when the prompt is much harder for the model than its training texts."""
    prompt, fit = st.session_state.get("prompt_fit") or (None, None)
    if fit is None or prompt != st.session_state.get("prompt"):
        return
    numbers = (f"perplexity {fit.perplexity:.0f} per token, against {np.exp(fit.train_median):.0f} for a typical "
               f"training text (95 % of 32 sampled are below {np.exp(fit.train_high):.0f})")
    if fit.outside:
        st.info(f"This prompt looks outside what the model learned ({numbers}): the completion is likely a guess, "
                "and few training texts will stand out as its source.", icon=":material/help:")
    else:
        st.caption(f"The prompt is familiar to the model: {numbers}.")


def query_section(model: bif.ModelSpec, data: bif.DataSpec | None = None) -> bif.Query:
    st.subheader("3 · Query")
    built_in = registry.model(model.name_or_path)
    examples = [(q.prompt, q.completion) for q in built_in.examples()] if built_in and built_in.examples else []
    if "prompt" not in st.session_state:
        st.session_state["prompt"], st.session_state["completion"] = examples[0] if examples else ("", "")
    if examples:
        st.selectbox("Example queries", examples, index=None, key="example", on_change=pick_example,
                     format_func=lambda e: f"{e[0].strip()[:50]} → {e[1].strip()[:30]}",
                     placeholder="Pick an example…", help="The demo's tuning queries (they chose the demo-cpu preset): "
                                                          "paraphrased questions answered with their source's answer.")
    st.text_area("Prompt", key="prompt", **KEEP, height=80,
                 help="The context the model sees. It is not scored.")
    st.text_area("Completion", key="completion", **KEEP, height=80,
                 help="The text whose tokens are explained: which training samples made each token likely?")
    first = built_in and built_in.first_use and not built_in.built(common.cache_root(), model.seed)
    st.button("Let the model write it", icon=":material/auto_awesome:", on_click=generate, args=(model, data),
              help="The model writes the completion (greedy decoding, up to 32 tokens), replacing the one above." +
                   (f" The model is not built yet: the first generation starts with {built_in.first_use}."
                    if first else ""))
    if "gen_error" in st.session_state:
        common.show_error(st.session_state.pop("gen_error"))
    fit_note()
    return bif.Query(st.session_state["prompt"], st.session_state["completion"])


@st.cache_data(show_spinner=False, max_entries=32)
def ranked_count(source: str, mtime: float, data: dict, query: dict) -> int:
    """How many training samples a run would rank (the same choice compute_run makes)."""
    texts = bif.load_texts(source)
    return len(scored_indices(texts, bif.DataSpec.from_dict(data), [bif.Query(**query)])[0])


def start_section(model, data, query, preset, config) -> None:
    st.subheader("5 · Run")
    root = common.cache_root()
    request = RunRequest(model, data, (query,), config)  # the user's choice, as it goes to the sampler
    if not query.completion.strip():
        st.info("Type a completion (or generate one) to see the cost and start.")
        return
    cached = catalog.find_cached(request, root)
    if cached and (bad := catalog.damaged_files(cached["run_key"], root)):
        st.warning(f"The cached run {cached['run_key']} for this request is damaged: {', '.join(bad)} changed after "
                   "it was written, so it cannot be opened. Delete it and compute it again (it takes as long as a new "
                   "run).", icon=":material/warning:")
        st.button("Delete and recompute", type="primary", key="recompute", on_click=recompute,
                  args=(cached["run_key"], jobspec.run_job_spec(request, root, preset=preset), root))
        return
    job = common.view().get("job")
    just_done = job and (jobs.job_status(job, root).get("result") or {}).get("run_key") == (cached or {}).get("run_key")
    if cached and cached["exact"] and just_done:
        st.caption("This run is in the cache now (computed by the job below).")
        return
    if cached and cached["exact"]:
        st.success("This exact run is already in the cache: it opens at once.")
        st.button("Open the cached run", type="primary", key="open_cached", on_click=nav.go,
                  args=("views/influence.py",), kwargs={"run": cached["run_key"], "q": cached["query"], "token": None,
                                                        "sample": None, "job": None})
        return
    spec = jobspec.replay_job_spec(request, cached["run_key"], root, preset) if cached else \
        jobspec.run_job_spec(request, root, preset)
    if cached:
        st.info("A run with this model, data and sampler is cached: the new query is added by replaying its chains "
                "(the training set is not re-scored).")
    src, mtime = data.source, source_mtime(data.source)
    n_train, tokens = data_summary(src, mtime)
    estimate = cost.estimate_cost(spec, n_train, tokens)
    ranked = len(cached_run_ids(cached["run_key"])) if spec.kind == "replay" else \
        ranked_count(src, mtime, data.to_dict(), query.to_dict())
    built_in = registry.model(model.name_or_path)
    extra = f" + {built_in.first_use}" if built_in and built_in.first_use and not built_in.built(root, model.seed) \
        else ""
    st.markdown(f"**Estimated time: about {jobs.format_seconds(estimate['seconds'])}**{extra} "
                f"({n_train} training texts, {ranked} ranked, {estimate['steps']} SGLD steps, "
                f"{estimate['draws']} draws in all).", help=estimate["note"])
    runform.cost_here(spec, n_train, tokens, estimate["seconds"])
    trust.before_start(spec.run.config)
    label = "Add this query by replay" if spec.kind == "replay" else "Start the run"
    st.button(label, type="primary", key="start", on_click=start, args=(spec, root))


def cached_run_ids(key: str) -> list:
    return (common.run_request(key) or {}).get("scored_ids") or []


def upload_message(text: str) -> str:
    """A message about an uploaded file, with the stored name (a content hash) replaced by the name uploaded."""
    for stored, name in st.session_state.get("upload_names", {}).items():
        text = text.replace(stored, name)
    return text


@common.callback
def start(spec: jobspec.JobSpec, root) -> None:
    common.set_view(job=jobs.start_job(spec, root))


@common.callback
def recompute(key: str, spec: jobspec.JobSpec, root) -> None:
    """Delete a damaged cached run and start computing it again (RunBusy if a job is computing it now)."""
    catalog.delete_run(key, root)
    common.set_view(job=jobs.start_job(spec, root), run=None)


@common.guarded
def main() -> None:
    st.title("Run BIF on a completion")
    common.explain(
        "Pick a **model**, the **training data** it learned from, and a **query**: a prompt and the completion you "
        "want explained. The **sampler** then perturbs the model's weights a little around the trained ones "
        "(localized SGLD) and watches which training texts and which completion tokens get better or worse "
        "together. Texts whose loss moves *with* the completion's loss support it. The run happens in a "
        "background process: you can close the tab and come back (the Runs page lists running jobs).")
    runform.restore_form(common.view().get("job"))
    left, right = st.columns(2, gap="large")
    parts = {}
    for col, name, build in ((left, "model", model_section), (left, "data", data_section)):
        with col:
            try:
                parts[name] = build()
            except bif.BIFError as e:
                st.warning(str(e))
    with right:
        query = query_section(parts.get("model", bif.ModelSpec()), parts.get("data"))
        try:
            preset, config = runform.sampler_section(parts.get("model", bif.ModelSpec()))
        except bif.BIFError as e:
            st.error(str(e))
            preset = config = None
    if len(parts) == 2 and config is not None:
        try:
            start_section(parts["model"], parts["data"], query, preset, config)
        except bif.BIFError as e:  # e.g. an unreadable training file: say so, keep the rest of the page
            st.error(upload_message(str(e)), icon=":material/error:")
    job = common.view().get("job")
    if job:
        jobview.panel(job)
    common.to_url(job=job)
    others = [j for j in jobs.list_jobs(common.cache_root(), active_only=True) if j["id"] != job]
    if others:
        st.markdown("**Other jobs running in the background**")
        for j in others:
            c1, c2 = st.columns([4, 1])
            c1.caption(f"{j['id']} · {md_escape(jobview.status_line(j))} · {md_escape(jobview.what(j))}")
            c2.button("Watch", key=f"watch-{j['id']}", on_click=common.set_view, kwargs={"job": j["id"]})


main()
