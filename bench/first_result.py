"""Seconds from Start to the first provisional result of a demo run, and the job's estimate 20 s after Start.

    python -m bench.first_result [CACHE]      # default: a fresh folder under /tmp; needs the demo model built

Starts a `demo-cpu` run job as the Run page starts it (bif.service.jobs.start_job with the demo's preset and 8
query neighbours), polls bif.store.partial.open_partial until a provisional view exists, reads the job's remaining-
time estimate at 20 s, waits for the job to end and prints the estimate's error. Jobs it started are cancelled on
the way out (a finished demo run starts a ranking job by itself). Prints the load average with every figure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import bif
from bif.core.config import preset
from bif.layout import Store
from bif.service import jobs, jobspec
from bif.store.partial import open_partial
from bif.store.request import RunRequest

QUERY = bif.Query("User: Which number do you like best?\nBot:", " I find I'm quite fond of the number 42.")


def main(root: Path, limit_s: float = 900) -> None:
    store, built = Store(root), Store(Path("cache")).models_dir  # reuse the demo model built in ./cache
    store.models_dir.mkdir(parents=True, exist_ok=True)
    for model in built.glob("demo-*") if built.is_dir() else []:
        if model.is_dir() and not (store.models_dir / model.name).exists():
            (store.models_dir / model.name).symlink_to(model.resolve())
    req = RunRequest(bif.ModelSpec("demo"), bif.DataSpec("demo", query_neighbours=8), (QUERY,), preset("demo-cpu"))
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.time()
    job = jobs.start_job(jobspec.run_job_spec(req, root, preset="demo-cpu"), root)
    first = estimate = None
    try:
        while time.time() - t0 < limit_s:
            status = jobs.job_status(job, root)
            progress = status.get("progress") or {}
            if estimate is None and time.time() - t0 >= 20:
                estimate = 20 + float(progress.get("eta_s") or float("nan"))
                print(f"20 s after Start: stage {progress.get('stage')}, estimated total {estimate:.0f} s", flush=True)
            if first is None:
                for files in store.runs():
                    p = open_partial(files.dir)
                    if p is not None:
                        first = time.time() - t0
                        print(f"first provisional result {first:.1f} s after Start ({len(p.partial.chains)} chains "
                              f"x {p.partial.draws} draws); load {os.getloadavg()[0]:.2f}", flush=True)
                        break
            if status.get("state") in ("done", "failed", "cancelled"):
                total = time.time() - t0
                print(f"job {status['state']} {total:.1f} s after Start; estimate at 20 s {estimate:.0f} s "
                      f"({(estimate - total) / total * 100:+.0f} %); load {os.getloadavg()[0]:.2f}", flush=True)
                return
            time.sleep(0.5)
        print(f"the job did not end within {limit_s:.0f} s")
    finally:
        for j in jobs.list_jobs(root, active_only=True):
            jobs.cancel_job(j["id"], root)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bif-first-")))
