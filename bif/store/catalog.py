"""The runs in a cache: find one by its request (with or without loading the model), list, verify, delete; and the
training files uploaded for them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np

from bif.core.config import SamplerConfig
from bif.lm import registry
from bif.lm.data import DataSpec, Query
from bif.errors import CacheError, ConfigError, RunBusy, RunNotFound
from bif.core.files import changed_files, read_json
from bif.layout import RunFiles, Store
from bif.lm.models import ModelSpec
from bif.store.request import RunRequest
from bif.store.prepare import prepare
from bif.core.scale import ScaleOptions


def find_run(model: ModelSpec, data: DataSpec, queries: list[Query], config: SamplerConfig,
             cache_root: str | Path = "cache", scale: ScaleOptions | None = None) -> Path | None:
    """The directory of a finished run for exactly this request, without computing anything (loads the model)."""
    cache_root = Path(cache_root)
    prep = prepare(RunRequest(model, data, tuple(queries), config, scale or ScaleOptions()), cache_root, None, "cpu")
    files = Store(cache_root).run(prep.key)
    return files.dir if files.is_complete else None


def list_runs(cache_root: str | Path = "cache") -> list[dict]:
    """One dict per run directory (finished or not), newest first."""
    out = []
    for files in Store(cache_root).runs():
        d = files.dir
        try:
            req = json.loads(files.request.read_text())
        except (OSError, ValueError):
            req = {}
        chains_done = len(files.existing_chains())
        complete = files.is_complete
        out.append({
            "key": d.name, "dir": str(d), "complete": complete, "started": bool(req),
            "state": "done" if complete else "partial" if req else "failed at start",
            "verdict": _verdict(d, req.get("config", {}), chains_done) if complete else None,
            "model": req.get("model_label", "?"), "data": (req.get("data") or {}).get("source", "?"),
            "query": (req.get("queries") or [{}])[0].get("prompt", "?") if req.get("queries") else "?",
            "completion": (req.get("queries") or [{}])[0].get("completion", "?") if req.get("queries") else "?",
            "n_queries": len(req.get("queries") or []) + len(files.query_sets()),
            "config": req.get("config", {}), "created": req.get("created", d.stat().st_mtime),
            "chains_done": chains_done, "size_mb": sum(p.stat().st_size for p in files.files()) / 2**20,
        })
    return sorted(out, key=lambda r: -r["created"])


def _verdict(run_dir: Path, config: dict, chains: int) -> str | None:
    """The diagnostics verdict of a finished run from its sampling losses alone (read lazily; cheap)."""
    from bif.core.diagnostics import loss_verdict
    from bif.core.chainreader import open_chain

    try:
        losses = np.stack([np.asarray(open_chain(p)["sampling_loss"]) for p in RunFiles(run_dir).chains(chains)])
        return loss_verdict(losses, int(config["burn_in"]))["verdict"]
    except (CacheError, KeyError, OSError, ValueError):
        return None


def verify_run(key: str, cache_root: str | Path = "cache") -> list[str]:
    """Hash every file of a finished run and its added query sets again (e.g. after copying it from a cluster).

    Returns the paths (relative to the run) that are missing or changed; [] when the run is intact.
    CacheError if the run is not finished."""
    files = _run_files(key, cache_root)
    if not files.is_complete:
        raise CacheError(f"Run {key} is not complete; nothing to verify. Start it again to resume, or delete it.")
    bad = changed_files(files.dir, rehash=True)
    for q in files.query_sets():
        bad += [str(q.dir.relative_to(files.dir) / n) for n in changed_files(q.dir, rehash=True)]
    return bad


KEY_RE = re.compile(r"[0-9a-f]{16}")  # a run key: bif.store.request.RunRequest.key, 16 hex digits


def is_run_key(key) -> bool:
    return isinstance(key, str) and KEY_RE.fullmatch(key) is not None


def _run_files(key: str, cache_root: str | Path) -> RunFiles:
    """The folder of run `key` inside the cache (the only way a key becomes a path: no path tricks).

    ConfigError if `key` is not a run key (16 hex digits); RunNotFound if the cache has no such run."""
    if not is_run_key(key):
        raise ConfigError(f"{str(key)[:80]!r} is not a run key (16 hex digits, e.g. 3f2a9c0d1b4e5f67); "
                          "`bif runs` lists them.")
    store = Store(cache_root)
    files = store.run_checked(key)
    if files is None:
        raise RunNotFound(f"No run {key} in {store.runs_dir.resolve()}; `bif runs` lists them.")
    return files


def run_dir(key: str, cache_root: str | Path) -> Path:
    """The folder of run `key` (see _run_files)."""
    return _run_files(key, cache_root).dir




def damaged_files(key: str, cache_root: str | Path) -> list[str]:
    """The files of finished run `key` that changed since it was sealed (cheap: only files whose size or mtime
    changed are hashed again); [] when it is intact."""
    return changed_files(run_dir(key, cache_root))


def is_busy(d: Path) -> bool:
    """Whether a process holds the lock of run folder `d`, of one of its query sets or of its ranked texts (it is
    being computed)."""
    with _locked(d, wait=False) as ok:
        return not ok


@contextlib.contextmanager
def _locked(d: Path, wait: bool = False):
    """Hold the locks of run folder `d`, its query sets and its ranked texts; yields False (holding none) if one
    is taken."""
    from filelock import FileLock, Timeout

    held = []
    try:
        files = RunFiles(d)
        queries = sorted(files.queries_dir.iterdir()) if files.queries_dir.is_dir() else []
        for path in [files.lock, *(files.query(q.name).lock for q in queries), files.ranked.lock]:
            if not path.parent.is_dir():
                continue
            lock = FileLock(str(path))
            lock.acquire(timeout=-1 if wait else 0)
            held.append(lock)
        yield True
    except Timeout:
        yield False
    finally:
        for lock in reversed(held):
            lock.release()


def delete_run(key: str, cache_root: str | Path = "cache") -> None:
    """Remove a run directory. Refuses keys that are not run keys, and runs being computed (RunBusy)."""
    d = run_dir(key, cache_root)
    with _locked(d) as ok:
        if not ok:
            raise RunBusy(f"Run {key} is being computed by another process (it holds the run's lock). Wait for it "
                          "to finish, or cancel it (Ctrl-C, or Cancel in the app), then delete it.")
        shutil.rmtree(d)


def run_signature(d: str | Path) -> str:
    """A string that changes when a run is completed, gains a query set or ranks its other training texts (a key for
    caching an opened run)."""
    marks = RunFiles(Path(d)).markers()
    return ";".join(f"{m.parent.name}:{m.stat().st_mtime_ns}" for m in marks if m.exists())


def save_upload(cache_root: str | Path, content: bytes, name: str) -> Path:
    """Stores an uploaded training file under its content's hash (the same file uploaded twice is stored once) and
    with `name`'s suffix (which says its format). Returns its path."""
    path = Store(cache_root).upload(hashlib.sha256(content).hexdigest()[:16], Path(name).suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(content)
    return path


def _changed_since(source: str, created: float) -> bool:
    """True if a file (or a directory's files) on disk were modified after the run was created."""
    if registry.is_builtin(source):
        return False
    p = Path(source)
    files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")] if p.is_dir() else (
        [p] if p.exists() else [])
    return not files or max(f.stat().st_mtime for f in files) > created


