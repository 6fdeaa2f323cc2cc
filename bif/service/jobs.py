"""Background jobs: a BIF run (or a replay for new queries) in a worker process that outlives the web page.

A job is a directory cache_root/jobs/<id>/ holding

    job.json        what to compute: kind ('run' or 'replay'), model, data, queries, config, cache_root
    status.json     state (queued, running, done, failed, cancelled), pid, times, result or error message
    progress.json   chain, draw, step, fraction, ETA and a short sampling-loss history per chain (live chart);
                    with several worker processes, rank r > 0 writes progress.rank{r}.json and job_status merges them
    cancel          present when the user asked to stop (the worker raises Cancelled at its next report)
    log.txt         the worker's stdout/stderr (tracebacks of internal errors go here, never to the page)

This module is the app's side: start a job (`start_job` runs `python -m bif.service.worker <job_dir>` in its own
session, on CPU as one process per core under torchrun: the chains are spread over them, see default_procs), read its
status, cancel it. The worker's side is bif.service.worker, the cost estimate before a start bif.service.cost. No
streamlit import here.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from bif.dist import launch
from bif.errors import ConfigError
from bif.service.jobspec import JobSpec
from bif.core.files import read_json, write_json
from bif.layout import JobFiles, Store

ACTIVE = ("queued", "running")
WORKER_START_S = 8.0  # seconds before a worker computes: python + torch + transformers import and model load
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
    """Write the job's spec and start a detached worker (`python -m bif.service.worker DIR`). Returns the job id.

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
    cmd = launch.worker_command(procs, ["bif.service.worker", str(files.dir.resolve())])
    if procs > 1:  # chains spread over processes (bif.dist.distributed); torchrun stops them all if one fails
        env["OMP_NUM_THREADS"] = str(launch.threads_per_proc(procs))
    with open(files.log, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                cwd=root)
    write_json(files.launcher, {"pid": proc.pid, "pid_start": process_start_time(proc.pid)})


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


def process_start_time(pid: int) -> str | None:
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
        return start is None or process_start_time(pid) == start
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def format_seconds(s: float | None) -> str:
    """'45 s', '3 min', '1.2 h'."""
    if s is None or s != s:
        return "?"
    if s < 90:
        return f"{max(s, 1):.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
