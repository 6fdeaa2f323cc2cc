"""Runs of a language model: compute (or reuse) a cached BIF run, and open it (replay.py, catalog.py do the rest).

A run is keyed by content: schema version, model weights + tokenizer, training data + scored subset, queries and
the sampler settings that shape the chains. On disk a run is cache_root/runs/<key>/ (bif.layout.RunFiles: inputs,
losses at w*, one chain file per chain written draw by draw with positioned writes and renamed when the chain
finishes, stored draws, each chain's last state (so a run with more draws continues it: bif.store.grow),
added query sets, the other training texts ranked afterwards (bif.store.rank), and COMPLETE written last).

Every tensor file carries its own checksum from the moment it is written (bif.core.integrity): a resume keeps
only chains (and stored draws, states) whose bytes match it, and nothing is sealed before every file has been
checked again, so a file damaged before sealing is recomputed, never sealed. A damaged added query set (or ranked/)
is moved to quarantine/ by open_run: the run still opens, and `Run.quarantined` says what was set aside and why.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from bif.dist import distributed
from bif.store import grow, ranked
from bif.core.config import SamplerConfig
from bif.lm.data import DataSpec, Query, load_texts, scored_indices, tokenize_queries, tokenize_texts
from bif.lm.registry import DEMO
from bif.core import integrity
from bif.errors import CacheError
from bif.core.examples import Examples, lm_token_loss
from bif.core.files import changed_files, read_json, seal, write_json
from bif.lm.models import LoadedModel, ModelSpec, load_model
from bif.core.chainstate import save_state, state_bytes
from bif.core.draws import DrawWriter, decide_keep, draws_bytes
from bif.layout import QueryFiles, RunFiles, Store
from bif.store.request import RunRequest
from bif.core.sampler import Progress, resolve_device, run_chain, select_parameters
from bif.core.sinks import ToChainFile
from bif.core.scale import (OutOfMemory, ScaleOptions, apply_weights_dtype, check_fits, estimate_memory,
                    out_of_memory_error)
from bif.core.trace import ChainStack, ChainWriter, LossTrace, chain_seconds, load_chain, open_chain

MMAP_BYTES = int(os.environ.get("BIF_MMAP_BYTES", 1 << 30))  # open_run memory-maps traces larger than this
log = logging.getLogger("bif")
INPUTS_DAMAGED = "the run's inputs (request, texts, examples or init)"


@dataclass
class QuerySet:
    """Queries observed in one sampling pass: the run's own, or a set added later by replay."""

    key: str
    queries: list[Query]
    losses: np.ndarray  # (C, D, q, Pq)
    mask: np.ndarray  # (q, Pq)
    init: np.ndarray  # (q, Pq)
    tokens: list[list[str]]
    method: str = "run"  # how its losses were obtained: 'run', 'replay' or 'draws' (stored draws)


@dataclass(frozen=True)
class Partial:
    """What a provisional Run (one still computing) holds: the first `draws` draws of `chains`, of `target`."""

    chains: tuple[int, ...]
    draws: int
    target: int  # draws per chain when finished


