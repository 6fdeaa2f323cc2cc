"""Runs that grow: a run with more draws continues the chains of a finished shorter run with the same settings.

A run's lineage is its cache key without the number of draws (`lineage`): runs of one lineage share their
chains' first steps, so the shorter one's chain files, stored draws and saved chain states
(bif.core.chainstate, one `state_XXX.safetensors` per chain) are the longer one's prefix. `find_prefix` picks
the longest finished run of the lineage with fewer draws; `Prefix.seed` copies one chain's prefix into the new
run's writers and returns the state to continue from (bif.core.sampler.run_chain(resume=...)). The extended run
equals a fresh one bitwise (tests/test_grow.py); the prefix run is left as it was.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bif.core.chainstate import ChainState, load_state
from bif.core.draws import ChainDraws, DrawWriter
from bif.core.files import changed_files, read_json, write_json
from bif.core.chainreader import open_chain
from bif.core.chainwriter import ChainWriter
from bif.errors import CacheError
from bif.layout import RunFiles, Store, state_name
from bif.store.request import digest

def lineage(key_parts: dict) -> str:
    """The cache key of a run without its number of draws: runs of one lineage extend one another."""
    parts = {**key_parts, "sampling": {k: v for k, v in key_parts["sampling"].items() if k != "draws"}}
    return digest(parts)


@dataclass(frozen=True)
class Prefix:
    """A finished run whose chains the new run continues: its folder and draws per chain."""

    dir: Path
    draws: int

    def has_chain(self, chain: int, keep_draws: bool, draws_dtype: str) -> bool:
        """Whether chain `chain` can be continued: its state is saved, and its stored draws are there (with the
        same storage precision) exactly when the new run keeps draws."""
        if not RunFiles(self.dir).state(chain).exists():
            return False
        if not keep_draws:
            return True
        path = RunFiles(self.dir).draws(chain)
        try:
            return path.exists() and ChainDraws(path).dtype == draws_dtype
        except CacheError:
            return False

    def seed(self, chain: int, writer: ChainWriter, draws: DrawWriter | None) -> ChainState:
        """Copy chain `chain`'s recorded draws into the new run's writers; the state to continue from."""
        state = load_state(RunFiles(self.dir).state(chain))
        if state.draw != self.draws:
            raise CacheError(f"Chain state {state_name(chain)} of run {self.dir.name} holds {state.draw} draws, "
                             f"the run {self.draws}; delete the run's state files.")
        stored = open_chain(RunFiles(self.dir).chain(chain))
        for name in writer.specs:
            if name.startswith("losses."):
                writer.write_block(name[len("losses."):], 0, np.asarray(stored[name]))
        writer.commit(self.draws)
        if draws is not None:
            draws.copy_prefix(ChainDraws(RunFiles(self.dir).draws(chain)))
        return state


def record_prefix(run_dir: Path, prefix: Prefix) -> None:
    """Note in the growing run which run it continues (provisional views read the prefix's chains meanwhile)."""
    write_json(RunFiles(Path(run_dir)).grows_from, {"key": prefix.dir.name, "draws": prefix.draws})


def recorded_prefix(run_dir: Path) -> Prefix | None:
    """The run that `run_dir` continues, if it does and that run is still there."""
    info = read_json(RunFiles(Path(run_dir)).grows_from)
    if not isinstance(info, dict) or not isinstance(info.get("key"), str) or "/" in info["key"]:
        return None
    other = RunFiles(Path(run_dir).parent / info["key"])
    return Prefix(other.dir, int(info.get("draws", 0))) if other.is_complete else None


def find_prefix(cache_root: Path, lineage_key: str, draws: int, exclude: Path | None = None) -> Prefix | None:
    """The finished, intact run of this lineage with the most draws below `draws` (None if there is none)."""
    best = None
    for files in Store(cache_root).finished_runs():
        d = files.dir
        if exclude is not None and d.resolve() == Path(exclude).resolve():
            continue
        req = read_json(files.request) or {}
        have = (req.get("config") or {}).get("draws")
        if req.get("lineage") != lineage_key or not isinstance(have, int) or have >= draws:
            continue
        if best is not None and have <= best.draws:
            continue
        if not files.state(0).exists() or changed_files(d):
            continue
        best = Prefix(d, have)
    return best


def growth_estimate_s(run_dir: Path, draws: int, processes: int = 1) -> float:
    """Seconds of sampling to grow run `run_dir` to `draws` per chain, from its chains' own measured time.

    Each chain's recorded seconds over its steps give its speed (SGLD steps and the scoring of its draws alike);
    the new steps are (draws − the run's draws) × steps_between per chain; chains run `processes` at a time.
    """
    from bif.core.chainreader import chain_seconds

    files = RunFiles(Path(run_dir))
    cfg = (read_json(files.request) or {}).get("config") or {}
    chains, have = int(cfg.get("chains", 0)), int(cfg.get("draws", 0))
    steps = int(cfg.get("burn_in", 0)) + have * int(cfg.get("steps_between", 1))
    if not chains or not steps or draws <= have:
        return 0.0
    per_step = sum(chain_seconds(p) for p in files.chains(chains)) / chains / steps
    rounds = -(-chains // max(1, processes))
    return per_step * (draws - have) * int(cfg.get("steps_between", 1)) * rounds
