"""The fresh processes the scale benchmarks measure in (so peak resident memory is each measurement's own):
`python -m bench.scale_bench _worker KIND ...` alone or under torchrun; the worker prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bif.dist.launch import torchrun_command


HERE = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_worker(args: list[str], timeout: float = 3600) -> dict:
    """Run a worker of this module in a fresh process; its last stdout line is JSON."""
    out = subprocess.run([sys.executable, "-m", "bench.scale_bench", *args], capture_output=True, text=True,
                         env=ENV, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def torchrun_worker(nproc: int, args: list[str]) -> dict:
    cmd = torchrun_command(nproc, ["bench.scale_bench", "_worker", *args])
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
