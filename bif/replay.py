"""New queries on a finished run by replaying its seeded chains (the training set is not re-scored)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from filelock import FileLock

from .data import Query, load_texts, tokenize_queries, tokenize_texts
from .errors import ReplayMismatch
from .examples import lm_token_loss, score_examples
from .models import ModelSpec, load_model
from .files import write_json
from .runs import Run, _atomic_save, _hash, _overall, open_run
from .sampler import Progress, resolve_device, sample_chain
from .scale import ScaleOptions, apply_weights_dtype
from .trace import save_chain


def add_queries(run: Run, queries: list[Query], cache_root: str | Path = "cache",
                progress: Progress | None = None, tolerance: float = 1e-5) -> Run:
    """New queries on a finished run without re-scoring the training set.

    Replays every seeded chain, scoring only the new queries, and checks that the replayed sampling losses match
    the stored ones (max relative difference ≤ tolerance); ReplayMismatch if not (other device, other library
    versions, changed model files). Returns the run reopened with the new query set appended.
    """
    known = {json.dumps(q.to_dict(), sort_keys=True) for q in run.queries}
    new = [q for q in queries if json.dumps(q.to_dict(), sort_keys=True) not in known]
    if not new:
        return run
    config = run.config
    model = ModelSpec(**run.request["model"])
    device = resolve_device(config.device)
    loaded = load_model(model, cache_root, device=device, progress=progress)
    scale = ScaleOptions(**run.request.get("scale", {}))
    apply_weights_dtype(loaded.model, scale)
    if loaded.fingerprint != run.request["fingerprints"]["model"]:
        raise ReplayMismatch("The model files changed since this run was computed; replay cannot reproduce it. "
                             "Start a new run.")
    texts = load_texts(run.request["data"]["source"])
    train_all = tokenize_texts(loaded.tokenizer, texts, min(run.request["data"]["max_length"], loaded.max_length))
    if train_all.fingerprint != run.request["fingerprints"]["train"]:
        raise ReplayMismatch("The training data changed since this run was computed. Start a new run.")
    qex = tokenize_queries(loaded.tokenizer, new, loaded.max_length)
    qdir = run.dir / "queries" / _hash([q.to_dict() for q in new])
    qdir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(qdir / "lock")):
        if not (qdir / "COMPLETE").exists():
            init = score_examples(loaded.model, lm_token_loss, qex, config.score_batch_size, device).cpu()
            write_json(qdir / "queries.json", {"queries": [q.to_dict() for q in new], "tokens": qex.tokens})
            _atomic_save({"query.mask": qex.mask, "query.input_ids": qex.inputs["input_ids"], "init": init},
                         qdir / "examples.safetensors")
            for c in range(config.chains):
                path = qdir / f"chain_{c:03d}.safetensors"
                if path.exists():
                    continue
                chain = sample_chain(loaded.model, lm_token_loss, train_all, {"query": qex}, config, c,
                                     _overall(progress, c, config), device, scale)
                stored = run.sampling_loss[c]
                diff = np.abs(chain.sampling_loss.numpy() - stored) / np.maximum(np.abs(stored), 1e-12)
                if not np.all(diff <= tolerance):
                    raise ReplayMismatch(
                        f"Replaying chain {c} did not reproduce the stored sampling losses (max relative difference "
                        f"{diff.max():.2e} at step {int(diff.argmax())}). The run was probably computed on another "
                        f"device or library version (stored: {run.request.get('device')}, now: {device}). "
                        "Start a new run with these queries instead.")
                save_chain(path, chain, config.trace_dtype)
            (qdir / "COMPLETE").write_text("ok")
    return open_run(run.dir)
