"""The chains of a run: each process samples its chains into chain files (or its shard of them, merged by the
group's first rank), with stored draws and last states, and reports progress with an ETA from its own speed
(`Clock`). `bif.store.runs.compute` decides which chains are missing and seals the run.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bif.core import integrity
from bif.core.chainstate import save_state, state_bytes
from bif.core.config import SamplerConfig
from bif.core.draws import DrawWriter, decide_keep
from bif.core.examples import lm_token_loss
from bif.core.sampler import Progress, run_chain, select_parameters
from bif.core.scale import ScaleOptions, out_of_memory_error
from bif.core.sinks import ToChainFile
from bif.core.chainwriter import ChainWriter
from bif.dist import distributed
from bif.layout import RunFiles
from bif.store import grow
from bif.store.opened import chain_ok
from bif.store.prepare import Prepared


log = logging.getLogger("bif")


def sample_chains(run_dir: Path, prep: Prepared, config: SamplerConfig, scale: ScaleOptions,
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
            if chain_ok(path, names, config.draws, config.steps_per_chain) and (
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
                overall_progress(progress, c, config, pos, len(mine), clock), device, scale, resume=resume,
                on_end=save_end)
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


def merge_chains(run_dir: Path, prep: Prepared, config: SamplerConfig, dist: distributed.Dist,
                 plan: distributed.Plan, device) -> None:
    """Each group's first rank merges the shards of its chains into chain files."""
    sizes = {"train": (len(prep.scored), prep.scored.positions), "query": (len(prep.queries), prep.queries.positions)}
    tolerance = float(os.environ.get("BIF_REPLICA_TOLERANCE", 0.0 if torch.device(device).type == "cpu" else 1e-4))
    for c in range(config.chains):
        path = RunFiles(Path(run_dir)).chain(c)
        if dist.rank == plan.leader(c) and not chain_ok(path, list(sizes), config.draws, config.steps_per_chain):
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


def overall_progress(progress: Progress | None, chain: int, config: SamplerConfig, position: int | None = None,
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
