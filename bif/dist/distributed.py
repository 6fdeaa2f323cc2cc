"""Runs across processes, GPUs and nodes with torch.distributed (launched by `torchrun`; gloo on CPU, NCCL on GPU).

The plan: the world's W processes form G = gcd(chains, W) groups of W/G consecutive ranks (override with
ScaleOptions.chain_groups). Group g samples chains g, g+G, g+2G, ... one after another. Every rank of a group
replays the chain's SGLD trajectory itself (same seeds, same math: no communication while sampling) and, at
each draw, scores its own share of the observed rows: the length-sorted scoring batches of a single-process
run, dealt round-robin, so every number is computed exactly as a single process computes it.

Files (in the run directory, which must be on a filesystem all ranks see):

    parts/chain_003.shard-1-of-2.safetensors   one rank's rows of chain 3: losses, row ids, sampling loss and
                                               a checksum of the weights at every draw (resume point per shard)
    chain_003.safetensors                      merged by the group's first rank once all shards are there:
                                               the same file a single-process run writes

Merging checks that the shards' sampling losses and weight checksums agree, i.e. that the ranks really ran the
same trajectory (bitwise on CPU; within `tolerance` on GPUs, where some kernels are not deterministic).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from bif.errors import BIFError, CacheError, ConfigError
from bif.core.examples import Examples, LossFn, score_batches, scoring_batches
from bif.core import integrity
from bif.core.chainreader import chain_seconds, open_chain, read_draws
from bif.core.chainwriter import ChainWriter
from bif.layout import RunFiles

log = logging.getLogger("bif")


class ReplicaMismatch(BIFError):
    """Ranks that share a chain did not run the same trajectory."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the world. The default is a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_ok(self, ok: bool) -> bool:
        """True when every rank passes ok=True (one all-reduce)."""
        if self.world == 1:
            return ok
        device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else "cpu"
        flag = torch.tensor([0 if ok else 1], device=device)
        torch.distributed.all_reduce(flag)
        return int(flag.item()) == 0


def current() -> Dist:
    """The process group that is already running (started by `join` or by the caller), else a single process.

    Never starts one: a library call (compute_run, add_queries, rank_all) with RANK/WORLD_SIZE in the environment
    but no running group is a single process."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                local_world=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), backend=dist.get_backend())


def join(timeout_s: float | None = None) -> Dist:
    """For programs started by torchrun (the CLI, the job worker): join the process group described by torchrun's
    environment (RANK, WORLD_SIZE, ...) when WORLD_SIZE > 1 and none is running yet; then `current()`.

    NCCL when CUDA is available (each process uses cuda:LOCAL_RANK), else gloo; the timeout is `timeout_s`, else
    BIF_DIST_TIMEOUT_S, else 4 hours."""
    dist = torch.distributed
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        timeout = datetime.timedelta(seconds=timeout_s or float(os.environ.get("BIF_DIST_TIMEOUT_S", 4 * 3600)))
        extra = {"device_id": torch.device("cuda", local)} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **extra)
    return current()


@contextlib.contextmanager
def main_holds_lock(dist: Dist, path: Path):
    """Rank 0 holds the file lock `path` (so another job on the same cache waits); every rank enters once it has it."""
    with FileLock(str(path)) if dist.is_main else contextlib.nullcontext():
        dist.barrier()
        yield


def deterministic_cuda() -> None:
    """Ask CUDA for deterministic kernels so that replicas of a chain stay bitwise equal (call before CUDA work)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


@dataclass(frozen=True)
class Plan:
    """Which rank samples which chains and scores which share of the rows."""

    chains: int
    world: int
    groups: int

    @property
    def group_size(self) -> int:
        return self.world // self.groups

    def group(self, rank: int) -> int:
        return rank // self.group_size

    def chains_of(self, rank: int) -> list[int]:
        return list(range(self.group(rank), self.chains, self.groups))

    def shard(self, rank: int) -> tuple[int, int]:
        """(index, count) of this rank's share within its group."""
        return rank % self.group_size, self.group_size

    def leader(self, chain: int) -> int:
        """The rank that merges chain `chain` (first rank of its group)."""
        return (chain % self.groups) * self.group_size


def make_plan(chains: int, world: int, groups: int | None = None) -> Plan:
    """The balanced plan: G = gcd(chains, world) groups unless `groups` is given (it must divide world)."""
    g = groups or math.gcd(chains, world)
    if world % g or g > chains:
        raise ConfigError(f"chain_groups={g} must divide the number of processes ({world}) and be at most the "
                          f"number of chains ({chains}).")
    return Plan(chains=chains, world=world, groups=g)


def shard_rows(examples: Examples, batch_size: int, index: int, count: int) -> list[torch.Tensor]:
    """Share `index` of `count`: every count-th scoring batch (balanced, as batches are sorted by length)."""
    return scoring_batches(examples, batch_size)[index::count]


