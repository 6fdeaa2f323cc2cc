"""Background jobs: a BIF run (or a replay for new queries) in a worker process that outlives the web page.

A job is a directory cache_root/jobs/<id>/ holding

    job.json        what to compute: kind ('run' or 'replay'), model, data, queries, config, cache_root
    status.json     state (queued, running, done, failed, cancelled), pid, times, result or error message
    progress.json   chain, draw, step, fraction, ETA and a short sampling-loss history per chain (live chart);
                    with several worker processes, rank r > 0 writes progress.rank{r}.json and job_status merges them
    cancel          present when the user asked to stop (the worker raises Cancelled at its next report)
    log.txt         the worker's stdout/stderr (tracebacks of internal errors go here, never to the page)

Start one with `start_job`; it runs `python -m bif.service.jobs <job_dir>` in its own session, on CPU as one process per
core under torchrun (the chains are spread over them; see default_procs). No streamlit import here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bif.dist import launch
from bif.errors import BIFError, Cancelled, ConfigError, user_message
from bif.lm import registry
from bif.lm.models import ModelSpec
from bif.service.jobspec import JobSpec, rank_job_spec
from bif.core.files import read_json, write_json
from bif.layout import JobFiles, Store, model_config, model_weights

ACTIVE = ("queued", "running")
HISTORY_POINTS = 200  # per chain, kept in progress.json for the live chart
WRITE_EVERY_S = 0.5
DIED = ("The worker process stopped without reporting a result (killed, or out of memory). Start the same run "
        "again to resume it: finished chains are kept. The details, if any, are in the job log: {log}")


def job_dir(job_id: str, cache_root: str | Path) -> Path:
    """The directory of a job; ValueError for ids that are not plain names (no path tricks)."""
    return Store(cache_root).job(job_id).dir


# ------------------------------------------------------------------------------------------- the app's side


def create_job(spec: JobSpec, cache_root: str | Path) -> str:
    """Write a queued job's directory without starting it (`start_job` starts one; tests call `run_job`)."""
    job_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    files = Store(cache_root).job(job_id)
    files.dir.mkdir(parents=True)
    write_json(files.spec, spec.to_json())
    write_json(files.status, {"state": "queued", "created": time.time()})
    return job_id


def start_job(spec: JobSpec, cache_root: str | Path) -> str:
    """Write the job's spec and start a detached worker (`python -m bif.service.jobs DIR`). Returns the job id.

    If an active job has the very same spec, its id is returned instead (a double click starts nothing new).
    """
    from filelock import FileLock

    store = Store(cache_root)
    store.jobs_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(store.jobs_start_lock)):  # two simultaneous starts: one job
        for job in list_jobs(cache_root, active_only=True):
            if job.get("spec") == spec:
                return job["id"]
        job_id = create_job(spec, cache_root)
        _launch(spec, store.job(job_id))
    return job_id


