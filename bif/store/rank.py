"""Rank the whole training set afterwards: score the training texts a run did not rank at its stored draws.

A run ranks a subset of its training texts (DataSpec.n_scored: random ones, with each query's nearest by word
overlap when query_neighbours is set), an approximation said in every view. With stored draws (bif.core.draws) the others need no SGLD: one
forward pass per draw each, exactly what the run would have recorded for them (to the draws' storage precision).
`rank_all` writes them to run_dir/ranked/ (resumable chain by chain, sealed by its own COMPLETE):

    rows.json              the training-set indices of the added rows and how many texts the set has
    examples.safetensors   their masks and losses at w*
    chain_000.safetensors  one per chain: losses.train (D, m, P) at the stored draws

`open_run` then appends them to the run's ranked rows (`merge`), sorted by training-set index, and the run says it
ranks all its training texts.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from bif.core.draws import ChainDraws, open_draws, score_at_draws
from bif.core.examples import lm_token_loss, score_examples
from bif.core import integrity
from bif.core.files import read_json, write_json
from bif.core.sampler import Progress, resolve_device
from bif.core.trace import ChainTrace, save_chain
from bif.dist import distributed
from bif.errors import CacheError, ConfigError
from bif.layout import RunFiles
from bif.store.ranked import is_ranked, merge, ranked_dir  # noqa: F401 - part of this module's API


def unranked(run) -> int:
    """How many of the run's training texts it does not rank (0 once ranked/ is complete)."""
    return 0 if is_ranked(run.dir) else int(run.request.get("n_train", 0)) - len(run.train_ids)


def rank_all(run, cache_root: str | Path = "cache", progress: Progress | None = None,
             dist: distributed.Dist | None = None):
    """Score every training text the run does not rank at its stored draws; returns the run reopened, ranking all.

    ConfigError without stored draws. Resumes chain by chain; in a running process group each process takes chains
    rank, rank + W, ... `progress` gets {"stage": "rank", "chain", "chains", "draw", "draws", "fraction"}.
    """
    from bif.lm.models import ModelSpec, load_model
    from bif.store.replay import _training_set
    from bif.store.opened import open_run

    config = run.config
    if open_draws(run.dir, config.chains) is None:
        raise ConfigError(f"Run {run.key} has no stored draws: ranking its other training texts would need a "
                          "replay of every chain. Start a run that keeps its draws (keep_draws=on).")
    if unranked(run) <= 0:
        return run
    dist = dist or distributed.current()
    device = resolve_device(config.device)
    loaded = load_model(ModelSpec(**run.request["model"]), cache_root, device=device, progress=progress)
    if loaded.fingerprint != run.request["fingerprints"]["model"]:
        raise CacheError("The model files changed since this run was computed; its stored draws belong to the old "
                         "model. Start a new run.")
    train_all = _training_set(run, loaded)
    have = set(run.train_ids)
    rest = [i for i in range(len(train_all)) if i not in have]
    ex = train_all.subset(rest)
    files = RunFiles(run.dir).ranked
    out = files.dir
    out.mkdir(exist_ok=True)
    autocast = torch.bfloat16 if config.score_dtype == "bfloat16" else None
    with distributed.main_holds_lock(dist, files.lock):
        if dist.all_ok(is_ranked(run.dir)):
            return open_run(run.dir, verify=dist.is_main)
        if dist.is_main and not (integrity.intact(files.examples) and
                                 (read_json(files.rows) or {}).get("ids") == rest):
            init = score_examples(loaded.model, lm_token_loss, ex, config.score_batch_size, device).cpu()
            write_json(files.rows, {"ids": rest, "n_train": len(train_all), "texts": ex.texts,
                                           "tokens": ex.tokens})
            integrity.save_checked({"train.mask": ex.mask, "init": init}, files.examples)
        mine = list(range(dist.rank, config.chains, dist.world))
        for pos, c in enumerate(mine):
            path = files.chain(c)
            if integrity.intact(path):  # kept from an interrupted attempt; a damaged one is computed again
                continue
            t0 = time.perf_counter()

            def report(ev: dict, c=c, pos=pos) -> None:
                if progress is not None:
                    progress({"stage": "rank", "chain": c, "chains": config.chains, "draw": ev["draw"],
                              "draws": ev["draws"], "rows": len(rest),
                              "fraction": (pos + ev["draw"] / ev["draws"]) / len(mine)})

            losses = score_at_draws(loaded.model, lm_token_loss, ex, ChainDraws(RunFiles(run.dir).draws(c)),
                                    config.score_batch_size, device, autocast, progress=report, draws=config.draws)
            save_chain(path, ChainTrace(losses={"train": losses}, sampling_loss=torch.zeros(0, dtype=torch.float64),
                                        seconds=time.perf_counter() - t0), config.trace_dtype)
        dist.barrier()
        integrity.seal_if_intact(dist, out, [files.examples, *files.chains(config.chains)],
                                 files.sealed_names(config.chains), "the ranked training texts",
                                 "Rank them again to recompute it.")
    return open_run(run.dir, verify=dist.is_main)
