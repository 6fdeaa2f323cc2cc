"""Run page: choose model, training data, query and sampler; see the cost; run it in the background."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import streamlit as st

import bif
from bif.store import catalog
from bif.service import jobs
from bif.core.config import DTYPES, PRECONDITIONERS, TRACE_DTYPES
from bif.layout import BUILD_INFO, model_config
from views import common, jobview

MODELS = {"demo": "Demo: tiny Llama trained on chatterbot conversations", "smollm2": "SmolLM2-135M-Instruct",
          "local": "A model directory on disk"}
DATA = {"demo": "Demo corpus (chatterbot conversations)", "upload": "Upload a file", "path": "A file on disk"}
CHOICES = {"preconditioner": PRECONDITIONERS, "score_dtype": DTYPES, "trace_dtype": TRACE_DTYPES}
KEEP = {"persist_state": "session"}  # keep what was typed when the user visits another page and comes back


def demo_queries() -> list[tuple[str, str]]:
    """The demo model's example queries as (prompt, completion); empty when none are defined."""
    try:
        from bif.lm.corpus import DEMO_QUERIES
    except ImportError:
        return []
    out = []
    for q in DEMO_QUERIES:
        if isinstance(q, dict):  # completion = the source's answer; training texts are prompt + " " + answer
            out.append((q.get("prompt", ""), q.get("completion") or (" " + q["answer"] if q.get("answer") else "")))
        elif hasattr(q, "prompt"):
            out.append((q.prompt, q.completion))
        elif isinstance(q, (tuple, list)) and len(q) == 2:
            out.append((str(q[0]), str(q[1])))
    return out


@st.cache_data(show_spinner="Reading the training data…", max_entries=16)
def data_summary(source: str, mtime: float) -> tuple[int, float]:
    """(number of texts, rough tokens per text) of a training source."""
    texts = bif.load_texts(source)
    return len(texts), sum(len(t) for t in texts) / max(len(texts), 1) / 3.5 + 1