@dataclass
class Run:
    """A finished run opened from disk. `trace(i)` gives the LossTrace for query i (any query set)."""

    dir: Path
    key: str
    request: dict
    train_losses: np.ndarray  # (C, D, n, P); a memory-mapped ChainStack for large runs (see open_run)
    train_mask: np.ndarray  # (n, P)
    train_init: np.ndarray
    train_texts: list[str]
    train_tokens: list[list[str]]
    train_ids: list[int]  # index of each scored sample in the training set
    sampling_loss: np.ndarray  # (C, S)
    query_sets: list[QuerySet]
    partial: "Partial | None" = None  # set while the run computes (bif.store.partial): results are provisional
    quarantined: list[str] = None  # messages about added query sets that were damaged and set aside

    def __post_init__(self) -> None:
        self.quarantined = list(self.quarantined or [])

    @property
    def config(self) -> SamplerConfig:
        return SamplerConfig.from_dict(self.request["config"])

    @property
    def queries(self) -> list[Query]:
        return [q for s in self.query_sets for q in s.queries]

    @property
    def asked(self) -> RunRequest:
        """The request the run computed (its own queries; `queries` adds the ones asked since)."""
        return RunRequest.from_json(self.request)

    def _locate(self, i: int) -> tuple[QuerySet, int]:
        from bif.errors import ConfigError

        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.queries):
            raise ConfigError(f"query {i!r} is out of range: this run has {len(self.queries)} "
                              f"quer{'y' if len(self.queries) == 1 else 'ies'} (0 to {len(self.queries) - 1}).")
        for s in self.query_sets:
            if i < len(s.queries):
                return s, i
            i -= len(s.queries)
        raise IndexError(f"query {i} out of range")

    def trace(self, query: int) -> tuple[LossTrace, int]:
        """(LossTrace with observed sets 'train' and 'query', row of the query in it)."""
        s, row = self._locate(query)
        return LossTrace(losses={"train": self.train_losses, "query": s.losses},
                         masks={"train": self.train_mask, "query": s.mask},
                         init={"train": self.train_init, "query": s.init},
                         sampling_loss=self.sampling_loss), row

    def answered_by(self, query: int) -> str:
        """How query `query`'s losses were obtained: 'run', 'replay' or 'draws' (the run's stored draws)."""
        return self._locate(query)[0].method

    @property
    def sampling_seconds(self) -> float:
        """Seconds its chains took to sample and score (stored in the chain files; also for a cached run)."""
        return sum(chain_seconds(p) for p in RunFiles(self.dir).chains(self.config.chains))

    def query_tokens(self, query: int) -> list[str]:
        s, row = self._locate(query)
        return s.tokens[row]


@dataclass
class _Prepared:
    loaded: LoadedModel
    texts: list[str]
    train_all: Examples  # the sampling set (all training texts)
    scored: Examples
    queries: Examples
    how_scored: str
    key: str
    request: dict


def prepare(request: RunRequest, cache_root: Path, progress: Progress | None, device) -> _Prepared:
    """Load the model and data of a request, tokenize, and work out the run's key (loads the model)."""
    model, data, queries, config, scale = request.model, request.data, list(request.queries), request.config, \
        request.scale
    loaded = load_model(model, cache_root, device=device, progress=progress)
    apply_weights_dtype(loaded.model, scale)
    if progress:
        progress({"stage": "data"})
    texts = load_texts(data.source)
    max_len = min(data.max_length, loaded.max_length)
    train_all = tokenize_texts(loaded.tokenizer, texts, max_len)
    idx, how = scored_indices(texts, data, queries)
    if train_all.cut:
        how += (f" {train_all.cut} of {len(texts)} training texts were longer than {max_len} tokens and were cut "
                "to their first tokens (max_length).")
    scored = train_all.subset(idx)
    qex = tokenize_queries(loaded.tokenizer, queries, loaded.max_length)
    fingerprints = {"model": loaded.fingerprint, "train": train_all.fingerprint, "scored": scored.fingerprint,
                    "queries": qex.fingerprint}
    key_parts = request.key_parts(fingerprints)
    stored = {"schema": key_parts["schema"], **request.to_json(), "fingerprints": fingerprints,
              "scored_ids": idx, "how_scored": how, "model_label": loaded.label,
              "n_train": len(texts), "approximate": config.is_approximate, "lineage": grow.lineage(key_parts)}
    return _Prepared(loaded, texts, train_all, scored, qex, how, request.key(fingerprints), stored)


def check_request(model, data, queries, config) -> None:
    """ConfigError when the arguments of compute_run are not the typed objects it takes (a dict, a string...)."""
    from bif.errors import ConfigError

    for value, cls, how in ((model, ModelSpec, f"bif.ModelSpec({DEMO!r})"),
                            (data, DataSpec, f"bif.DataSpec({DEMO!r})")):
        if not isinstance(value, cls):
            raise ConfigError(f"expected a {cls.__name__} (got {type(value).__name__}): use {how}.")
    if isinstance(queries, Query):
        raise ConfigError("queries must be a list of bif.Query: write [query].")
    if not isinstance(queries, (list, tuple)) or not all(isinstance(q, Query) for q in queries):
        raise ConfigError(f"queries must be a list of bif.Query(prompt, completion) (got {queries!r:.80}).")
    SamplerConfig.coerce(config)


