"""Part 1 of `bif bench --interactive` alone: Start to the first provisional result of a demo run, and the job's
estimate 20 s after Start against the actual time (bench.interactive.first_provisional; minutes, not the hour the
whole benchmark takes).

    python -m bench.first_result [CACHE]      # default: a fresh folder under /tmp; needs the demo model built

Jobs the run starts afterwards (a finished demo run ranks its other training texts by itself) are cancelled on the
way out. Prints the load average with the figures.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench.interactive import _demo_request, first_provisional
from bif.core.config import preset
from bif.layout import Store
from bif.service import jobs


def main(root: Path) -> None:
    store, built = Store(root), Store(Path("cache")).models_dir  # reuse the demo model built in ./cache
    store.models_dir.mkdir(parents=True, exist_ok=True)
    for model in built.glob("demo-*") if built.is_dir() else []:
        if model.is_dir() and not (store.models_dir / model.name).exists():
            (store.models_dir / model.name).symlink_to(model.resolve())
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        r = first_provisional(str(root), _demo_request(str(root), preset("demo-cpu").to_dict()))
    finally:
        for j in jobs.list_jobs(root, active_only=True):
            jobs.cancel_job(j["id"], root)
    err = "n/a" if r["estimate_error"] is None else f"{r['estimate_error']:+.0%}"
    print(f"first provisional result {r['first_provisional_s']:.1f} s after Start; estimate at 20 s "
          f"{r['estimate_at_20s_s'] or float('nan'):.0f} s vs actual {r['actual_s']:.1f} s ({err}); "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bif-first-")))
