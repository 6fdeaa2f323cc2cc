"""Results while a run computes (anytime): the draws recorded so far, as a provisional Run.

A computing run's folder holds its inputs (request, examples, texts, losses at w*; written before sampling) and
one chain file per chain: finished (`chain_XXX.safetensors`) or growing (`chain_XXX.partial`, whose `written`
counter is bumped after each draw's data: bif.core.chainwriter.ChainWriter.commit). `open_partial` reads each chain's
counter first and then only the draws below it, so it never sees a torn draw, and takes the chains and the
number of draws that give the most draws in all (the same number from each chain: the estimators pool
(C, D) draws). On a finished run it gives exactly the finished run's traces (tests/test_partial.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from bif.core.config import SamplerConfig
from bif.core.chainreader import open_chain, written_draws
from bif.errors import CacheError
from bif.layout import RunFiles
from bif.lm.data import Query
from bif.store.grow import recorded_prefix
from bif.store.opened import Partial, QuerySet, Run

MIN_DRAWS = 2  # per chain: the first view comes as soon as burn-in is over (its error bars are wide)
MIN_CHAINS = 2  # the error bars (batch means across chains) need two; findings need 4 (bif.core.findings)


class _Moved(Exception):
    """A chain file changed under the reader (restarted or renamed): skip it this time."""


def _pread(m: np.ndarray, first: int, last: int) -> np.ndarray:
    """m[first:last] of a memory-mapped tensor by plain reads of its file: a file truncated under us (a chain
    restarting) gives a short read (_Moved), never a bus error as touching the mapping could."""
    if not isinstance(m, np.memmap):  # empty tensors are plain arrays
        return np.array(m[first:last])
    per = int(np.prod(m.shape[1:], dtype=np.int64)) * m.dtype.itemsize
    n = max(0, min(last, m.shape[0]) - first) * per
    with open(m.filename, "rb") as f:
        raw = os.pread(f.fileno(), n, m.offset + first * per)
    if len(raw) != n:
        raise _Moved
    return np.frombuffer(raw, dtype=m.dtype).reshape(-1, *m.shape[1:])


def chain_progress(run_dir: Path, chains: int) -> list[tuple[dict[str, np.ndarray] | None, int]]:
    """(mapped chain or None, complete draws) of each chain of a run folder, finished or growing. A run that
    grows (bif.store.grow) holds its prefix run's draws in chains it has not reached yet."""
    out = []
    prefix = recorded_prefix(run_dir)
    for c in range(chains):
        done, growing = RunFiles(Path(run_dir)).chain(c), RunFiles(Path(run_dir)).chain_partial(c)
        if prefix is not None and not done.exists() and not growing.exists():
            done = RunFiles(prefix.dir).chain(c)
        try:
            m = open_chain(done) if done.exists() else open_chain(growing) if growing.exists() else None
            written = 0 if m is None else int(_pread(m["written"], 0, 1)[0]) if "written" in m else \
                written_draws(m)
        except (CacheError, OSError, _Moved):  # renamed or restarted between the checks: next time
            m, written = None, 0
        out.append((m, written))
    return out


def pick_chains(written: list[int], min_draws: int = MIN_DRAWS, min_chains: int = MIN_CHAINS) -> tuple[list[int], int]:
    """The chains and common number of draws with the most draws in all (ties: more chains); ([], 0) if none."""
    best: tuple[int, int, list[int], int] = (0, 0, [], 0)
    for d in sorted(set(written)):
        chosen = [c for c, w in enumerate(written) if w >= d]
        if d >= min_draws and len(chosen) >= min_chains and (len(chosen) * d, len(chosen)) > best[:2]:
            best = (len(chosen) * d, len(chosen), chosen, d)
    return best[2], best[3]


def open_partial(run_dir: str | Path) -> Run | None:
    """The run as far as it has sampled: a Run whose `partial` says which chains and draws it holds.

    None while there is not enough yet (inputs not written, fewer than MIN_CHAINS chains with MIN_DRAWS draws).
    Only the run's own queries are included; the traces are loaded (a provisional view is for runs that fit
    in memory).
    """
    files = RunFiles(Path(run_dir))
    run_dir = files.dir
    if not files.init.exists():  # written last of the inputs
        return None
    try:
        request = json.loads(files.request.read_text())
        texts = json.loads(files.texts.read_text())
        ex = load_file(str(files.examples))
        init = load_file(str(files.init))
    except (OSError, ValueError):
        return None
    config = SamplerConfig.from_dict(request["config"])
    maps = chain_progress(run_dir, config.chains)
    chains, draws = pick_chains([w for _, w in maps])
    if not chains:
        return None

    def losses(name: str) -> np.ndarray:  # (C', d, n, P) float32, as open_run reads them
        return np.stack([_pread(maps[c][0][f"losses.{name}"], 0, draws).astype(np.float32) for c in chains])

    try:
        train = losses("train")
        query = losses("query")
    except (OSError, _Moved):
        return None
    own = QuerySet(key="own", queries=[Query(**q) for q in request["queries"]], losses=query,
                   mask=ex["query.mask"].numpy(), init=init["query"].numpy(), tokens=texts["query_tokens"])
    return Run(dir=run_dir, key=run_dir.name, request=request, train_losses=train,
               train_mask=ex["train.mask"].numpy(), train_init=init["train"].numpy(), train_texts=texts["train"],
               train_tokens=texts["train_tokens"], train_ids=request["scored_ids"],
               sampling_loss=np.zeros((len(chains), config.steps_per_chain)), query_sets=[own],
               partial=Partial(tuple(chains), draws, config.draws))