def score_at_w_star(dist: Dist, model: torch.nn.Module, loss_fn: LossFn, observed: dict[str, Examples],
                    batch_size: int, device, run_dir: Path) -> dict[str, torch.Tensor] | None:
    """Losses at w* of every observed set, {name: (n, P) float32 on the CPU}, returned on rank 0 (None elsewhere).

    The W processes share the work: rank r scores every W-th scoring batch (the batches of `score_examples`, so
    the numbers equal a single process's) and writes parts/init.rank-r-of-W.safetensors; rank 0 assembles them.
    """
    from safetensors.torch import load_file

    from bif.core.examples import score_examples
    from bif.core.files import save_tensors

    if dist.world == 1:
        return {k: score_examples(model, loss_fn, ex, batch_size, device).cpu() for k, ex in observed.items()}
    files = RunFiles(Path(run_dir))
    part = files.init_part(dist.rank, dist.world)
    part.parent.mkdir(parents=True, exist_ok=True)
    mine = {}
    for k, ex in observed.items():
        batches = scoring_batches(ex, batch_size)[dist.rank::dist.world]
        rows = torch.cat(batches) if batches else torch.zeros(0, dtype=torch.long)
        mine[f"rows.{k}"] = rows
        mine[f"losses.{k}"] = score_batches(model, loss_fn, ex, batches, device).cpu()
    save_tensors(mine, part)
    dist.barrier()
    if not dist.is_main:
        return None
    out = {k: torch.zeros(len(ex), ex.positions, dtype=torch.float32) for k, ex in observed.items()}
    parts = [files.init_part(r, dist.world) for r in range(dist.world)]
    for path in parts:
        t = load_file(str(path))
        for k in observed:
            out[k][t[f"rows.{k}"]] = t[f"losses.{k}"]
    for path in parts:
        path.unlink()
    return out


def part_path(run_dir: Path, chain: int, index: int, count: int) -> Path:
    return RunFiles(Path(run_dir)).part(chain, index, count)


def part_writer(run_dir: Path, chain: int, index: int, count: int, rows: dict[str, torch.Tensor],
                observed: dict[str, Examples], draws: int, steps: int, dtype: str) -> ChainWriter:
    """The writer of one shard: losses (D, rows, P) per observed set, their row ids, and the draw checksums."""
    path = part_path(run_dir, chain, index, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    shapes = {k: (draws, len(rows[k]), ex.positions) for k, ex in observed.items()}
    extra = {f"rows.{k}": ((len(rows[k]),), np.int64) for k in observed}
    extra["checksum"] = ((draws,), np.float64)
    w = ChainWriter(path, shapes, steps, dtype, extra)
    for k in observed:
        w.put(f"rows.{k}", rows[k].numpy().astype(np.int64))
    return w


def part_done(run_dir: Path, chain: int, index: int, count: int) -> bool:
    """Whether this shard is written whole (its bytes match its own checksum, bif.core.integrity)."""
    return integrity.intact(part_path(run_dir, chain, index, count))


def merge_chain(run_dir: Path, chain: int, count: int, sizes: dict[str, tuple[int, int]], draws: int, steps: int,
                dtype: str, tolerance: float = 0.0, max_bytes: int = 1 << 27) -> Path:
    """Merge the `count` shards of a chain into chain_XXX.safetensors, a block of draws at a time.

    `sizes` maps each observed set to (rows, positions). ReplicaMismatch if the shards' sampling losses or weight
    checksums differ by more than `tolerance` (relative); CacheError if a shard is missing or rows are not covered
    exactly once. The shards are deleted afterwards.
    """
    paths = [part_path(run_dir, chain, i, count) for i in range(count)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise CacheError(f"Chain {chain}: shards {missing} are missing; run the same command again to compute them.")
    if damaged := [p for p in paths if integrity.problem(p)]:
        [p.unlink() for p in damaged]
        raise CacheError(f"Chain {chain}: shards {[p.name for p in damaged]} were damaged after they were written "
                         "and were removed; run the same command again to compute them.")
    parts = [open_chain(p) for p in paths]
    ref_loss, ref_sum = np.asarray(parts[0]["sampling_loss"]), np.asarray(parts[0]["checksum"])
    for i, p in enumerate(parts[1:], 1):
        for name, ref in (("sampling loss", ref_loss), ("weight checksum", ref_sum)):
            other = np.asarray(p["sampling_loss" if name == "sampling loss" else "checksum"])
            rel = np.abs(other - ref) / np.maximum(np.abs(ref), 1e-30)
            if rel.size and rel.max() > tolerance:
                raise ReplicaMismatch(
                    f"Chain {chain}: shard {i} ran a different trajectory than shard 0 ({name} differs by "
                    f"{rel.max():.2e} relative at index {int(rel.argmax())}). Processes sharing a chain must "
                    "compute identically: same hardware and library versions, deterministic kernels. Delete "
                    f"{paths[0].parent} and rerun, or use chain_groups equal to the number of chains.")
    seconds = max(chain_seconds(p) for p in paths)
    out = ChainWriter(RunFiles(Path(run_dir)).chain(chain), {k: (draws, n, P) for k, (n, P) in sizes.items()},
                      steps, dtype)
    try:
        for k, (n, P) in sizes.items():
            seen = np.zeros(n, dtype=np.int64)
            for p in parts:
                seen[np.asarray(p[f"rows.{k}"])] += 1
            if not np.all(seen == 1):
                raise CacheError(f"Chain {chain}: the shards do not cover the rows of {k!r} exactly once. "
                                 f"Delete {paths[0].parent} and rerun.")
            step = max(1, max_bytes // max(1, n * P * 4))
            for d0 in range(0, draws, step):
                block = np.zeros((min(step, draws - d0), n, P), dtype=np.float32)
                for p in parts:
                    block[:, np.asarray(p[f"rows.{k}"])] = read_draws(p[f"losses.{k}"], d0, d0 + step)
                out.write_block(k, d0, block)
        out.finish(ref_loss, seconds)
    except BaseException:
        out.discard()
        raise
    del parts
    for p in paths:
        p.unlink()
    return out.path
