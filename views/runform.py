"""The Run page's form beyond what it shows in order: section 4 (the sampler), the CPU approximation's offer (which
changes the form), and restoring an opened job's choices into the form. Not a page; views/run.py draws it."""

from __future__ import annotations

import dataclasses

import streamlit as st

import bif
from bif.core.config import DTYPES, MEASURED, PRECONDITIONERS, TRACE_DTYPES
from bif.lm import registry
from bif.service import cost, jobs, jobspec
from views import common

CHOICES = {"preconditioner": PRECONDITIONERS, "score_dtype": DTYPES, "trace_dtype": TRACE_DTYPES}
TEST_AGREE, NULL_ANY = MEASURED["test_agreement"], MEASURED["test_null_queries"]  # held-out queries
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


def model_changed() -> None:
    """A new model starts from its own calibrated preset (SmolLM2: smollm2-gpu), not the demo model's."""
    st.session_state["preset"] = registry.preset_for(st.session_state.get("model_choice", registry.DEMO))


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
    ss["model_choice"] = model if registry.model(model) else "local"
    if ss["model_choice"] == "local":
        ss["model_dir"] = model
    ss["data_choice"] = data["source"] if registry.data(data["source"]) else "path"
    if ss["data_choice"] == "path":
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


def sampler_section(model: bif.ModelSpec) -> tuple[str, bif.SamplerConfig]:
    st.subheader("4 · Sampler")
    built_in = registry.model(model.name_or_path)
    st.session_state.setdefault("preset", registry.preset_for(model.name_or_path))
    name = st.selectbox("Preset", list(bif.PRESETS), key="preset", **KEEP,
                        help="demo-cpu: a few minutes on a CPU, strongest influences only (on 51 held-out "
                             f"queries two seeds agreed on {TEST_AGREE['demo-cpu'] * 100:.0f} % of its findings, "
                             f"and its null flagged something for {NULL_ANY['demo-cpu'] * 100:.1f} % of them). "
                             "careful-cpu: about 4× the draws, tighter error bars, about twice the findings (on the "
                             f"same queries {TEST_AGREE['careful-cpu'] * 100:.0f} % agreement, null "
                             f"{NULL_ANY['careful-cpu'] * 100:.1f} %). README, `python -m bif bench`. paper-gpu: for a "
                             "GPU. smollm2-gpu: paper-gpu with a 10× smaller step, for SmolLM2 "
                             "(picked for it automatically). smoke: seconds, for checks, not findings.")
    own = built_in and bif.PRESETS[built_in.preset]
    if own and built_in.step_note and bif.PRESETS[name].step_size > own.step_size:
        st.warning(f"This preset's step size was calibrated on the demo model. {built_in.step_note}",
                   icon=":material/warning:")
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
    name = st.session_state.get("preset", registry.DEFAULT_PRESET)
    st.session_state[f"cfg.{name}.param_patterns"] = ", ".join(settings["param_patterns"])
    st.session_state[f"cfg.{name}.batch_size"] = settings["batch_size"]
    st.session_state["score_all"] = False
    st.session_state["n_scored"] = settings["n_scored"]
    st.session_state["nearest"] = settings["query_neighbours"]


def cost_here(spec: jobspec.JobSpec, n_train: int, tokens: float, seconds: float) -> None:
    """Too slow for this machine: say so, where it belongs (a GPU), and what approximation fits here."""
    if seconds <= cost.CPU_BUDGET_S or cost.has_gpu():
        return
    approx = cost.cpu_approximation(spec, n_train, tokens)
    text = (f"On this machine (CPU only, no GPU) this run takes about **{jobs.format_seconds(seconds)}**. A GPU is "
            "the place for it (`python -m bif run` there, then open the run here).")
    if approx and approx["seconds"] < seconds:
        text += (f" {'Affordable' if approx['seconds'] <= cost.CPU_BUDGET_S else 'Cheaper'} here: the **CPU "
                 f"approximation** ({approx['label']}), about "
                 f"**{jobs.format_seconds(approx['seconds'])}**. It is an approximation and its results say so.")
    st.warning(text, icon=":material/timer:")
    if approx and approx["seconds"] < seconds:
        st.button("Use the CPU approximation", key="use_approx", on_click=use_approximation,
                  args=(approx["settings"],), help="Sets Only these parameters (param_patterns), Training texts per "
                                                   "step (batch_size) and Samples to rank; all can be changed.")