def find_cached(request: RunRequest, cache_root: str | Path) -> dict | None:
    """A finished run for this request, by comparing requests (no model load, so it answers at once).

    Returns {"run_key", "query", "exact": True} when the run holds the request's first query (own or replayed),
    {"run_key", "exact": False} when only model, data and the settings that shape its chains match
    (RunRequest.settings_key; the query can be added by replay), or None. Runs whose model directory or
    training file changed on disk after they were made are skipped.
    """
    want = request.queries[0]
    base = None
    for files in Store(cache_root).finished_runs():
        d = files.dir
        req = read_json(files.request)
        try:
            stored = RunRequest.from_json(req) if isinstance(req, dict) else None
        except ConfigError:
            stored = None
        if stored is None or (stored.model, stored.data) != (request.model, request.data) or \
                stored.settings_key() != request.settings_key():
            continue
        created = req.get("created", 0)
        if _changed_since(stored.model.name_or_path, created) or _changed_since(stored.data.source, created):
            continue
        queries = list(stored.queries)
        for q in files.query_sets():  # the order Run.queries uses
            queries += [Query(**x) for x in (read_json(q.meta) or {}).get("queries", [])]
        if want in queries:
            return {"run_key": d.name, "query": queries.index(want), "exact": True}
        base = base or {"run_key": d.name, "exact": False}
    return base
