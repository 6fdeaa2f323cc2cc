"""Runs of a language model: compute (or reuse) a cached BIF run, and open it (replay.py, catalog.py do the rest).

A run is keyed by content: schema version, model weights + tokenizer, training data + scored subset, queries and
the sampler settings that shape the chains. On disk a run is cache_root/runs/<key>/ (bif.layout.RunFiles: inputs,
losses at w*, one chain file per chain written draw by draw with positioned writes and renamed when the chain
finishes, stored draws, each chain's last state (so a run with more draws continues it: bif.store.grow),
added query sets, the other training texts ranked afterwards (bif.store.rank), and COMPLETE written last).

Every tensor file carries its own checksum from the moment it is written (bif.core.integrity): a resume keeps
only chains (and stored draws, states) whose bytes match it, and nothing is sealed before every file has been
checked again, so a file damaged before sealing is recomputed, never sealed.
Here: `compute` (lock, resume, seal); prepare (model, data, key), chains (sampling, merging shards, ETA) and opened
(Run, open_run) hold the parts.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path

import torch

from bif.core import integrity
from bif.core.config import SamplerConfig
from bif.core.draws import decide_keep, draws_bytes
from bif.core.examples import lm_token_loss
from bif.core.files import read_json, seal, write_json
from bif.core.sampler import Progress, resolve_device, select_parameters
from bif.core.scale import OutOfMemory, ScaleOptions, check_fits, estimate_memory
from bif.dist import distributed
from bif.errors import CacheError
from bif.layout import RunFiles, Store
from bif.lm.data import DataSpec, Query
from bif.lm.models import LoadedModel, ModelSpec
from bif.store import grow
from bif.store.chains import Clock, merge_chains, sample_chains
from bif.store.opened import Run, open_run  # noqa: F401 - open_run: also imported from here by the library's users
from bif.store.prepare import Prepared, check_request, prepare, texts_json
from bif.store.request import RunRequest


log = logging.getLogger("bif")
INPUTS_DAMAGED = "the run's inputs (request, texts, examples or init)"


def compute_run(model: ModelSpec, data: DataSpec, queries: list[Query], config: SamplerConfig,
                cache_root: str | Path = "cache", progress: Progress | None = None, *,
                scale: ScaleOptions | None = None, dist: distributed.Dist | None = None) -> Run:
    """`compute` of RunRequest(model, data, queries, config, scale): the library's entry point."""
    check_request(model, data, queries, config)
    request = RunRequest(model, data, tuple(queries), config, scale or ScaleOptions())
    return compute(request, cache_root, progress, dist=dist)


def compute(request: RunRequest, cache_root: str | Path = "cache", progress: Progress | None = None, *,
            dist: distributed.Dist | None = None, loaded: LoadedModel | None = None) -> Run:
    """Compute the run (or open it if it is cached; resume it chain by chain if it was interrupted).

    A file lock makes concurrent callers of the same run compute it once. `progress` gets dicts with
    stage, chain, chains, step, steps, draw, draws, sampling_loss, fraction, eta_s; it may raise to cancel. Stages
    without a chain: 'load' (the model), 'data' (reading and tokenizing the texts), 'init' (with run_key, the
    run's folder; scoring at w*), 'seal'.
    Chains are written to disk draw by draw (never held whole in memory). A memory estimate is logged (logger
    "bif") before sampling starts, and a run that cannot fit stops with `bif.core.scale.OutOfMemory`.

    In a running process group (`dist`, else bif.dist.distributed.current(); the CLI and the job worker join
    torchrun's with bif.dist.distributed.join, this never starts one) every process calls this with the same
    arguments: chains are spread over the processes and each draw's scoring is sharded; the result is the same run.
    `request.scale` (bif.core.scale.ScaleOptions): bf16 weights, gradient checkpointing, w* offload, memory budget.
    `loaded`: request.model as the caller already loaded it (bif.lm.models.load_model, float32, unchanged), so that
    it is not loaded twice.
    """
    if not isinstance(request, RunRequest):
        from bif.errors import ConfigError
        raise ConfigError(f"expected a RunRequest (got {type(request).__name__}); or call bif.compute_run(model, "
                          "data, queries, config).")
    cache_root = Path(cache_root)
    config, scale = request.config, request.scale
    dist = dist or distributed.current()
    device = resolve_device(config.device)
    if progress is not None:
        progress({"stage": "load"})
    prep = prepare(request, cache_root, progress, device, loaded)
    files = Store(cache_root).run(prep.key)
    run_dir = files.dir
    if progress is not None:  # the run's folder is known from here on (a job's provisional results read it)
        progress({"stage": "init", "run_key": prep.key, "chains": config.chains, "draws": config.draws})
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with distributed.main_holds_lock(dist, files.lock):
            run_dir.mkdir(parents=True, exist_ok=True)  # deleted while we waited for the lock
            if dist.all_ok(files.is_complete):
                dist.barrier()
                return open_run(run_dir, verify=dist.is_main)
            _compute(files, prep, config, scale, dist, device, progress, cache_root)
    except BaseException:
        _forget_if_empty(files, dist)
        raise
    return open_run(run_dir, verify=dist.is_main)  # the other ranks trust rank 0's checksums


