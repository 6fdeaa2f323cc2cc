"""Large models: bfloat16 weights, gradient checkpointing, w* offloading, and a memory estimate checked up front.

`ScaleOptions` are the knobs that decide *how* a run is computed, not which posterior it samples (except the
weights' dtype, which is part of a run's key when it is not float32). `estimate_memory` adds up the model, the
sampler state, the activations of one SGLD step and of one scoring batch, and the trace; `check_fits` turns a
run that cannot fit into a `BIFError` that says what to change, before anything is sampled.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from bif.core.config import SamplerConfig
from bif.errors import BIFError, ConfigError

log = logging.getLogger("bif")
GiB = 1 << 30
WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class OutOfMemory(BIFError, MemoryError):
    """The run does not fit in the device's (or the host's) memory, or the trace does not fit on disk."""


@dataclass(frozen=True)
class ScaleOptions:
    """How a run is computed on big hardware. Defaults reproduce a plain single-process float32 run."""

    weights_dtype: str = field(default="float32", metadata={
        "help": "'bfloat16' stores the model in bf16 (half the memory, faster on GPUs); the sampled parameters "
                "move through float32 master copies. Changes the run (it is part of the cache key)."})
    grad_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute each transformer block's activations in the backward pass of the SGLD step: "
                "activation memory of one block instead of all, for about one extra forward pass per step."})
    offload_w_star: bool = field(default=False, metadata={
        "help": "Keep the copy of w* (needed for the localization term) in host memory instead of on the GPU; "
                "costs one host-to-device copy of the sampled parameters per step."})
    memory_budget_gb: float | None = field(default=None, metadata={
        "help": "Refuse to start when the estimate exceeds this many GiB (default: what the device has free)."})
    check_memory: bool = field(default=True, metadata={"help": "Estimate memory and refuse runs that cannot fit."})
    chain_groups: int | None = field(default=None, metadata={
        "help": "Distributed runs: how many chains run at once, each on world_size/chain_groups processes that "
                "share its scoring (default gcd(chains, world_size)). Must divide the number of processes."})

    def __post_init__(self) -> None:
        if self.weights_dtype not in WEIGHT_DTYPES:
            raise ConfigError(f"weights_dtype must be one of {sorted(WEIGHT_DTYPES)} (got {self.weights_dtype!r}).")
        if self.memory_budget_gb is not None and not self.memory_budget_gb > 0:
            raise ConfigError("memory_budget_gb must be > 0.")
        if self.chain_groups is not None and self.chain_groups < 1:
            raise ConfigError("chain_groups must be ≥ 1.")

    def key(self) -> dict:
        """The part of these options that changes the sampled trajectory (empty for the defaults)."""
        return {} if self.weights_dtype == "float32" else {"weights_dtype": self.weights_dtype}

    def to_dict(self) -> dict:
        return asdict(self)


def apply_weights_dtype(model: torch.nn.Module, options: ScaleOptions) -> torch.nn.Module:
    """Cast the model's floating-point weights to the chosen dtype, in place."""
    dtype = WEIGHT_DTYPES[options.weights_dtype]
    if any(p.is_floating_point() and p.dtype != dtype for p in model.parameters()):
        model.to(dtype)
    return model


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks to checkpoint: transformers' GradientCheckpointingLayer instances, else the members of
    the longest nn.ModuleList."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
        found = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        if found:
            return found
    except ImportError:
        pass
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


@contextlib.contextmanager
def checkpointing(model: torch.nn.Module, enabled: bool = True):
    """Gradient checkpointing of the model's blocks while inside, in eval mode too (transformers' own switch only
    acts in train mode, which would turn dropout on). Results equal the plain pass; memory holds one block."""
    if not enabled:
        yield
        return
    from torch.utils.checkpoint import checkpoint

    patched = []
    for block in _blocks(model):
        original = block.forward

        def forward(*args, _original=original, **kwargs):
            if not torch.is_grad_enabled():
                return _original(*args, **kwargs)
            return checkpoint(_original, *args, use_reentrant=False, **kwargs)

        block.forward = functools.update_wrapper(forward, original)
        patched.append(block)
    try:
        yield
    finally:
        for block in patched:
            del block.forward  # back to the class's method