def compute_run(model: ModelSpec, data: DataSpec, queries: list[Query], config: SamplerConfig,
                cache_root: str | Path = "cache", progress: Progress | None = None, *,
                scale: ScaleOptions | None = None, dist: distributed.Dist | None = None) -> Run:
    """`compute` of RunRequest(model, data, queries, config, scale): the library's entry point."""
    check_request(model, data, queries, config)
    request = RunRequest(model, data, tuple(queries), config, scale or ScaleOptions())
    return compute(request, cache_root, progress, dist=dist)


def compute(request: RunRequest, cache_root: str | Path = "cache", progress: Progress | None = None, *,
            dist: distributed.Dist | None = None) -> Run:
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
    prep = prepare(request, cache_root, progress, device)
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


def _compute(files: RunFiles, prep: _Prepared, config: SamplerConfig, scale: ScaleOptions, dist: distributed.Dist,
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
            _write_inputs(run_dir, prep, init)
    dist.barrier()
    keep = _draws_decision(run_dir, prep, config, dist)
    prefix = grow.find_prefix(cache_root, prep.request["lineage"], config.draws, run_dir) \
        if plan.group_size == 1 else None  # a run that grows continues the chains of a shorter one
    if prefix is not None and dist.is_main:
        grow.record_prefix(run_dir, prefix)
    for attempt in range(2):  # a file damaged after it was written and before sealing is computed again, once
        _sample_chains(run_dir, prep, config, scale, dist, plan, device, progress, keep, prefix, clock)
        dist.barrier()
        if plan.group_size > 1:
            _merge_chains(run_dir, prep, config, dist, plan, device)
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


def _inputs_ok(files: RunFiles, prep: _Prepared) -> bool:
    """Whether the stored inputs of an unsealed run are intact and are this request's (checked before resuming
    and before sealing): the tensor files against their own checksums, the JSON files against what they should say."""
    if not (integrity.intact(files.examples) and integrity.intact(files.init)):
        return False
    request = read_json(files.request)
    if not isinstance(request, dict):
        return False
    request = {k: v for k, v in request.items() if k not in ("created", "device")}
    return request == json.loads(json.dumps(prep.request)) and \
        read_json(files.texts) == json.loads(json.dumps(_texts(prep)))


def _damaged(files: RunFiles, prep: _Prepared, config: SamplerConfig, keep: bool) -> list[str]:
    """The files that a seal would cover and that do not match their own checksums (or are missing)."""
    paths = files.chains(config.chains) + ([files.draws(c) for c in range(config.chains)] if keep else [])
    paths += [files.state(c) for c in range(config.chains) if files.state(c).exists()]
    bad = [p.name for p in paths if not integrity.intact(p)]
    return bad + ([] if _inputs_ok(files, prep) else [INPUTS_DAMAGED])


def _check_memory(prep: _Prepared, config: SamplerConfig, scale: ScaleOptions, dist: distributed.Dist,
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


def _chain_ok(path: Path, names: list[str], draws: int, steps: int, checksum: bool = True) -> bool:
    """A finished chain file with the expected shapes and (with `checksum`) bytes that match its own checksum."""
    try:
        t = open_chain(path)
    except CacheError:
        return False
    shapes = all(f"losses.{k}" in t and t[f"losses.{k}"].shape[0] == draws for k in names) and \
        "sampling_loss" in t and t["sampling_loss"].shape == (steps,)
    return shapes and (not checksum or integrity.problem(path) is None)


def _draws_decision(run_dir: Path, prep: _Prepared, config: SamplerConfig, dist: distributed.Dist) -> bool:
    """Whether this run stores its draws (config.keep_draws, the disk budget); rank 0 records why in draws.json."""
    named = select_parameters(prep.loaded.model, config.param_patterns)
    nbytes = draws_bytes(sum(p.numel() for _, p in named), config.chains, config.draws, config.draws_dtype)
    decision = decide_keep(config.keep_draws, nbytes, run_dir)
    if dist.is_main:
        write_json(RunFiles(run_dir).draws_json, {"keep": decision.keep, "bytes": nbytes, "reason": decision.reason,
                                          "dtype": config.draws_dtype, "params": [n for n, _ in named]})
    return decision.keep


def _sample_chains(run_dir: Path, prep: _Prepared, config: SamplerConfig, scale: ScaleOptions,
                   dist: distributed.Dist, plan: distributed.Plan, device, progress: Progress | None,
                   keep_draws: bool = False, prefix: grow.Prefix | None = None, clock: "Clock | None" = None) -> None:
    """This process's chains (all of them in a single process), streamed to chain files or shard files; with
    keep_draws, the sampled parameters too (bif.core.draws; written by the first rank of each chain's group).

    Each chain's last state is saved (bif.layout.RunFiles.state) when it fits the draws budget, so that a longer
    run can continue it; with `prefix`, chains continue that shorter run's chains instead of starting at w*."""
    observed = {"train": prep.scored, "query": prep.queries}
    lm = prep.loaded.model
    names = list(observed)
    index, count = plan.shard(dist.rank)
    batches = {k: distributed.shard_rows(ex, config.score_batch_size, index, count) for k, ex in observed.items()}
    rows = {k: torch.cat(b) if b else torch.zeros(0, dtype=torch.long) for k, b in batches.items()}
    mine = plan.chains_of(dist.rank)
    clock = clock or Clock()
    if clock.prior_s is not None:
        clock.prior_s /= count  # a draw's scoring is shared by the `count` ranks of the chain's group
    n_sampled = sum(p.numel() for _, p in select_parameters(lm, config.param_patterns))
    keep_state = index == 0 and decide_keep("auto", state_bytes(n_sampled, config.chains,
                                                                config.preconditioner == "rmsprop"), run_dir).keep
    files = RunFiles(Path(run_dir))
    for pos, c in enumerate(mine):
        path = files.chain(c)
        if path.exists():
            if _chain_ok(path, names, config.draws, config.steps_per_chain) and (
                    not keep_draws or index != 0 or integrity.intact(files.draws(c))) and (
                    not keep_state or integrity.intact(files.state(c))):
                continue
            if index == 0:  # a damaged chain (or its damaged draws) is recomputed
                log.warning("run %s: %s or its draws damaged; computing the chain again", run_dir.name, path.name)
                path.unlink(missing_ok=True)
        if count > 1 and distributed.part_done(run_dir, c, index, count):
            continue
        if count == 1:
            writer = ChainWriter(path, {k: (config.draws, len(ex), ex.positions) for k, ex in observed.items()},
                                 config.steps_per_chain, config.trace_dtype)
        else:
            writer = distributed.part_writer(run_dir, c, index, count, rows, observed, config.draws,
                                             config.steps_per_chain, config.trace_dtype)
        draws = DrawWriter(files.draws(c), select_parameters(lm, config.param_patterns), config.draws,
                           config.draws_dtype) if keep_draws and index == 0 else None

        clock.start_chain()
        # the sampled parameters first, then the losses (committed after every set: readers see whole draws)
        sinks = ([draws] if draws is not None else []) + [
            ToChainFile(writer, lm_token_loss, observed, config.score_batch_size, device, config.score_dtype,
                        batches=None if count == 1 else batches, on_scored=clock.scored)]

        def save_end(state) -> None:
            if keep_state:
                save_state(state, files.state(c))

        try:
            resume = prefix.seed(c, writer, draws) if prefix is not None and count == 1 and \
                prefix.has_chain(c, draws is not None, config.draws_dtype) else None
            sampling_loss, checksum, seconds = run_chain(
                lm, lm_token_loss, prep.train_all, config, c, sinks,
                _overall(progress, c, config, pos, len(mine), clock), device, scale, resume=resume, on_end=save_end)
        except BaseException as e:
            writer.discard()
            if draws is not None:
                draws.discard()
            if isinstance(e, torch.cuda.OutOfMemoryError):
                raise out_of_memory_error(e, device) from e
            raise
        if count > 1:
            writer.put("checksum", checksum)
        if draws is not None:  # before the chain file: a finished chain file means its draws are in place
            draws.finish()
        writer.finish(sampling_loss, seconds)


def _merge_chains(run_dir: Path, prep: _Prepared, config: SamplerConfig, dist: distributed.Dist,
                  plan: distributed.Plan, device) -> None:
    """Each group's first rank merges the shards of its chains into chain files."""
    sizes = {"train": (len(prep.scored), prep.scored.positions), "query": (len(prep.queries), prep.queries.positions)}
    tolerance = float(os.environ.get("BIF_REPLICA_TOLERANCE", 0.0 if torch.device(device).type == "cpu" else 1e-4))
    for c in range(config.chains):
        path = RunFiles(Path(run_dir)).chain(c)
        if dist.rank == plan.leader(c) and not _chain_ok(path, list(sizes), config.draws, config.steps_per_chain):
            distributed.merge_chain(run_dir, c, plan.group_size, sizes, config.draws, config.steps_per_chain,
                                    config.trace_dtype, tolerance)


@dataclass
class Clock:
    """Where a process's sampling time goes, for an ETA from this run's own speed (docs/method.md §8): SGLD steps
    and the scoring of kept draws are priced apart, since burn-in steps score nothing and a scored draw can cost
    several steps. Before a chain's first draw, `prior_s` (the time of the scoring pass at w*) prices a draw."""

    prior_s: float | None = None
    score_s: float = 0.0  # seconds spent recording draws in the current chain
    draws: int = 0

    def start_chain(self) -> None:
        self.score_s, self.draws = 0.0, 0

    def scored(self, seconds: float) -> None:
        self.score_s += seconds
        self.draws += 1

    def eta(self, elapsed: float, steps_done: int, remaining_steps: int, remaining_draws: int) -> float:
        """Seconds left: measured seconds per SGLD step × steps left + seconds per scored draw × draws left."""
        step_s = max(elapsed - self.score_s, 0.0) / max(steps_done, 1)
        draw_s = self.score_s / self.draws if self.draws else (self.prior_s or 0.0)
        return step_s * remaining_steps + draw_s * remaining_draws


def _overall(progress: Progress | None, chain: int, config: SamplerConfig, position: int | None = None,
             count: int | None = None, clock: Clock | None = None) -> Progress | None:
    """Wrap a progress callback to add the whole run's fraction and ETA (of this process's `count` chains)."""
    if progress is None:
        return None
    S, D = config.steps_per_chain, config.draws
    position = chain if position is None else position
    count = config.chains if count is None else count
    clock = clock or Clock()

    def report(ev: dict) -> None:
        done = position * S + ev["step"]
        later = count - position - 1  # chains of this process after this one
        eta = clock.eta(ev["elapsed_s"], ev["step"] - ev.get("first_step", 0), later * S + S - ev["step"],
                        later * D + D - ev["draw"])
        progress({**ev, "chains": config.chains, "fraction": done / (count * S), "eta_s": eta})

    return report


def _write_inputs(run_dir: Path, prep: _Prepared, init: dict[str, torch.Tensor]) -> None:
    """request.json, examples, texts, and `init` (losses at w*, written last: its presence marks the inputs done)."""
    device = next(prep.loaded.model.parameters()).device
    files = RunFiles(Path(run_dir))
    write_json(files.request, {**prep.request, "created": time.time(), "device": str(device)})
    write_json(files.texts, _texts(prep))
    integrity.save_checked({"train.input_ids": prep.scored.inputs["input_ids"], "train.mask": prep.scored.mask,
                            "query.input_ids": prep.queries.inputs["input_ids"], "query.mask": prep.queries.mask},
                           files.examples)
    integrity.save_checked({"train": init["train"], "query": init["query"]}, files.init)


def _texts(prep: _Prepared) -> dict:
    """texts.json: the scored samples' texts and display tokens, and the queries' tokens."""
    return {"train": prep.scored.texts, "train_tokens": prep.scored.tokens, "query_tokens": prep.queries.tokens}


def open_run(run_dir: str | Path, verify: bool | str = True, mmap: bool | None = None) -> Run:
    """Open a finished run; CacheError if it is incomplete or a file changed since it was written.

    `verify`: True checks the checksums of files whose size or mtime changed since they were last found intact
    (bif.core.files.changed_files), "full" hashes every file, False trusts the files.

    `mmap`: memory-map the training trace (`Run.train_losses` is then a ChainStack, read on demand) instead of
    loading it; default: when the chain files exceed BIF_MMAP_BYTES (1 GiB). Use `bif.core.stream` for estimators
    that make one pass over such a trace.
    """
    files = RunFiles(Path(run_dir))
    run_dir = files.dir
    marker = files.complete
    if not marker.exists():
        raise CacheError(f"Run {run_dir.name} is not complete (interrupted or still running). "
                         "Start it again to resume, or delete it.")
    try:
        json.loads(marker.read_text())  # a damaged marker is a damaged run
        request = json.loads(files.request.read_text())
        texts = json.loads(files.texts.read_text())
    except (OSError, ValueError) as e:
        raise CacheError(f"Run {run_dir.name} is damaged ({e}). Delete it and compute it again.") from e
    if verify:
        bad = changed_files(run_dir, rehash=verify == "full")
        if bad:
            raise CacheError(f"Run {run_dir.name} is corrupt: {bad} changed after it was written. "
                             "Delete it and compute it again.")
    config = SamplerConfig.from_dict(request["config"])
    paths = files.chains(config.chains)
    if mmap is None:
        mmap = sum(p.stat().st_size for p in paths if p.exists()) > MMAP_BYTES
    if mmap:
        maps = []
        for p in paths:
            if not _chain_ok(p, ["train", "query"], config.draws, config.steps_per_chain, checksum=False):
                raise CacheError(f"Stored chain {p.name} is missing or has the wrong shape. Delete and recompute.")
            maps.append(open_chain(p))
        train_losses = ChainStack([m["losses.train"] for m in maps])
        query_losses = np.stack([np.asarray(m["losses.query"], dtype=np.float32) for m in maps])
        sampling_loss = np.stack([np.asarray(m["sampling_loss"]) for m in maps])
    else:
        chains = [load_chain(p, ["train", "query"], config.draws, config.steps_per_chain) for p in paths]
        train_losses = np.stack([c.losses["train"].numpy() for c in chains])
        query_losses = np.stack([c.losses["query"].numpy() for c in chains])
        sampling_loss = np.stack([c.sampling_loss.numpy() for c in chains])
    ex = load_file(str(files.examples))
    init = load_file(str(files.init))
    own = QuerySet(key="own", queries=[Query(**q) for q in request["queries"]],
                   losses=query_losses, mask=ex["query.mask"].numpy(),
                   init=init["query"].numpy(), tokens=texts["query_tokens"])
    run = Run(dir=run_dir, key=run_dir.name, request=request,
              train_losses=train_losses, train_mask=ex["train.mask"].numpy(),
              train_init=init["train"].numpy(), train_texts=texts["train"], train_tokens=texts["train_tokens"],
              train_ids=request["scored_ids"], sampling_loss=sampling_loss,
              query_sets=[own])
    for qfiles in files.query_sets():
        try:
            run.query_sets.append(_open_query_set(qfiles, config, verify))
        except Exception as e:  # noqa: BLE001 - any damage to one added set must not make the run unopenable
            run.quarantined.append(_quarantine(files, qfiles.dir, e))
    try:
        ranked.merge(run, verify)  # the training texts ranked after the run (bif.store.rank), if any
    except Exception as e:  # noqa: BLE001 - damaged ranked texts must not make the run unopenable
        run.quarantined.append(_quarantine(files, files.ranked.dir, e, "The ranked other training texts",
                                           "Rank them again"))
    return run


def _quarantine(files: RunFiles, folder: Path, e: BaseException, what: str | None = None,
                redo: str = "Ask the query again") -> str:
    """Move a damaged query set (or ranked/) into the run's quarantine folder (the run opens without it); a
    message saying so."""
    from bif.errors import user_message

    dest = files.quarantine / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        dest.parent.mkdir(exist_ok=True)
        folder.rename(dest)
        where = f"moved to {dest}"
    except OSError:
        where = "left in place (the cache is read-only)"
    what = what or f"An added query set ({folder.name})"
    log.warning("run %s: %s damaged (%s); %s", files.key, what, user_message(e), where)
    return f"{what} was damaged and is not shown; it was {where}. {redo} to recompute it."


def _open_query_set(qfiles: QueryFiles, config: SamplerConfig, verify: bool | str = True) -> QuerySet:
    qdir = qfiles.dir
    if verify and (bad := changed_files(qdir, rehash=verify == "full")):
        raise CacheError(f"Query set {qdir.name} of run {qdir.parent.parent.name} is corrupt: {bad} changed after "
                         f"it was written. Delete the folder {qdir} and add the query again.")
    meta = json.loads(qfiles.meta.read_text())
    chains = [load_chain(p, ["query"], config.draws, config.steps_per_chain) for p in qfiles.chains(config.chains)]
    t = load_file(str(qfiles.examples))
    return QuerySet(key=qdir.name, queries=[Query(**q) for q in meta["queries"]],
                    losses=np.stack([c.losses["query"].numpy() for c in chains]), mask=t["query.mask"].numpy(),
                    init=t["init"].numpy(), tokens=meta["tokens"], method=meta.get("method", "replay"))