def _compute(files: RunFiles, prep: Prepared, config: SamplerConfig, scale: ScaleOptions, dist: distributed.Dist,
             device, progress: Progress | None, cache_root: Path) -> None:
    """Inputs, chains, merge and seal of an unsealed run (under its lock), keeping what is already intact."""
    run_dir = files.dir
    plan = distributed.make_plan(config.chains, dist.world, scale.chain_groups)
    _check_memory(prep, config, scale, dist, plan, device, run_dir)
    clock = Clock()
    # init is written last: on resume the inputs are there, and are rewritten if any of them was damaged
    if not dist.all_ok(files.init.exists() and (not dist.is_main or _inputs_ok(files, prep))):
        observed = {"train": prep.scored, "query": prep.queries}
        t0 = time.perf_counter()
        init = distributed.score_at_w_star(dist, prep.loaded.model, lm_token_loss, observed,
                                           config.score_batch_size, device, run_dir)
        clock.prior_s = (time.perf_counter() - t0) * dist.world  # one scoring pass, shared by the W processes
        if dist.is_main:
            write_inputs(run_dir, prep, init)
    dist.barrier()
    keep = _draws_decision(run_dir, prep, config, dist)
    prefix = grow.find_prefix(cache_root, prep.request["lineage"], config.draws, run_dir) \
        if plan.group_size == 1 else None  # a run that grows continues the chains of a shorter one
    if prefix is not None and dist.is_main:
        grow.record_prefix(run_dir, prefix)
    for attempt in range(2):  # a file damaged after it was written and before sealing is computed again, once
        sample_chains(run_dir, prep, config, scale, dist, plan, device, progress, keep, prefix, clock)
        dist.barrier()
        if plan.group_size > 1:
            merge_chains(run_dir, prep, config, dist, plan, device)
            dist.barrier()
        damaged = _damaged(files, prep, config, keep) if dist.is_main else []
        if dist.all_ok(not damaged):
            break
        fatal = dist.is_main and (attempt > 0 or INPUTS_DAMAGED in damaged)
        if not dist.all_ok(not fatal):
            raise CacheError(f"Run {run_dir.name}: {', '.join(damaged) or 'a file'} changed on disk while the run "
                             "was being computed (a failing disk, or another program writing there). Nothing was "
                             "sealed. Check the disk and run the same command again to recompute them.")
        for name in damaged if dist.is_main else []:  # the chain, with its draws and state, is computed again
            log.warning("run %s: %s was damaged after it was written; computing it again", run_dir.name, name)
            c = int(re.search(r"_(\d+)\.", name).group(1))
            for gone in (files.chain(c), files.draws(c), files.state(c)):
                gone.unlink(missing_ok=True)
        dist.barrier()
    if dist.is_main:
        if progress is not None:
            progress({"stage": "seal", "chains": config.chains, "draws": config.draws, "fraction": 1.0,
                      "eta_s": 0.0})
        shutil.rmtree(files.parts, ignore_errors=True)
        for stale in files.partials():
            stale.unlink()
        seal(run_dir, files.sealed_names())
    dist.barrier()


