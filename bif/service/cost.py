"""What a job will cost before it starts: a rough estimate of its seconds on this machine, and the CPU approximation
offered when a run costs more than this machine affords. Nothing here loads a model. No streamlit import here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from bif.layout import model_config, model_weights
from bif.lm import registry
from bif.lm.models import ModelSpec
from bif.service.jobs import WORKER_START_S, default_procs
from bif.service.jobspec import JobSpec, rank_job_spec

# Rough single-thread CPU constants fitted to early measurements (docs/method.md §8) (demo model: 2.4 ms per 64-token
# sequence forward; SmolLM2-135M: 0.13 s): seconds per sequence ≈ A + B·params·tokens; a backward costs 2 forwards.
FORWARD_A = 1.6e-3
FORWARD_B = 1.5e-11
CPU_BUDGET_S = 1800.0  # a run that costs more than this here is offered the CPU approximation


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def block_layout(model: ModelSpec) -> tuple[str, int] | None:
    """(parameter-name prefix of the numbered blocks, number of blocks) of a model, without loading it; None when
    unknown. Built-ins from bif.lm.registry; a local directory from its config.json (Llama-style or GPT-2-style
    names)."""
    name = model.name_or_path
    if built_in := registry.model(name):
        return built_in.blocks
    try:
        cfg = json.loads(model_config(Path(name).expanduser()).read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    prefix = "transformer.h" if cfg.get("model_type") == "gpt2" else "model.layers"
    return (prefix, int(n)) if n else None


def _sampled_fraction(spec: JobSpec) -> float:
    """Rough share of the blocks that SGLD moves (1.0 = all parameters)."""
    patterns = spec.run.config.param_patterns
    layout = block_layout(spec.run.model)
    if not patterns or not layout:
        return 1.0
    return min(1.0, sum(p.startswith(layout[0] + ".") for p in patterns) / layout[1]) or 1.0


def cpu_approximation(spec: JobSpec, n_train: int, mean_tokens: float, blocks: int = 2) -> dict | None:
    """A variant of a job that this CPU can afford, or None when the model's blocks are unknown.

    It samples only the last `blocks` transformer blocks (an approximation, labelled on the results), ranks 24
    training samples (8 of them the most similar to the query: query_neighbours), and uses minibatches of 8;
    chains and draws stay (so findings remain possible). Returns {"spec", "seconds", "label", "settings"}
    (settings: the changed fields)."""
    layout = block_layout(spec.run.model)
    if layout is None:
        return None
    prefix, n = layout
    k = max(1, min(blocks, n))
    patterns = tuple(f"{prefix}.{i}.*" for i in range(n - k, n))
    run = dataclasses.replace(spec.run, config=spec.run.config.replace(param_patterns=patterns, batch_size=8),
                              data=dataclasses.replace(spec.run.data, n_scored=24, query_neighbours=8))
    new = dataclasses.replace(spec, run=run)
    cost = estimate_cost(new, n_train, mean_tokens)
    return {"spec": new, "seconds": cost["seconds"],
            "label": f"only the last {k} of {n} blocks sampled, {cost['n_scored']} samples ranked, minibatch 8",
            "settings": {"param_patterns": list(patterns), "batch_size": 8, "n_scored": 24,
                         "query_neighbours": 8}}


def model_params(model: ModelSpec) -> float:
    """Rough parameter count: known for built-ins, from the weight files' sizes for a local directory."""
    name = model.name_or_path
    if built_in := registry.model(name):
        return built_in.n_params
    path = Path(name).expanduser()
    size = sum(p.stat().st_size for p in model_weights(path))
    try:
        cfg = json.loads(model_config(path).read_text())
        dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    except (OSError, ValueError):
        dtype = "float32"
    return size / (2 if "16" in dtype else 4) if size else 1e6


def training_size(texts: list[str]) -> tuple[int, float]:
    """(number of training texts, rough tokens per text: 3.5 characters a token), the data's part of estimate_cost."""
    return len(texts), sum(len(t) for t in texts) / max(len(texts), 1) / 3.5 + 1


def estimate_cost(spec: JobSpec, n_train: int, mean_tokens: float) -> dict:
    """Rough seconds for a job on this CPU, before starting it.

    cost ≈ chains × (steps × t_step + draws × (n_scored + n_queries) × t_forward) / processes + start-up. For a
    replay only the queries are scored. The constants are rough (single-thread CPU); the live ETA is the better guide.
    """
    cfg, data = spec.run.config, spec.run.data
    n_q = len(spec.run.queries)
    tokens = max(2.0, min(mean_tokens, data.max_length))
    t_fwd = FORWARD_A + FORWARD_B * model_params(spec.run.model) * tokens
    t_step = (1 + 2 * _sampled_fraction(spec)) * t_fwd * min(cfg.batch_size, n_train)  # forward + backward
    if data.n_scored is None:
        n_scored = n_train
    else:
        n_scored = min(n_train, data.n_scored)  # the number ranked (query_neighbours take places in it)
    scored = n_q if spec.kind == "replay" else n_scored + n_q
    sampling = cfg.chains * cfg.steps_per_chain * t_step
    scoring = cfg.chains * cfg.draws * scored * t_fwd
    procs = spec.procs or default_procs(spec)  # chains run side by side, one process per core
    slow = load_slowdown(procs)
    return {"seconds": WORKER_START_S + (sampling + scoring) / procs * slow, "sampling_s": sampling,
            "scoring_s": scoring, "n_scored": n_scored, "steps": cfg.chains * cfg.steps_per_chain,
            "draws": cfg.chains * cfg.draws, "processes": procs, "load_slowdown": slow,
            "note": f"Rough estimate for {procs} single-threaded CPU process(es)"
                    + (f", {slow:.1f}x slower for the machine's current load" if slow > 1 else "")
                    + "; once the run starts, the job panel's estimate comes from its own measured speed."}


def rank_seconds(run, rows: int, cache_root: str | Path) -> float:
    """Seconds to score `rows` more training texts of a finished run (bif.Run) at every stored draw (a rank job). The
    run's own scoring speed (its losses at w* took one forward pass per ranked text) is not recorded, so this uses
    the cost model above, at half the maximum length per text."""
    spec = rank_job_spec(run, cache_root)
    t_fwd = FORWARD_A + FORWARD_B * model_params(spec.run.model) * spec.run.data.max_length / 2
    return WORKER_START_S + run.config.chains * run.config.draws * rows * t_fwd / default_procs(spec)


def load_slowdown(procs: int) -> float:
    """How much slower `procs` new single-threaded processes run for the machine's load now: (load + procs) / cores
    when that exceeds 1 (the cores are shared), else 1."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return max(1.0, (load + procs) / (os.cpu_count() or 1))
