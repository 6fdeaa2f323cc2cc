"""The runs in a cache: find one by its request, list them, delete one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .config import SamplerConfig
from .data import DataSpec, Query
from .errors import ConfigError
from .models import ModelSpec
from .runs import _prepare
from .scale import ScaleOptions


def find_run(model: ModelSpec, data: DataSpec, queries: list[Query], config: SamplerConfig,
             cache_root: str | Path = "cache", scale: ScaleOptions | None = None) -> Path | None:
    """The directory of a finished run for exactly this request, without computing anything (loads the model)."""
    cache_root = Path(cache_root)
    prep = _prepare(model, data, queries, config, cache_root, None, "cpu", scale)
    d = cache_root / "runs" / prep.key
    return d if (d / "COMPLETE").exists() else None


def list_runs(cache_root: str | Path = "cache") -> list[dict]:
    """One dict per run directory (finished or not), newest first."""
    out = []
    for d in (Path(cache_root) / "runs").glob("*") if (Path(cache_root) / "runs").exists() else []:
        try:
            req = json.loads((d / "request.json").read_text())
        except (OSError, ValueError):
            req = {}
        chains_done = len(list(d.glob("chain_*.safetensors")))
        out.append({
            "key": d.name, "dir": str(d), "complete": (d / "COMPLETE").exists(),
            "model": req.get("model_label", "?"), "data": (req.get("data") or {}).get("source", "?"),
            "query": (req.get("queries") or [{}])[0].get("prompt", "?") if req.get("queries") else "?",
            "completion": (req.get("queries") or [{}])[0].get("completion", "?") if req.get("queries") else "?",
            "n_queries": len(req.get("queries") or []) + len(list(d.glob("queries/*/COMPLETE"))),
            "config": req.get("config", {}), "created": req.get("created", d.stat().st_mtime),
            "chains_done": chains_done, "size_mb": sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) / 2**20,
        })
    return sorted(out, key=lambda r: -r["created"])


def delete_run(key: str, cache_root: str | Path = "cache") -> None:
    """Remove a run directory. Refuses keys that are not run directories (no path tricks)."""
    runs = (Path(cache_root) / "runs").resolve()
    d = (runs / key).resolve()
    if d.parent != runs or not d.is_dir():
        raise ConfigError(f"No run {key!r} in {runs}.")
    shutil.rmtree(d)
