"""`bif run --procs`: how many worker processes, whether they fit in memory, starting them under torchrun
(bif.dist.launch) and one line for a worker that failed."""

from __future__ import annotations

import os
import sys

from bif.errors import ConfigError


def procs_of(args, config) -> int:
    """--procs: 'auto' = bif.dist.launch.default_procs (on CPU one process per core up to the number of chains,
    at most 4; on a GPU, 1).

    A number must be between 1 and the number of CPU cores (GPUs, under CUDA); the memory bound is checked once
    the model is loaded (check_procs_memory)."""
    if "WORLD_SIZE" in os.environ:  # a worker under torchrun: the parent checked --procs
        return int(os.environ["WORLD_SIZE"])
    import torch

    if args.procs == "auto":
        from bif.dist.launch import default_procs

        return default_procs(config.chains)
    try:
        procs = int(args.procs)
    except ValueError:
        raise ConfigError(f"--procs {args.procs}: give a number of processes (e.g. --procs 2) or 'auto'.") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit, what = (torch.cuda.device_count(), "GPUs") if torch.cuda.is_available() else (cores, "CPU cores")
    if not 1 <= procs <= max(limit, 1):
        raise ConfigError(f"--procs {procs}: this machine has {limit} {what}; use 1 to {max(limit, 1)} (or 'auto'). "
                          "More processes than that only compete for the same cores and memory.")
    return procs


def check_procs_memory(args, loaded, data, config, procs: int) -> None:
    """OutOfMemory (with the estimate) when `procs` processes of this run do not fit in this machine's memory."""
    from bif.core.scale import ScaleOptions, check_fits, estimate_memory
    from bif.lm.data import load_texts

    scale = ScaleOptions(weights_dtype=args.weights_dtype, grad_checkpointing=args.grad_checkpointing,
                         offload_w_star=args.offload_w_star, memory_budget_gb=args.memory_budget_gb,
                         chain_groups=args.chain_groups)
    if not scale.check_memory:
        return
    n = len(load_texts(data.source))
    scored = n if data.n_scored is None else min(n, data.n_scored)  # query_neighbours take places in n_scored
    est = estimate_memory(loaded.model, config, scale, n_train=n, n_scored=scored, n_query=1,
                          seq_len=min(data.max_length, loaded.max_length) + 1, device="cpu",
                          processes_per_node=procs)
    try:
        check_fits(est)
    except MemoryError as e:
        raise ConfigError(f"--procs {procs}: {procs} processes of this run do not fit in memory. {e} "
                          "Use fewer processes (--procs 1).") from None


def relaunch(args, procs: int) -> int:
    """Run this `run` command as `procs` processes with torchrun; print our messages, not torchrun's noise."""
    import subprocess

    argv = list(sys.argv[1:])
    if "--completion" not in argv:
        argv += ["--completion", args.completion]
    if args.last_blocks:  # the parent resolved the blocks into patterns
        argv += ["--last-blocks", "0", "--set", args.set[-1]]
    from bif.dist.launch import threads_per_proc, torchrun_command

    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_proc(procs)), "BIF_PROGRESS_STDOUT": "1",
           "BIF_INPUTS_CHECKED": "1"}
    cmd = torchrun_command(procs, ["bif", *argv])
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
    if proc.returncode == 0:
        return 0
    errors = [e.strip() for e in proc.stderr.split("error: ")[1:]]  # ranks may write on the same line at once
    if errors:
        print(f"error: {errors[0].splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"error: {worker_failure(proc.stderr, procs)}", file=sys.stderr)
    return 1


def worker_failure(stderr: str, procs: int) -> str:
    """One line for a torchrun failure that printed no message of ours (a killed worker): what happened, and
    that rerunning resumes. torchrun's ChildFailedError report is not shown."""
    import re

    signal = re.search(r"Signal (\d+) \((SIG\w+)\)", stderr) or re.search(r"exitcode\s*:\s*-(\d+)", stderr)
    if signal:
        name = signal.group(2) if signal.lastindex and signal.lastindex > 1 else f"signal {signal.group(1)}"
        what = f"one of the {procs} worker processes was killed ({name}: out of memory, or stopped by someone)"
    else:
        raised = re.findall(r"^(\w+(?:Error|Exception)): (.+)$", stderr, flags=re.M)
        what = (f"one of the {procs} worker processes failed ({raised[-1][0]}: {raised[-1][1][:160]})" if raised
                else f"one of the {procs} worker processes stopped unexpectedly")
    return f"{what}. Finished chains are kept: run the same command again to resume (or use --procs 1)."
