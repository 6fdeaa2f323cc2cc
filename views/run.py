"""Run page: choose model, training data, query and sampler; see the cost; run it in the background."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import streamlit as st

import bif
from bif.store import catalog
from bif.service import jobs, jobspec
from bif.store.request import RunRequest
from bif.core.config import DTYPES, PRECONDITIONERS, TRACE_DTYPES, preset_for
from bif.core.config import MEASURED
from bif.layout import BUILD_INFO, model_config
from bif.lm.data import scored_indices
from views import common, jobview, trust
from views.ui.html import md_escape

MODELS = {"demo": "Demo: tiny Llama trained on chatterbot conversations", "smollm2": "SmolLM2-135M-Instruct",
          "local": "A model directory on disk"}
DATA = {"demo": "Demo corpus (chatterbot conversations)", "upload": "Upload a file", "path": "A file on disk"}
CHOICES = {"preconditioner": PRECONDITIONERS, "score_dtype": DTYPES, "trace_dtype": TRACE_DTYPES}
AGREE = MEASURED["seed_agreement"]
KEEP = {"persist_state": "session"}  # keep what was typed when the user visits another page and comes back
PLAIN = {"step_size": "Step size", "nbeta": "Pull towards low training loss", "gamma": "Pull back to the trained weights",
         "chains": "Independent chains", "draws": "Draws kept per chain", "burn_in": "Warm-up steps (discarded)",
         "steps_between": "Steps between kept draws", "batch_size": "Training texts per step",
         "seed": "Random seed", "preconditioner": "Step scaling", "rmsprop_alpha": "Step scaling: memory",
         "rmsprop_eps": "Step scaling: stabilizer", "param_patterns": "Only these parameters (empty = all)",
         "noise_scale": "Noise multiplier (1 = exact)", "score_batch_size": "Texts per scoring pass",
         "score_dtype": "Scoring precision", "trace_dtype": "Precision of the stored losses", "device": "Device",
         "keep_draws": "Keep the sampled weights (new questions in seconds)",
         "draws_dtype": "Precision of the kept weights"}  # plain labels; the code name is in each help text


def demo_queries() -> list[tuple[str, str]]:
    """The demo model's example queries as (prompt, completion): the TUNING set (it chose demo-cpu)."""
    from bif.evaluation.queries import TUNING_PARAPHRASES, paraphrase_queries

    return [(q.prompt, q.completion) for q in paraphrase_queries(TUNING_PARAPHRASES)[0]]


@st.cache_data(show_spinner="Reading the training data…", max_entries=16)
def data_summary(source: str, mtime: float) -> tuple[int, float]:
    """(number of texts, rough tokens per text) of a training source."""
    texts = bif.load_texts(source)
    return len(texts), sum(len(t) for t in texts) / max(len(texts), 1) / 3.5 + 1


@st.cache_resource(show_spinner="Loading the model (on first use the demo model is trained and SmolLM2 converted: "
                                "minutes)…",
                   max_entries=1)
def loaded_model(spec: bif.ModelSpec, root: str):
    return bif.load_model(spec, root)


def demo_built() -> bool:
    """Whether the demo model is already trained (else the first run or generation trains it: minutes)."""
    try:
        from bif.lm.builtin import demo_model_path
        return (demo_model_path(common.cache_root()) / BUILD_INFO).is_file()
    except (ImportError, AttributeError):
        return True


