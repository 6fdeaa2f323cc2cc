"""New queries on a finished run: scored at its stored draws (seconds), or by replaying its seeded chains.

Either way the training set is not re-scored. Stored draws (bif.core.draws) need one forward pass per draw and
no SGLD; replay runs every SGLD step again. The result is the same query set (queries/<qkey>/, the run's layout)
with `method` recorded in its queries.json; with float16 draws it equals replay to the tolerance stated in
bif.core.draws (tests/test_ask.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from bif.dist import distributed
from bif.lm.data import Query, load_texts, tokenize_queries, tokenize_texts
from bif.core.draws import ChainDraws, open_draws, score_at_draws
from bif.core.drawbatch import free_threads
from bif.layout import RunFiles
from bif.errors import BIFError, ConfigError, ReplayMismatch
from bif.core.examples import lm_token_loss, score_examples
from bif.core import integrity
from bif.core.files import read_json, write_json
from bif.lm.models import LoadedModel, ModelSpec, load_model
from bif.store import grow
from bif.store.request import digest
from bif.store.chains import overall_progress
from bif.store.opened import Run, open_run
from bif.core.sampler import Progress, resolve_device, sample_chain
from bif.core.scale import ScaleOptions, apply_weights_dtype
from bif.core.trace import ChainTrace, save_chain


METHODS = ("auto", "draws", "replay")


def query_method(run: Run, method: str = "auto") -> str:
    """'draws' when the run has stored draws for every chain (and method allows it), else 'replay'.

    ConfigError for an unknown method, or method='draws' on a run without stored draws."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS} (got {method!r}).")
    has = open_draws(run.dir, run.config.chains) is not None
    if method == "draws" and not has:
        raise ConfigError(f"Run {run.key} has no stored draws ({draws_note(run.dir)}); use method='replay'.")
    return "draws" if has and method != "replay" else "replay"


def draws_note(run_dir: Path) -> str:
    """Why a run has (or lacks) stored draws, from its draws.json."""
    info = read_json(RunFiles(Path(run_dir)).draws_json)
    return info["reason"] if isinstance(info, dict) and "reason" in info else "computed before draws were stored"


def replay_estimate_s(run: Run) -> float:
    """Seconds a replay of the run would take: about its own sampling time (the chain files' `seconds`)."""
    return run.sampling_seconds


def add_queries(run: Run, queries: list[Query], cache_root: str | Path = "cache",
                progress: Progress | None = None, tolerance: float = 1e-5,
                dist: distributed.Dist | None = None, method: str = "auto", loaded: LoadedModel | None = None) -> Run:
    """New queries on a finished run without re-scoring the training set.

    method='draws' scores them at the run's stored draws (one forward pass per draw, no SGLD); 'replay' replays
    every seeded chain, scoring only the new queries, and checks that the replayed sampling losses match the
    stored ones (max relative difference ≤ tolerance; ReplayMismatch if not: other device, other library
    versions, changed model files); 'auto' uses stored draws when the run has them. Returns the run reopened
    with the new query set appended (its QuerySet.method says which was used). `loaded`: the run's model, already
    loaded (the app keeps it between questions); it is left at w*.
    In a running process group (bif.dist.distributed.current()) every process calls this with the same arguments
    and handles chains rank, rank + W, ...
    """
    known = {json.dumps(q.to_dict(), sort_keys=True) for q in run.queries}
    new = [q for q in queries if json.dumps(q.to_dict(), sort_keys=True) not in known]
    if not new:
        return run
    dist = dist or distributed.current()
    method = query_method(run, method)
    config = run.config
    model = ModelSpec(**run.request["model"])
    device = resolve_device(config.device)
    loaded = loaded or load_model(model, cache_root, device=device, progress=progress)
    scale = ScaleOptions(**run.request.get("scale", {}))
    apply_weights_dtype(loaded.model, scale)
    if loaded.fingerprint != run.request["fingerprints"]["model"]:
        raise ReplayMismatch("The model files changed since this run was computed; replay cannot reproduce it. "
                             "Start a new run.")
    train_all = _training_set(run, loaded) if method == "replay" else None
    qex = tokenize_queries(loaded.tokenizer, new, loaded.max_length)
    qfiles = RunFiles(run.dir).query(digest([q.to_dict() for q in new]))
    qdir = qfiles.dir
    qdir.mkdir(parents=True, exist_ok=True)
    with distributed.main_holds_lock(dist, qfiles.lock):
        if dist.all_ok(qfiles.is_complete):
            return open_run(run.dir, verify=dist.is_main)
        if dist.is_main:
            init = score_examples(loaded.model, lm_token_loss, qex, config.score_batch_size, device).cpu()
            write_json(qfiles.meta, {"queries": [q.to_dict() for q in new], "tokens": qex.tokens,
                                               "method": method})
            integrity.save_checked({"query.mask": qex.mask, "query.input_ids": qex.inputs["input_ids"],
                                    "init": init}, qfiles.examples)
        mine = list(range(dist.rank, config.chains, dist.world))
        failure = None
        try:
            for pos, c in enumerate(mine):
                path = qfiles.chain(c)
                if integrity.intact(path):  # kept from an interrupted attempt; a damaged one is computed again
                    continue
                if method == "draws":
                    _draws_chain(run, loaded.model, qex, c, path, device, progress, pos, len(mine))
                else:
                    _replay_chain(run, loaded.model, train_all, qex, c, path, device, scale, tolerance,
                                  overall_progress(progress, c, config, pos, len(mine)))
        except BIFError as e:  # every rank must learn of it, or the others wait at the barrier forever
            failure = e
        if not dist.all_ok(failure is None):
            raise failure or ReplayMismatch("Another process could not reproduce its chains; see its message.")
        integrity.seal_if_intact(dist, qdir, [qfiles.examples, *qfiles.chains(config.chains)],
                                 qfiles.sealed_names(config.chains), "the new query set",
                                 "Ask the same query again to recompute it.")
    return open_run(run.dir, verify=dist.is_main)