def _launch(spec: JobSpec, files) -> None:
    """Start the detached worker of a job (bif.layout.JobFiles) and record its pid (launcher.json)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    root = str(Path(__file__).resolve().parents[2])  # the repository (bif/service/jobs.py)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs = spec.procs or default_procs(spec)
    cmd = launch.worker_command(procs, ["bif.service.jobs", str(files.dir.resolve())])
    if procs > 1:  # chains spread over processes (bif.dist.distributed); torchrun stops them all if one fails
        env["OMP_NUM_THREADS"] = str(launch.threads_per_proc(procs))
    with open(files.log, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                cwd=root)
    write_json(files.launcher, {"pid": proc.pid, "pid_start": _start_time(proc.pid)})


def _merged_progress(files: JobFiles) -> dict:
    """The progress of rank 0, with the other ranks' chains merged into it.

    Each rank reports the fraction of its own chains; the job's fraction is their mean, its ETA their maximum.
    """
    main = read_json(files.progress()) or {}
    others = [p for p in (read_json(f) for f in files.other_progress()) if p]
    if not others or not main:
        return main
    ranks = [main, *others]
    merged = {**main, "history": {k: v for p in ranks for k, v in (p.get("history") or {}).items()}}
    if all("fraction" in p for p in ranks):
        merged["fraction"] = sum(p["fraction"] for p in ranks) / len(ranks)
    if all("eta_s" in p for p in ranks):
        merged["eta_s"] = max(p["eta_s"] for p in ranks)
    return merged


def default_procs(spec: JobSpec) -> int:
    """Worker processes for a job (bif.dist.launch.default_procs of its chains); a replay (new query on a cached
    run) spreads its chains the same way."""
    return launch.default_procs(spec.run.config.chains)


def job_status(job_id: str, cache_root: str | Path) -> dict:
    """State, progress and result of a job: a dict with id, state, message, progress, spec (JobSpec or None),
    result, log.

    A job whose worker is gone without writing a final state is reported as failed.
    """
    files = Store(cache_root).job(job_id)
    status = read_json(files.status)
    if status is None:
        return {"id": job_id, "state": "failed", "message": f"Job {job_id} not found.", "progress": {},
                "spec": None, "result": None, "log": str(files.log)}
    state = status.get("state", "failed")
    message = status.get("message", "")
    proc = status if status.get("pid") else read_json(files.launcher) or {}
    never_started = not proc.get("pid") and time.time() - status.get("created", 0) > 60
    if state in ACTIVE and (never_started or proc.get("pid") and not _alive(proc["pid"], proc.get("pid_start"))):
        # re-read: the worker may have finished between the two reads
        status = read_json(files.status) or status
        state = status.get("state", state)
        if state in ACTIVE:
            cancelled = files.cancel.exists()
            state = "cancelled" if cancelled else "failed"
            message = "Cancelled." if cancelled else DIED.format(log=files.log)
            write_json(files.status, {**status, "state": state, "message": message, "finished": time.time()})
    return {"id": job_id, "state": state, "message": message, "progress": _merged_progress(files),
            "spec": _read_spec(files), "result": status.get("result"),
            "created": status.get("created"), "finished": status.get("finished"), "log": str(files.log)}


def _read_spec(files: JobFiles) -> JobSpec | None:
    raw = read_json(files.spec)
    try:
        return JobSpec.from_json(raw) if isinstance(raw, dict) else None
    except ConfigError:
        return None


def cancel_job(job_id: str, cache_root: str | Path) -> None:
    """Ask the worker to stop at its next progress report (a few SGLD steps at most)."""
    files = Store(cache_root).job(job_id)
    if files.dir.is_dir():
        files.cancel.write_text(str(time.time()))


def list_jobs(cache_root: str | Path, active_only: bool = False) -> list[dict]:
    """Statuses of all jobs, newest first."""
    jobs = [job_status(i, cache_root) for i in Store(cache_root).job_ids()]
    return [j for j in jobs if j["state"] in ACTIVE] if active_only else jobs


def _start_time(pid: int) -> str | None:
    """The process start time from /proc (guards against a reused pid); None where /proc is missing."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None = None) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap our own finished child, which would otherwise linger as a zombie
    except (ChildProcessError, OSError):
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        return start is None or _start_time(pid) == start
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


# ---------------------------------------------------------------------------------------- the worker's side


class ProgressWriter:
    """The progress callback of a job: writes progress.json at most every WRITE_EVERY_S and checks for cancel."""

    def __init__(self, files: JobFiles | Path, rank: int = 0):
        self.files = files if isinstance(files, JobFiles) else JobFiles(Path(files))
        self.path = self.files.progress(rank)
        self.history: dict[int, list] = {}
        self.last_write = 0.0
        self.written_stage = None
        self.state: dict = {}
        self.run_key: str | None = None  # the run's folder once known: kept in every report

    def __call__(self, ev: dict) -> None:
        if self.files.cancel.exists():
            raise Cancelled("Cancelled by the user.")
        if ev.get("stage") == "sample":
            h = self.history.setdefault(int(ev["chain"]), [])
            h.append([int(ev["step"]), float(ev["sampling_loss"])])
            if len(h) > HISTORY_POINTS:
                h[:] = h[::2]
        self.run_key = ev.get("run_key") or self.run_key
        self.state = {**{k: v for k, v in ev.items() if isinstance(v, (int, float, str))},
                      **({"run_key": self.run_key} if self.run_key else {}),
                      "history": {str(k): v for k, v in self.history.items()}, "time": time.time()}
        now = time.time()
        last_step = ev.get("stage") == "sample" and ev.get("step") == ev.get("steps")
        new_stage = ev.get("stage") != self.written_stage
        if now - self.last_write >= WRITE_EVERY_S or last_step or new_stage:
            self.written_stage = ev.get("stage")
            self.flush()

    def flush(self) -> None:
        self.last_write = time.time()
        write_json(self.path, self.state)


def _compute(spec: JobSpec, progress: "ProgressWriter", is_main: bool):
    """What a job computes, on every rank alike: the run, the run with the spec's queries added, or ranked."""
    from bif.store import runs
    from bif.store.replay import add_queries

    if spec.kind in ("replay", "rank"):  # rank 0 checks the stored checksums; the others trust it
        run = runs.open_run(Store(spec.cache_root).run(spec.run_key).dir, verify=is_main)
        if spec.kind == "rank":
            from bif.store.rank import rank_all

            return rank_all(run, spec.cache_root, progress)
        return add_queries(run, list(spec.run.queries), spec.cache_root, progress)
    return runs.compute(spec.run, spec.cache_root, progress)


