"""How many worker processes share a run, and the torchrun command line that starts them.

The one owner of both for the programs that start workers: `python -m bif run --procs` (bif.cli.workers) and the app's
background jobs (bif.service.jobs). Under torchrun each worker joins the process group
(bif.dist.distributed).
"""

from __future__ import annotations

import os
import sys

MAX_AUTO_PROCS = 4  # 'auto' never starts more (the CPU benefit flattens, memory grows per process)


def default_procs(chains: int) -> int:
    """Worker processes for a run of `chains` chains: on CPU one per core up to the number of chains (at most
    MAX_AUTO_PROCS); with a GPU, 1.

    Chains are independent, so on a 2-core machine two single-threaded processes nearly halve the wall time.
    """
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(chains, os.cpu_count() or 1, MAX_AUTO_PROCS))


def threads_per_proc(procs: int) -> int:
    """OMP_NUM_THREADS for each of `procs` workers on this machine: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // procs)


def torchrun_command(procs: int, module_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node=P -m MODULE ARGS...` on this interpreter.

    `module_args` is the module and its arguments, e.g. ["bif", "run", ...] or ["bif.service.worker", DIR];
    torchrun stops every worker if one fails.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
            "-m", *module_args]


def worker_command(procs: int, module_args: list[str]) -> list[str]:
    """`python -m MODULE ARGS...` for one process, the torchrun command line for several."""
    return torchrun_command(procs, module_args) if procs > 1 else [sys.executable, "-m", *module_args]