def carry_queries(run: Run, cache_root: str | Path = "cache", progress: Progress | None = None,
                  loaded: LoadedModel | None = None) -> Run:
    """The queries asked later on the run that `run` grew from (bif.store.grow), asked again on `run`.

    They are scored at `run`'s stored draws (all of them: the prefix's draws, copied into it byte for byte, and
    the new ones), so they equal asking them on a fresh run of that size. A run without stored draws, or one
    that did not grow, is returned as it is (replaying every question would cost a whole run each).
    """
    prefix = grow.recorded_prefix(run.dir)
    if prefix is None or query_method(run) != "draws":
        return run
    try:
        shorter = open_run(prefix.dir, verify=False)  # its own checksums were checked when it was found
    except BIFError:
        return run
    added = [q for qs in shorter.query_sets[1:] for q in qs.queries]
    return add_queries(run, added, cache_root, progress, method="draws", loaded=loaded) if added else run


def _training_set(run: Run, loaded):
    """The run's sampling set, tokenized again; ReplayMismatch if it changed since the run."""
    texts = load_texts(run.request["data"]["source"])
    train_all = tokenize_texts(loaded.tokenizer, texts, min(run.request["data"]["max_length"], loaded.max_length))
    if train_all.fingerprint != run.request["fingerprints"]["train"]:
        raise ReplayMismatch("The training data changed since this run was computed. Start a new run.")
    return train_all


def _draws_chain(run: Run, model, qex, chain: int, path: Path, device, progress: Progress | None,
                 position: int, count: int) -> None:
    """Score the queries at chain `chain`'s stored draws and save them as the chain's query losses."""
    config = run.config
    draws = ChainDraws(RunFiles(run.dir).draws(chain))
    t0 = time.perf_counter()

    def report(ev: dict) -> None:
        if progress is not None:
            progress({**ev, "chain": chain, "chains": config.chains,
                      "fraction": (position + ev["draw"] / ev["draws"]) / count})

    autocast = torch.bfloat16 if config.score_dtype == "bfloat16" else None
    with free_threads():  # a question asked in a busy process (the app) must not oversubscribe the cores
        losses = score_at_draws(model, lm_token_loss, qex, draws, config.score_batch_size, device, autocast,
                                progress=report, draws=config.draws)
    save_chain(path, ChainTrace(losses={"query": losses}, sampling_loss=torch.from_numpy(run.sampling_loss[chain]),
                                seconds=time.perf_counter() - t0), config.trace_dtype)


def _replay_chain(run: Run, model, train_all, qex, chain: int, path: Path, device, scale, tolerance: float,
                  progress: Progress | None) -> None:
    """Sample chain `chain` again scoring only the queries; save it if it reproduces the stored sampling losses."""
    config = run.config
    replayed = sample_chain(model, lm_token_loss, train_all, {"query": qex}, config, chain, progress, device, scale)
    stored = run.sampling_loss[chain]
    diff = np.abs(replayed.sampling_loss.numpy() - stored) / np.maximum(np.abs(stored), 1e-12)
    if not np.all(diff <= tolerance):
        raise ReplayMismatch(
            f"Replaying chain {chain} did not reproduce the stored sampling losses (max relative difference "
            f"{diff.max():.2e} at step {int(diff.argmax())}). The run was probably computed on another device or "
            f"library version (stored: {run.request.get('device')}, now: {device}). "
            "Start a new run with these queries instead.")
    save_chain(path, replayed, config.trace_dtype)