def _follower(files: JobFiles) -> str:
    """A rank > 0 of a multi-process job: computes its share, reports its chains' progress, honours cancel.

    The job's status is rank 0's to write."""
    progress = ProgressWriter(files, int(os.environ["RANK"]))  # also raises on cancel
    spec = JobSpec.from_json(json.loads(files.spec.read_text()))
    try:
        _compute(spec, progress, is_main=False)
        progress.state.update(fraction=1.0, eta_s=0.0)
        progress.flush()
    except Cancelled:
        return "cancelled"
    return "done"


def _rank_afterwards(spec: JobSpec, run) -> None:
    """Start the job that ranks a finished run's other training texts at its stored draws (bif.store.rank), for a
    built-in data set that asks for it (the demo corpus: bif.lm.registry)."""
    from bif.core.draws import open_draws
    from bif.store.rank import unranked

    data = registry.data(spec.run.data.source)
    if data and data.rank_all and unranked(run) > 0 and \
            open_draws(run.dir, run.config.chains) is not None:
        start_job(rank_job_spec(run, spec.cache_root), spec.cache_root)


def run_job(d: str | Path) -> str:
    """Execute the job in directory d (in this process). Returns the final state.

    Rank 0 never raises: every failure ends in status.json. A follower rank (RANK > 0) returns 'cancelled' on a
    cancel and otherwise raises what its share raised (torchrun then stops the job's other processes)."""
    files = JobFiles(Path(d))
    if int(os.environ.get("RANK", "0")) > 0:
        return _follower(files)
    status = read_json(files.status) or {}
    status.update(state="running", pid=os.getpid(), pid_start=_start_time(os.getpid()), started=time.time())
    write_json(files.status, status)
    progress = ProgressWriter(files)
    try:
        spec = JobSpec.from_json(json.loads(files.spec.read_text()))
        progress({"stage": "start"})
        run = _compute(spec, progress, is_main=True)
        index = run.queries.index(spec.query)
        progress.state.update(fraction=1.0, eta_s=0.0)
        progress.flush()
        status.update(state="done", result={"run_key": run.key, "query": index})
        if spec.kind == "run":
            try:
                _rank_afterwards(spec, run)
            except Exception:  # noqa: BLE001 - the run is done whatever happens to the follow-up
                traceback.print_exc()
    except Exception as e:  # noqa: BLE001 - every failure must end in a status, never a dead worker
        traceback.print_exc()
        message = user_message(e, log=str(files.log))
        status.update(state="cancelled" if isinstance(e, Cancelled) else "failed", message=message)
    status["finished"] = time.time()
    write_json(files.status, status)
    return status["state"]


# -------------------------------------------------------------------------------------------- cost estimate

