"""The worker of a background job (bif.service.jobs): `python -m bif.service.worker JOB_DIR`, alone or on every rank
under torchrun. It reads job.json once (JobSpec), computes, reports progress.json (ProgressWriter, which also honours
a cancel) and ends in status.json; a finished run on a built-in data set that asks for it (the demo corpus) goes on
to a job that ranks every training text. No streamlit import here.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from bif.core.files import read_json, write_json
from bif.errors import Cancelled, user_message
from bif.layout import JobFiles, Store
from bif.lm import registry
from bif.service import jobs
from bif.service.jobspec import JobSpec, rank_job_spec

BACKGROUND_NICE = 10  # CPU priority of a background job's worker: a question asked in the app comes first
HISTORY_POINTS = 200  # per chain, kept in progress.json for the live chart
WRITE_EVERY_S = 0.5


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
    from bif.store.replay import add_queries, carry_queries

    if spec.kind in ("replay", "rank"):  # rank 0 checks the stored checksums; the others trust it
        run = runs.open_run(Store(spec.cache_root).run(spec.run_key).dir, verify=is_main)
        if spec.kind == "rank":
            from bif.store.rank import rank_all

            return rank_all(run, spec.cache_root, progress)
        return add_queries(run, list(spec.run.queries), spec.cache_root, progress)
    return carry_queries(runs.compute(spec.run, spec.cache_root, progress), spec.cache_root, progress)


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
        jobs.start_job(rank_job_spec(run, spec.cache_root), spec.cache_root)


def yield_cpu(d: str | Path) -> int:
    """In a worker process of a background job (JobSpec.background), lower its CPU priority by BACKGROUND_NICE and
    say so in the job's log. Returns the process's niceness (unchanged for other jobs, or where the OS has none)."""
    try:
        background = JobSpec.from_json(json.loads(JobFiles(Path(d)).spec.read_text())).background
    except (OSError, ValueError):
        return 0  # run_job reports what is wrong with the job
    if not hasattr(os, "nice"):
        return 0
    if not background:
        return os.nice(0)
    level = os.nice(BACKGROUND_NICE)
    try:  # Linux groups a session's processes (autogroup, on by default) and shares the CPU between the groups:
        Path("/proc/self/autogroup").write_text(str(level))  # a niceness counts only inside its group otherwise
    except OSError:
        pass
    print(f"background job: CPU priority lowered (nice {level}) so that questions asked meanwhile come first",
          flush=True)
    return level


def run_job(d: str | Path) -> str:
    """Execute the job in directory d (in this process). Returns the final state.

    Rank 0 never raises: every failure ends in status.json. A follower rank (RANK > 0) returns 'cancelled' on a
    cancel and otherwise raises what its share raised (torchrun then stops the job's other processes)."""
    files = JobFiles(Path(d))
    if int(os.environ.get("RANK", "0")) > 0:
        return _follower(files)
    status = read_json(files.status) or {}
    status.update(state="running", pid=os.getpid(), pid_start=jobs.process_start_time(os.getpid()),
                  started=time.time())
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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bif.service.worker JOB_DIR")
    from bif.core.allocator import keep_freed_memory
    from bif.dist.distributed import join

    keep_freed_memory()  # freed tensors are reused, not faulted in again (bif.core.allocator)
    yield_cpu(sys.argv[1])  # ranking the rest of the training set gives way to questions asked in the app
    join()  # under torchrun: every rank joins the job's process group (a library call never starts one)
    sys.exit(0 if run_job(sys.argv[1]) in ("done", "cancelled") else 1)