def save_upload(upload) -> str:
    data = upload.getvalue()
    path = common.store().upload(hashlib.sha256(data).hexdigest()[:16], Path(upload.name).suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return str(path.resolve())


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


def model_changed() -> None:
    """A new model starts from its own calibrated preset (SmolLM2: smollm2-gpu), not the demo model's."""
    st.session_state["preset"] = preset_for(st.session_state.get("model_choice", "demo"))


def restore_form(job_id: str | None) -> None:
    """When a job is opened (?job=ID), the form shows that job's request, not the demo defaults.

    Runs before any widget is drawn, once per job id."""
    if not job_id or st.session_state.get("form_job") == job_id:
        return
    st.session_state["form_job"] = job_id
    spec = jobs.job_status(job_id, common.cache_root()).get("spec")
    req = {"kind": spec.kind, "preset": spec.preset, **spec.run.to_json()} if spec else {}
    try:
        _fill_form(req)
    except (KeyError, TypeError, AttributeError):  # an older or partial request: keep the form as it is
        pass


def _fill_form(req: dict) -> None:
    if req.get("kind") != "run":
        return
    ss, model, data = st.session_state, req["model"]["name_or_path"], req["data"]
    ss["model_choice"] = model if model in ("demo", "smollm2") else "local"
    if ss["model_choice"] == "local":
        ss["model_dir"] = model
    ss["data_choice"] = "demo" if data["source"] == "demo" else "path"
    if data["source"] != "demo":
        ss["data_path"] = data["source"]
    ss["max_length"], ss["subset_seed"] = data["max_length"], data["subset_seed"]
    ss["nearest"] = bif.DataSpec.from_dict(data).query_neighbours
    ss["score_all"] = data["n_scored"] is None
    if data["n_scored"] is not None:
        ss["n_scored"] = data["n_scored"]
    q = (req.get("queries") or [{}])[0]
    ss["prompt"], ss["completion"] = q.get("prompt", ""), q.get("completion", "")
    name = str(req.get("preset") or "").replace(" (modified)", "")
    if name in bif.PRESETS:
        ss["preset"] = name
        for field, value in req["config"].items():
            ss[f"cfg.{name}.{field}"] = widget_value(value)


def widget_value(value):
    """A config value as its widget holds it (numbers typed as text, patterns comma-separated)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return value


def model_section() -> bif.ModelSpec:
    st.subheader("1 · Model")
    choice = st.radio("Model", list(MODELS), format_func=MODELS.get, key="model_choice", **KEEP,
                      on_change=model_changed,
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
    source, problem = "demo", None
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
    examples = demo_queries() if model.name_or_path == "demo" else []
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
    first = model.name_or_path == "demo" and not demo_built()
    st.button("Let the model write it", icon=":material/auto_awesome:", on_click=generate, args=(model, data),
              help="The model writes the completion (greedy decoding, up to 32 tokens), replacing the one above." +
                   (" The demo model is not trained yet: the first generation trains it (several minutes)."
                    if first else ""))
    if "gen_error" in st.session_state:
        common.show_error(st.session_state.pop("gen_error"))
    fit_note()
    return bif.Query(st.session_state["prompt"], st.session_state["completion"])


def sampler_section(model: bif.ModelSpec) -> tuple[str, bif.SamplerConfig]:
    st.subheader("4 · Sampler")
    smollm2 = model.name_or_path == "smollm2"
    st.session_state.setdefault("preset", preset_for(model.name_or_path))
    name = st.selectbox("Preset", list(bif.PRESETS), key="preset", **KEEP,
                        help="demo-cpu: a few minutes on a CPU, strongest influences only (on the 12 tuning "
                             f"queries two seeds agreed on {AGREE['demo-cpu'] * 100:.0f} % of its findings). "
                             f"careful-cpu: about 3× longer, tighter error bars ({AGREE['careful-cpu'] * 100:.0f} %; "
                             "use it for findings). Held-out figures: README, `python -m bif bench`. paper-gpu: for a "
                             "GPU. smollm2-gpu: paper-gpu with a 10× smaller step, for SmolLM2 "
                             "(picked for it automatically). smoke: seconds, for checks, not findings.")
    if smollm2 and bif.PRESETS[name].step_size > bif.PRESETS["smollm2-gpu"].step_size:
        st.warning("This preset's step size was calibrated on the demo model. On SmolLM2 a step of 3e-4 drove the "
                   "sampling loss from 3.7 to 14 within 3 steps (the chain left the trained basin; "
                   "`python -m bif bench --basin smollm2`): use smollm2-gpu, or set the step size to 3e-5 under "
                   "Advanced.", icon=":material/warning:")
    base, values, bad = bif.PRESETS[name], {}, []
    with st.expander("Advanced sampler settings"):
        for f in dataclasses.fields(bif.SamplerConfig):
            key = f"cfg.{name}.{f.name}"
            default = getattr(base, f.name)
            st.session_state.setdefault(key, widget_value(default))
            kw = {"key": key, "help": f"{bif.help_text(f.name)} Code name: `{f.name}`.", **KEEP}
            label = PLAIN.get(f.name, f.name)
            if f.name in CHOICES:
                values[f.name] = st.selectbox(label, CHOICES[f.name], **kw)
            elif f.name == "param_patterns":
                text = st.text_input(label, **{**kw, "help": kw["help"] + " Comma-separated."})
                values[f.name] = [p.strip() for p in text.split(",") if p.strip()]
            elif isinstance(default, str):
                values[f.name] = st.text_input(label, **kw)
            elif isinstance(default, int):
                values[f.name] = int(st.number_input(label, step=1, **kw))
            else:
                text = st.text_input(label, **kw)
                try:
                    values[f.name] = float(text)
                except ValueError:
                    bad.append(f"{label} ({f.name}): {text!r} is not a number")
    if bad:
        raise bif.BIFError("Advanced sampler settings: " + "; ".join(bad) + ".")
    cfg = bif.SamplerConfig.from_dict(values)  # ConfigError (a BIFError) says what is out of range
    return name if cfg == base else f"{name} (modified)", cfg


def use_approximation(settings: dict) -> None:
    """Callback: put the CPU approximation's settings into the form (Data options and Advanced settings)."""
    name = st.session_state.get("preset", "demo-cpu")
    st.session_state[f"cfg.{name}.param_patterns"] = ", ".join(settings["param_patterns"])
    st.session_state[f"cfg.{name}.batch_size"] = settings["batch_size"]
    st.session_state["score_all"] = False
    st.session_state["n_scored"] = settings["n_scored"]
    st.session_state["nearest"] = settings["query_neighbours"]


@st.cache_data(show_spinner=False, max_entries=32)
def ranked_count(source: str, mtime: float, data: dict, query: dict) -> int:
    """How many training samples a run would rank (the same choice compute_run makes)."""
    texts = bif.load_texts(source)
    return len(scored_indices(texts, bif.DataSpec.from_dict(data), [bif.Query(**query)])[0])


def cost_here(spec: jobspec.JobSpec, n_train: int, tokens: float, seconds: float) -> None:
    """Too slow for this machine: say so, where it belongs (a GPU), and what approximation fits here."""
    if seconds <= jobs.CPU_BUDGET_S or jobs.has_gpu():
        return
    approx = jobs.cpu_approximation(spec, n_train, tokens)
    text = (f"On this machine (CPU only, no GPU) this run takes about **{jobs.format_seconds(seconds)}**. A GPU is "
            "the place for it (`python -m bif run` there, then open the run here).")
    if approx and approx["seconds"] < seconds:
        text += (f" {'Affordable' if approx['seconds'] <= jobs.CPU_BUDGET_S else 'Cheaper'} here: the **CPU "
                 f"approximation** ({approx['label']}), about "
                 f"**{jobs.format_seconds(approx['seconds'])}**. It is an approximation and its results say so.")
    st.warning(text, icon=":material/timer:")
    if approx and approx["seconds"] < seconds:
        st.button("Use the CPU approximation", key="use_approx", on_click=use_approximation,
                  args=(approx["settings"],), help="Sets Only these parameters (param_patterns), Training texts per "
                                                   "step (batch_size) and Samples to rank; all can be changed.")


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
        st.button("Open the cached run", type="primary", key="open_cached", on_click=common.go,
                  args=("views/influence.py",), kwargs={"run": cached["run_key"], "q": cached["query"], "token": None,
                                                        "sample": None, "job": None})
        return
    spec = jobspec.replay_job_spec(request, cached["run_key"], root, preset) if cached else \
        jobspec.run_job_spec(request, root, preset)
    if cached:
        st.info("A run with this model, data and sampler is cached: the new query is added by replaying its chains "
                "(the training set is not re-scored).")
    src = data.source
    mtime = Path(src).stat().st_mtime if src != "demo" and Path(src).exists() else 0.0
    n_train, tokens = data_summary(src, mtime)
    cost = jobs.estimate_cost(spec, n_train, tokens)
    ranked = len(cached_run_ids(cached["run_key"])) if spec.kind == "replay" else \
        ranked_count(src, mtime, data.to_dict(), query.to_dict())
    extra = " + training the demo model once (several minutes)" if model.name_or_path == "demo" and not demo_built() \
        else ""
    st.markdown(f"**Estimated time: about {jobs.format_seconds(cost['seconds'])}**{extra} "
                f"({n_train} training texts, {ranked} ranked, {cost['steps']} SGLD steps, "
                f"{cost['draws']} draws in all).", help=cost["note"])
    cost_here(spec, n_train, tokens, cost["seconds"])
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
    restore_form(common.view().get("job"))
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
            preset, config = sampler_section(parts.get("model", bif.ModelSpec()))
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
