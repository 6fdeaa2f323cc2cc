"""`python -m bif run`: check the inputs, join torchrun's process group (or start the workers), compute the run,
print its top samples."""

from __future__ import annotations

import os

from bif.cli.progress import bar
from bif.cli.results import print_top
from bif.cli.workers import check_procs_memory, procs_of, relaunch
from bif.errors import ConfigError


def config_of(args):
    """The SamplerConfig of --preset with the --set KEY=VALUE overrides."""
    from bif.core.config import parse_settings, preset

    return preset(args.preset, **parse_settings(args.set))


def cmd_run(args) -> int | None:
    from bif.lm.data import DataSpec, Query
    from bif.lm.models import ModelSpec
    from bif.store.request import RunRequest
    from bif.store.runs import compute

    model = ModelSpec(args.model, trust_remote_code=args.trust_remote_code)
    data = DataSpec(args.data, max_length=args.max_length, n_scored=None if args.n_scored == 0 else args.n_scored,
                    query_neighbours=args.query_neighbours)
    config = config_of(args)
    procs = procs_of(args, config)
    if procs > 1 and "WORLD_SIZE" not in os.environ:  # check the inputs once, then start the processes
        config, loaded = check_inputs(args, model, data, config, main=True)
        check_procs_memory(args, loaded, data, config, procs)
        return relaunch(args, procs)
    dist, scale, say = dist_setup(args)  # under torchrun: joins the process group; prints on rank 0 only
    if dist.is_main:  # this program shows the library's memory estimate (logger "bif")
        import logging

        logging.basicConfig(format="%(message)s")
        logging.getLogger("bif").setLevel(logging.INFO)
    loaded = None
    if not os.environ.get("BIF_INPUTS_CHECKED"):  # set by relaunch: the parent checked them
        config, loaded = check_inputs(args, model, data, config, main=dist.is_main)
    if dist.world > 1:  # every rank observes the completion that rank 0 generated (or was given)
        import torch

        box = [args.completion]
        torch.distributed.broadcast_object_list(box, src=0)
        args.completion = box[0]
    close, progress = bar() if dist.is_main else (None, None)
    request = RunRequest(model, data, (Query(args.prompt, args.completion),), config, scale)
    run = compute(request, args.cache, progress, dist=dist, loaded=loaded)  # the model, loaded once
    if not dist.is_main:
        return None
    close()
    print(f"run {run.key} in {run.dir}")
    print_top(run, 0, None, args.k)
    return None


def dist_setup(args):
    """(Dist, ScaleOptions, print function that is silent off rank 0) for `python -m bif run`.

    Under torchrun it joins the process group and asks CUDA for deterministic kernels; rank 0 logs the
    memory estimate."""
    from bif.core.scale import ScaleOptions
    from bif.dist.distributed import deterministic_cuda, join

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        deterministic_cuda()
    dist = join()
    if dist.is_main and dist.world > 1:
        print(f"distributed: {dist.world} processes ({dist.backend})")
    scale = ScaleOptions(weights_dtype=getattr(args, "weights_dtype", "float32"),
                         grad_checkpointing=getattr(args, "grad_checkpointing", False),
                         offload_w_star=getattr(args, "offload_w_star", False),
                         memory_budget_gb=getattr(args, "memory_budget_gb", None),
                         chain_groups=getattr(args, "chain_groups", None))
    say = print if dist.is_main else (lambda *a, **k: None)
    return dist, scale, say


def check_inputs(args, model, data, config, main: bool):
    """Load the model (building the demo model on first use), generate the completion if none was given (only
    where `main`), check the data and the query, resolve --last-blocks. Returns the config to run."""
    from bif.lm.data import Query, load_texts, tokenize_queries
    from bif.lm.models import generate_completion, last_blocks, load_model

    close, progress = bar() if main else (lambda: None, None)
    loaded = load_model(model, args.cache, progress=progress)
    close()
    if args.completion is None and not args.prompt.strip():
        raise ConfigError("An empty --prompt gives the model nothing to continue: give a prompt, or the text to "
                          "score as --completion (at least 2 tokens).")
    if args.completion is None and main:
        args.completion = generate_completion(loaded, args.prompt, args.max_new_tokens,
                                              greedy=args.seed_gen is None, seed=args.seed_gen or 0)
        print(f"generated completion: {args.completion!r}")
    load_texts(data.source)
    if args.completion is not None:
        tokenize_queries(loaded.tokenizer, [Query(args.prompt, args.completion)], loaded.max_length)
    if args.last_blocks:
        config = config.replace(param_patterns=last_blocks(loaded.model, args.last_blocks))
        if main:
            print(f"approximation: sampling only {', '.join(config.param_patterns)}")
        args.set = [*(args.set or []), "param_patterns=" + ",".join(config.param_patterns)]
    return config, loaded