def _forget_if_empty(files: RunFiles, dist: distributed.Dist) -> None:
    """After a failure: remove a run folder that holds nothing but its lock (it failed before writing anything),
    so `bif runs` does not list an empty entry. Anything written is kept (the next attempt resumes from it)."""
    try:
        if dist.is_main and {p.name for p in files.dir.iterdir()} <= {files.lock.name}:
            shutil.rmtree(files.dir, ignore_errors=True)
    except OSError:
        pass


def _inputs_ok(files: RunFiles, prep: Prepared) -> bool:
    """Whether the stored inputs of an unsealed run are intact and are this request's (checked before resuming
    and before sealing): the tensor files against their own checksums, the JSON files against what they should say."""
    if not (integrity.intact(files.examples) and integrity.intact(files.init)):
        return False
    request = read_json(files.request)
    if not isinstance(request, dict):
        return False
    request = {k: v for k, v in request.items() if k not in ("created", "device")}
    return request == json.loads(json.dumps(prep.request)) and \
        read_json(files.texts) == json.loads(json.dumps(texts_json(prep)))


def _damaged(files: RunFiles, prep: Prepared, config: SamplerConfig, keep: bool) -> list[str]:
    """The files that a seal would cover and that do not match their own checksums (or are missing)."""
    paths = files.chains(config.chains) + ([files.draws(c) for c in range(config.chains)] if keep else [])
    paths += [files.state(c) for c in range(config.chains) if files.state(c).exists()]
    bad = [p.name for p in paths if not integrity.intact(p)]
    return bad + ([] if _inputs_ok(files, prep) else [INPUTS_DAMAGED])


def _check_memory(prep: Prepared, config: SamplerConfig, scale: ScaleOptions, dist: distributed.Dist,
                  plan: distributed.Plan, device, run_dir: Path) -> None:
    """Log the memory estimate of one process; OutOfMemory if it cannot fit (scale.check_memory)."""
    rows = len(prep.scored) + len(prep.queries)
    est = estimate_memory(prep.loaded.model, config, scale, n_train=len(prep.train_all), n_scored=len(prep.scored),
                          n_query=len(prep.queries), seq_len=prep.train_all.positions + 1, device=device,
                          processes_per_node=dist.local_world, rows_per_process=-(-rows // plan.group_size))
    if dist.is_main:
        log.info(est.describe())
    if not scale.check_memory:
        return
    try:
        check_fits(est, run_dir if dist.is_main else None)
        refused = None
    except OutOfMemory as e:
        refused = e
    if not dist.all_ok(refused is None):  # every rank stops, not only the one that does not fit
        raise refused or OutOfMemory("Another process of this run does not fit in its memory; see its message.")


def _draws_decision(run_dir: Path, prep: Prepared, config: SamplerConfig, dist: distributed.Dist) -> bool:
    """Whether this run stores its draws (config.keep_draws, the disk budget); rank 0 records why in draws.json."""
    named = select_parameters(prep.loaded.model, config.param_patterns)
    nbytes = draws_bytes(sum(p.numel() for _, p in named), config.chains, config.draws, config.draws_dtype)
    decision = decide_keep(config.keep_draws, nbytes, run_dir)
    if dist.is_main:
        write_json(RunFiles(run_dir).draws_json, {"keep": decision.keep, "bytes": nbytes, "reason": decision.reason,
                                          "dtype": config.draws_dtype, "params": [n for n, _ in named]})
    return decision.keep


def write_inputs(run_dir: Path, prep: Prepared, init: dict[str, torch.Tensor]) -> None:
    """request.json, examples, texts, and `init` (losses at w*, written last: its presence marks the inputs done)."""
    device = next(prep.loaded.model.parameters()).device
    files = RunFiles(Path(run_dir))
    write_json(files.request, {**prep.request, "created": time.time(), "device": str(device)})
    write_json(files.texts, texts_json(prep))
    integrity.save_checked({"train.input_ids": prep.scored.inputs["input_ids"], "train.mask": prep.scored.mask,
                            "query.input_ids": prep.queries.inputs["input_ids"], "query.mask": prep.queries.mask},
                           files.examples)
    integrity.save_checked({"train": init["train"], "query": init["query"]}, files.init)
