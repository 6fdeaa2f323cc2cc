"""A finished run opened from disk: `Run` (its losses, texts and query sets; `trace(i)` for the views), `QuerySet`,
`Partial` (what a provisional run holds), and `open_run`, which checks the stored checksums first.

A damaged added query set (or ranked/) is moved to quarantine/ by open_run: the run still opens, and
`Run.quarantined` says what was set aside and why.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from bif.core import integrity
from bif.core.config import SamplerConfig
from bif.core.files import changed_files
from bif.core.chainreader import ChainStack, chain_seconds, open_chain
from bif.core.trace import LossTrace, load_chain
from bif.errors import CacheError
from bif.layout import QueryFiles, RunFiles
from bif.lm.data import Query
from bif.store import ranked
from bif.store.request import RunRequest


MMAP_BYTES = int(os.environ.get("BIF_MMAP_BYTES", 1 << 30))  # open_run memory-maps traces larger than this
log = logging.getLogger("bif")


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
        self._sums: dict = {}  # its traces' shared series (LossTrace.sums): the training losses summed once

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
                         sampling_loss=self.sampling_loss, sums=self._sums), row

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
            if not chain_ok(p, ["train", "query"], config.draws, config.steps_per_chain, checksum=False):
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


def chain_ok(path: Path, names: list[str], draws: int, steps: int, checksum: bool = True) -> bool:
    """A finished chain file with the expected shapes and (with `checksum`) bytes that match its own checksum."""
    try:
        t = open_chain(path)
    except CacheError:
        return False
    shapes = all(f"losses.{k}" in t and t[f"losses.{k}"].shape[0] == draws for k in names) and \
        "sampling_loss" in t and t["sampling_loss"].shape == (steps,)
    return shapes and (not checksum or integrity.problem(path) is None)