# ---------------------------------------------------------------------------------------------- memory estimate

@dataclass
class MemoryEstimate:
    """Bytes per component on the compute device and on the host, and the trace size on disk."""

    device: str
    parts: dict[str, int]  # on the compute device (the host when it is the CPU)
    host_parts: dict[str, int]  # extra host memory when the device is a GPU
    disk_bytes: int
    available: int | None  # bytes the device (or host) can still give this process
    budget: int | None  # the limit checked against: memory_budget_gb, else `available`
    processes_per_node: int = 1

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def fits(self) -> bool:
        return self.budget is None or self.total <= self.budget

    def describe(self) -> str:
        """One paragraph for a log or a terminal."""
        top = ", ".join(f"{k} {bytes_h(v)}" for k, v in sorted(self.parts.items(), key=lambda kv: -kv[1])[:5] if v)
        s = f"memory estimate on {self.device}: {bytes_h(self.total)} ({top}, ...)"
        if self.host_parts:
            s += f"; host {bytes_h(sum(self.host_parts.values()))}"
        if self.budget is not None:
            s += f"; limit {bytes_h(self.budget)}"
        if self.processes_per_node > 1:
            s += f" per process ({self.processes_per_node} per node)"
        return s + f"; trace on disk {bytes_h(self.disk_bytes)}."


def _dims(model: torch.nn.Module) -> tuple[int, int, int]:
    """(hidden size, number of blocks, vocabulary) from a transformers config, or rough stand-ins."""
    cfg = getattr(model, "config", None)
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or 0)
    layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 0)
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    if not hidden:
        widths = [p.shape[-1] for p in model.parameters() if p.dim() == 2]
        hidden = max(widths) if widths else 1
    return hidden, max(layers, len(_blocks(model)), 1), vocab


def available_bytes(device: torch.device) -> int | None:
    """What this process can still allocate: free GPU memory plus what it holds, or the host's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_allocated(device))
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        avail = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    return avail + resident_bytes()


def resident_bytes() -> int:
    """Current resident set size of this process (Linux), 0 when unknown."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_resident_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def estimate_memory(model: torch.nn.Module, config: SamplerConfig, options: ScaleOptions, *, n_train: int,
                    n_scored: int, n_query: int, seq_len: int, device: torch.device | str = "cpu",
                    processes_per_node: int = 1, rows_per_process: int | None = None) -> MemoryEstimate:
    """Bytes one process needs to sample `config` on `model` (weights at `options.weights_dtype`).

    Counts: weights; sampled parameters' w* copy, gradients, float32 master copies (bf16 weights), RMSProp state
    and step temporaries; activations of one SGLD step (≈ 34·h bytes per token per block at 2 bytes per number,
    Korthikanti et al. 2022, doubled for float32; one block with checkpointing) plus the logits; activations of
    one scoring batch (no grad: one block at a time plus the logits of its tokens); one draw of losses; the
    training token ids. The trace itself goes to disk. An estimate, good to ~30 %: a margin is added when it is
    checked.
    """
    from bif.core.params import select_parameters

    device = torch.device(device)
    wsize = torch.finfo(WEIGHT_DTYPES[options.weights_dtype]).bits // 8
    all_numel = sum(p.numel() for p in model.parameters())
    sampled = select_parameters(model, config.param_patterns)
    s_numel = sum(p.numel() for _, p in sampled)
    largest = max((p.numel() for _, p in sampled), default=0)
    hidden, layers, vocab = _dims(model)
    B, T = config.batch_size, seq_len
    act_scale = wsize / 2
    block_act = int(34 * B * T * hidden * act_scale)
    step_act = block_act * (1 if options.grad_checkpointing else layers) + \
        (layers * B * T * hidden * wsize if options.grad_checkpointing else 0) + 3 * B * T * vocab * 4
    Bs = config.score_batch_size
    score_act = int(20 * Bs * T * hidden * act_scale) + 2 * Bs * T * vocab * 4
    rows = rows_per_process if rows_per_process is not None else n_scored + n_query
    parts = {
        "weights": all_numel * wsize,
        "w* copy": 0 if options.offload_w_star else s_numel * wsize,
        "gradients": s_numel * wsize,
        "float32 master copies": s_numel * 4 if wsize != 4 else 0,
        "RMSProp state": s_numel * 4 if config.preconditioner == "rmsprop" else 0,
        "step temporaries": 3 * largest * 4,
        "SGLD step activations": step_act,
        "scoring activations": score_act,
        "one draw of losses": rows * T * 4,
        # what the process holds besides the model: Python, torch, tokenizer, data (measured), or a CUDA context
        "runtime": (512 << 20) if device.type == "cuda" else
        max(resident_bytes() - sum(p.numel() * p.element_size() for p in model.parameters()), 0),
    }
    host = {"training token ids": 2 * n_train * T * 8, "w* copy (offloaded)": s_numel * wsize
            if options.offload_w_star else 0, "one draw of losses": rows * T * 4}
    if device.type == "cpu":
        parts.update({f"host: {k}": v for k, v in host.items() if k != "one draw of losses"})
        host = {}
    tsize = 2 if config.trace_dtype == "float16" else 4
    disk = config.chains * config.draws * (n_scored + n_query) * T * tsize
    avail = available_bytes(device)
    if avail is not None and device.type == "cpu" and processes_per_node > 1:
        avail //= processes_per_node
    budget = int(options.memory_budget_gb * GiB) if options.memory_budget_gb else avail
    return MemoryEstimate(device=str(device), parts=parts, host_parts={k: v for k, v in host.items() if v},
                          disk_bytes=disk, available=avail, budget=budget, processes_per_node=processes_per_node)