@st.cache_resource(show_spinner="Loading the model (the demo model is built on first use, a few minutes)…",
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


def generate(spec: bif.ModelSpec) -> None:
    try:
        text = bif.generate_completion(loaded_model(spec, str(common.cache_root())), st.session_state["prompt"])
        st.session_state["completion"] = text
        st.session_state.pop("gen_error", None)
    except Exception as e:  # noqa: BLE001 - shown next to the button
        st.session_state["gen_error"] = e


def model_section() -> bif.ModelSpec:
    st.subheader("1 · Model")
    choice = st.radio("Model", list(MODELS), format_func=MODELS.get, key="model_choice", **KEEP,
                      help="The causal language model whose completion you want to explain. Everything runs "
                           "offline on this machine.")
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
        max_length = st.number_input("Tokens per example", 2, 4096, 64, key="max_length", **KEEP,
                                     help="Longer training texts are cut to this many tokens.")
        score_all = st.checkbox("Score every training sample", value=False, key="score_all", **KEEP,
                                help="Unticked: a random subset (plus the texts most similar to the query) is "
                                     "ranked; all texts still drive the sampler. Scoring all costs more per draw.")
        n_scored = None if score_all else st.number_input("Samples to rank", 2, 1_000_000, 256, key="n_scored", **KEEP,
                                                          help="How many training samples are scored.")
        seed = st.number_input("Subset seed", 0, 2**31 - 1, 0, key="subset_seed", **KEEP,
                               help="Which random subset.")
        near = st.number_input("Similar samples added per query", 0, 1000, 8, key="nearest", **KEEP,
                               help="Also rank the training texts sharing most words with the query.")
    if problem:
        raise bif.BIFError(problem)
    return bif.DataSpec(source, int(max_length), None if n_scored is None else int(n_scored), int(seed), int(near))


def query_section(model: bif.ModelSpec) -> bif.Query:
    st.subheader("3 · Query")
    examples = demo_queries() if model.name_or_path == "demo" else []
    if "prompt" not in st.session_state:
        st.session_state["prompt"], st.session_state["completion"] = examples[0] if examples else ("", "")
    if examples:
        st.selectbox("Example queries", examples, index=None, key="example", on_change=pick_example,
                     format_func=lambda e: f"{e[0].strip()[:50]} → {e[1].strip()[:30]}",
                     placeholder="Pick an example…", help="Prompts and completions prepared for the demo model.")
    st.text_area("Prompt", key="prompt", **KEEP, height=80,
                 help="The context the model sees. It is not scored.")
    st.text_area("Completion", key="completion", **KEEP, height=80,
                 help="The text whose tokens are explained: which training samples made each token likely?")
    first = model.name_or_path == "demo" and not demo_built()
    st.button("Generate the completion with the model", on_click=generate, args=(model,),
              help="Greedy decoding, up to 32 tokens. Replaces the completion above." +
                   (" The demo model is not trained yet: the first generation trains it (several minutes)."
                    if first else ""))
    if "gen_error" in st.session_state:
        common.show_error(st.session_state.pop("gen_error"))
    return bif.Query(st.session_state["prompt"], st.session_state["completion"])


def sampler_section(model: bif.ModelSpec) -> tuple[str, dict]:
    st.subheader("4 · Sampler")
    smollm2 = model.name_or_path == "smollm2"
    first = "smollm2-gpu" if smollm2 else "demo-cpu"
    name = st.selectbox("Preset", list(bif.PRESETS), index=list(bif.PRESETS).index(first), key="preset", **KEEP,
                        help="demo-cpu: a few minutes on a CPU, strongest influences only (two seeds agreed on 74 % of "
                             "its findings). careful-cpu: about 3× longer, tighter error bars (81 %; use it for "
                             "findings). paper-gpu: for a GPU. smollm2-gpu: paper-gpu with a 10× smaller "
                             "step, for SmolLM2. smoke: seconds, for checks, not findings.")
    if smollm2 and bif.PRESETS[name].step_size > bif.PRESETS["smollm2-gpu"].step_size:
        st.warning("This preset's step size was calibrated on the demo model. On SmolLM2 a step of 3e-4 drove the "
                   "sampling loss from 3.7 to 14 within 3 steps (the chain left the trained basin; "
                   "`python -m bif bench --basin smollm2`): use smollm2-gpu, or set step_size to 3e-5 under Advanced.", icon=":material/warning:")
    base, values, bad = bif.PRESETS[name], {}, []
    with st.expander("Advanced sampler settings"):
        for f in dataclasses.fields(bif.SamplerConfig):
            default, kw = getattr(base, f.name), {"key": f"cfg.{name}.{f.name}", "help": bif.help_text(f.name), **KEEP}
            if f.name in CHOICES:
                values[f.name] = st.selectbox(f.name, CHOICES[f.name], CHOICES[f.name].index(default), **kw)
            elif f.name == "param_patterns":
                text = st.text_input(f.name, ", ".join(default), **{**kw, "help": kw["help"] + " Comma-separated."})
                values[f.name] = [p.strip() for p in text.split(",") if p.strip()]
            elif isinstance(default, str):
                values[f.name] = st.text_input(f.name, default, **kw)
            elif isinstance(default, int):
                values[f.name] = int(st.number_input(f.name, value=default, step=1, **kw))
            else:
                text = st.text_input(f.name, f"{default:g}", **kw)
                try:
                    values[f.name] = float(text)
                except ValueError:
                    bad.append(f"{f.name}: {text!r} is not a number")
    if bad:
        raise bif.BIFError("Advanced sampler settings: " + "; ".join(bad) + ".")
    cfg = bif.SamplerConfig.from_dict(values)  # ConfigError (a BIFError) says what is out of range
    return name if cfg == base else f"{name} (modified)", cfg.to_dict()


def start_section(model, data, query, preset, config) -> None:
    st.subheader("5 · Run")
    root = common.cache_root()
    request = jobs.make_request("run", model.to_dict(), data.to_dict(), [query.to_dict()], config, root,
                                preset=preset)
    if not query.completion.strip():
        st.info("Type a completion (or generate one) to see the cost and start.")
        return
    cached = catalog.find_cached(request, root)
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
    if cached:
        request = {**request, "kind": "replay", "run_key": cached["run_key"]}
        st.info("A run with this model, data and sampler is cached: the new query is added by replaying its chains "
                "(the training set is not re-scored).")
    src = data.source
    mtime = Path(src).stat().st_mtime if src != "demo" and Path(src).exists() else 0.0
    n_train, tokens = data_summary(src, mtime)
    cost = jobs.estimate_cost(request, n_train, tokens)
    extra = " + training the demo model once (several minutes)" if model.name_or_path == "demo" and not demo_built() \
        else ""
    st.markdown(f"**Estimated time: about {jobs.format_seconds(cost['seconds'])}**{extra} "
                f"({n_train} training texts, {cost['n_scored']} ranked, {cost['steps']} SGLD steps, "
                f"{cost['draws']} draws in all).", help=cost["note"])
    label = "Add this query by replay" if request["kind"] == "replay" else "Start the run"
    st.button(label, type="primary", key="start", on_click=start, args=(request, root))


def upload_message(text: str) -> str:
    """A message about an uploaded file, with the stored name (a content hash) replaced by the name uploaded."""
    for stored, name in st.session_state.get("upload_names", {}).items():
        text = text.replace(stored, name)
    return text


@common.callback
def start(request: dict, root) -> None:
    common.set_view(job=jobs.start_job(request, root))


@common.guarded
def main() -> None:
    st.title("Run BIF on a completion")
    common.explain(
        "Pick a **model**, the **training data** it learned from, and a **query**: a prompt and the completion you "
        "want explained. The **sampler** then perturbs the model's weights a little around the trained ones "
        "(localized SGLD) and watches which training texts and which completion tokens get better or worse "
        "together. Texts whose loss moves *with* the completion's loss support it. The run happens in a "
        "background process: you can close the tab and come back (the Runs page lists running jobs).")
    left, right = st.columns(2, gap="large")
    parts = {}
    for col, name, build in ((left, "model", model_section), (left, "data", data_section)):
        with col:
            try:
                parts[name] = build()
            except bif.BIFError as e:
                st.warning(str(e))
    with right:
        query = query_section(parts.get("model", bif.ModelSpec()))
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
            q = ((j["request"] or {}).get("queries") or [{}])[0]
            c1, c2 = st.columns([4, 1])
            c1.caption(f"{j['id']} · {j['state']} · {j['progress'].get('fraction', 0):.0%} · "
                       f"{q.get('completion', '')[:40]!r}")
            c2.button("Watch", key=f"watch-{j['id']}", on_click=common.set_view, kwargs={"job": j["id"]})


main()