# Rough single-thread CPU constants fitted to early measurements (docs/method.md §8) (demo model: 2.4 ms per 64-token
# sequence forward; SmolLM2-135M: 0.13 s): seconds per sequence ≈ A + B·params·tokens; a backward costs 2 forwards.
FORWARD_A = 1.6e-3
FORWARD_B = 1.5e-11
WORKER_START_S = 8.0  # python + torch + transformers import and model load
CPU_BUDGET_S = 1800.0  # a run that costs more than this here is offered the CPU approximation


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def block_layout(model: ModelSpec) -> tuple[str, int] | None:
    """(parameter-name prefix of the numbered blocks, number of blocks) of a model, without loading it; None when
    unknown. Built-ins from bif.lm.registry; a local directory from its config.json (Llama-style or GPT-2-style
    names)."""
    name = model.name_or_path
    if built_in := registry.model(name):
        return built_in.blocks
    try:
        cfg = json.loads(model_config(Path(name).expanduser()).read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    prefix = "transformer.h" if cfg.get("model_type") == "gpt2" else "model.layers"
    return (prefix, int(n)) if n else None


def _sampled_fraction(spec: JobSpec) -> float:
    """Rough share of the blocks that SGLD moves (1.0 = all parameters)."""
    patterns = spec.run.config.param_patterns
    layout = block_layout(spec.run.model)
    if not patterns or not layout:
        return 1.0
    return min(1.0, sum(p.startswith(layout[0] + ".") for p in patterns) / layout[1]) or 1.0


def cpu_approximation(spec: JobSpec, n_train: int, mean_tokens: float, blocks: int = 2) -> dict | None:
    """A variant of a job that this CPU can afford, or None when the model's blocks are unknown.

    It samples only the last `blocks` transformer blocks (an approximation, labelled on the results), ranks 24
    training samples (8 of them the most similar to the query: query_neighbours), and uses minibatches of 8;
    chains and draws stay (so findings remain possible). Returns {"spec", "seconds", "label", "settings"} (settings: the changed fields)."""
    layout = block_layout(spec.run.model)
    if layout is None:
        return None
    prefix, n = layout
    k = max(1, min(blocks, n))
    patterns = tuple(f"{prefix}.{i}.*" for i in range(n - k, n))
    run = dataclasses.replace(spec.run, config=spec.run.config.replace(param_patterns=patterns, batch_size=8),
                              data=dataclasses.replace(spec.run.data, n_scored=24, query_neighbours=8))
    new = dataclasses.replace(spec, run=run)
    cost = estimate_cost(new, n_train, mean_tokens)
    return {"spec": new, "seconds": cost["seconds"],
            "label": f"only the last {k} of {n} blocks sampled, {cost['n_scored']} samples ranked, minibatch 8",
            "settings": {"param_patterns": list(patterns), "batch_size": 8, "n_scored": 24,
                         "query_neighbours": 8}}


def model_params(model: ModelSpec) -> float:
    """Rough parameter count: known for built-ins, from the weight files' sizes for a local directory."""
    name = model.name_or_path
    if built_in := registry.model(name):
        return built_in.n_params
    path = Path(name).expanduser()
    size = sum(p.stat().st_size for p in model_weights(path))
    try:
        cfg = json.loads(model_config(path).read_text())
        dtype = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")
    except (OSError, ValueError):
        dtype = "float32"
    return size / (2 if "16" in dtype else 4) if size else 1e6


def training_size(texts: list[str]) -> tuple[int, float]:
    """(number of training texts, rough tokens per text: 3.5 characters a token), the data's part of estimate_cost."""
    return len(texts), sum(len(t) for t in texts) / max(len(texts), 1) / 3.5 + 1


def estimate_cost(spec: JobSpec, n_train: int, mean_tokens: float) -> dict:
    """Rough seconds for a job on this CPU, before starting it.

    cost ≈ chains × (steps × t_step + draws × (n_scored + n_queries) × t_forward) / processes + start-up. For a
    replay only the queries are scored. The constants are rough (single-thread CPU); the live ETA is the better guide.
    """
    cfg, data = spec.run.config, spec.run.data
    n_q = len(spec.run.queries)
    tokens = max(2.0, min(mean_tokens, data.max_length))
    t_fwd = FORWARD_A + FORWARD_B * model_params(spec.run.model) * tokens
    t_step = (1 + 2 * _sampled_fraction(spec)) * t_fwd * min(cfg.batch_size, n_train)  # forward + backward
    if data.n_scored is None:
        n_scored = n_train
    else:
        n_scored = min(n_train, data.n_scored)  # the number ranked (query_neighbours take places in it)
    scored = n_q if spec.kind == "replay" else n_scored + n_q
    sampling = cfg.chains * cfg.steps_per_chain * t_step
    scoring = cfg.chains * cfg.draws * scored * t_fwd
    procs = spec.procs or default_procs(spec)  # chains run side by side, one process per core
    slow = load_slowdown(procs)
    return {"seconds": WORKER_START_S + (sampling + scoring) / procs * slow, "sampling_s": sampling,
            "scoring_s": scoring, "n_scored": n_scored, "steps": cfg.chains * cfg.steps_per_chain,
            "draws": cfg.chains * cfg.draws, "processes": procs, "load_slowdown": slow,
            "note": f"Rough estimate for {procs} single-threaded CPU process(es)"
                    + (f", {slow:.1f}x slower for the machine's current load" if slow > 1 else "")
                    + "; once the run starts, the job panel's estimate comes from its own measured speed."}


def load_slowdown(procs: int) -> float:
    """How much slower `procs` new single-threaded processes run for the machine's load now: (load + procs) / cores
    when that exceeds 1 (the cores are shared), else 1."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1.0
    return max(1.0, (load + procs) / (os.cpu_count() or 1))


def format_seconds(s: float | None) -> str:
    """'45 s', '3 min', '1.2 h'."""
    if s is None or s != s:
        return "?"
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bif.service.jobs JOB_DIR")
    from bif.dist.distributed import join

    join()  # under torchrun: every rank joins the job's process group (a library call never starts one)
    sys.exit(0 if run_job(sys.argv[1]) in ("done", "cancelled") else 1)