MARGIN = 1.2


def check_fits(est: MemoryEstimate, run_dir: Path | None = None) -> None:
    """OutOfMemory with advice when the estimate (plus a margin) exceeds the budget, or the trace the free disk."""
    if est.budget is not None and est.total * MARGIN > est.budget:
        movable = {k: v for k, v in est.parts.items() if k != "runtime" and not k.startswith("host:")}
        biggest = max(movable, key=movable.get)
        advice = {
            "weights": "use a machine with more memory or weights_dtype='bfloat16'",
            "w* copy": "set offload_w_star (w* in host memory) or sample a parameter subset (param_patterns)",
            "gradients": "sample a parameter subset (param_patterns)",
            "float32 master copies": "sample a parameter subset (param_patterns)",
            "SGLD step activations": "lower batch_size or turn on grad_checkpointing",
            "scoring activations": "lower score_batch_size",
            "one draw of losses": "score fewer training samples per process (n_scored, or more processes)",
        }.get(biggest, "lower batch_size and score_batch_size, or use more processes")
        have = (f"only {bytes_h(est.budget)} is available" if est.budget == est.available
                else f"the memory budget is {bytes_h(est.budget)}")
        raise OutOfMemory(f"This run needs about {bytes_h(est.total * MARGIN)} on {est.device} (estimate "
                          f"{bytes_h(est.total)} + 20 % margin) but {have}. "
                          f"Largest part you can change: {biggest} ({bytes_h(est.parts[biggest])}): {advice}. "
                          f"{est.describe()}")
    if run_dir is not None:
        free = shutil.disk_usage(Path(run_dir)).free
        if est.disk_bytes > free:
            raise OutOfMemory(f"The trace needs {bytes_h(est.disk_bytes)} on disk but {run_dir} has "
                              f"{bytes_h(free)} free. Use trace_dtype='float16', fewer draws or scored "
                              f"samples, or another cache directory (--cache / BIF_CACHE).")


def out_of_memory_error(e: BaseException, device: torch.device) -> OutOfMemory:
    """The BIFError to raise when the device ran out of memory despite the estimate."""
    return OutOfMemory(f"Out of memory on {device} while sampling ({str(e).splitlines()[0][:200]}). Lower "
                       "score_batch_size or batch_size, turn on grad_checkpointing / offload_w_star, use "
                       "weights_dtype='bfloat16', or sample a parameter subset (param_patterns).")


def bytes_h(n: float) -> str:
    """Human-readable size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"
