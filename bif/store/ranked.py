"""A run's ranked/ folder read back: the training texts ranked after the run (bif.store.rank writes them), merged
into an opened run by `open_run`. Apart from rank.py so that opening a run does not import the ranking job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from bif.core.files import changed_files, read_json
from bif.core.trace import load_chain
from bif.errors import CacheError
from bif.layout import RunFiles


def ranked_dir(run_dir: Path) -> Path:
    return RunFiles(Path(run_dir)).ranked.dir


def is_ranked(run_dir: Path) -> bool:
    """Whether the run's other training texts have been ranked (the folder is sealed)."""
    return RunFiles(Path(run_dir)).ranked.is_complete


def merge(run, verify: bool | str = True) -> None:
    """Append a complete ranked/ folder's rows to an opened in-memory run (open_run calls this), in place."""
    files = RunFiles(run.dir).ranked
    out = files.dir
    if not is_ranked(run.dir) or not isinstance(run.train_losses, np.ndarray):
        return  # not ranked yet, or a memory-mapped run (too large to merge in memory): the subset stays
    if verify and (bad := changed_files(out, rehash=verify == "full")):
        raise CacheError(f"The ranked training texts of run {run.key} are corrupt: {bad} changed after they were "
                         f"written. Delete the folder {out} and rank them again.")
    rows = read_json(files.rows) or {}
    ids = [int(i) for i in rows.get("ids", [])]
    config = run.config
    t = load_file(str(files.examples))
    extra = np.stack([load_chain(p, ["train"], config.draws, 0).losses["train"].numpy()
                      for p in files.chains(config.chains)])  # (C, D, m, P)
    texts, tokens = rows.get("texts") or [], rows.get("tokens") or []
    if len(texts) != len(ids) or len(tokens) != len(ids):
        raise CacheError(f"The ranked training texts of run {run.key} are incomplete. Delete the folder {out} and "
                         "rank them again.")
    order = np.argsort(np.array(run.train_ids + ids), kind="stable")
    run.train_losses = np.concatenate([run.train_losses, extra], axis=2)[:, :, order]
    run.train_mask = np.concatenate([run.train_mask, t["train.mask"].numpy()])[order]
    run.train_init = np.concatenate([run.train_init, t["init"].numpy()])[order]
    run.train_texts = [(run.train_texts + texts)[j] for j in order]
    run.train_tokens = [(run.train_tokens + tokens)[j] for j in order]
    run.train_ids = [(run.train_ids + ids)[j] for j in order]
    n = int(rows.get("n_train", len(run.train_ids)))
    run.request = {**run.request, "how_scored": f"all {n} training samples ({len(ids)} of them ranked after the "
                                                "run, at its stored draws)", "ranked_after": len(ids)}

