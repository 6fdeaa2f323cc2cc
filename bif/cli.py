"""Command line: python -m bif {demo, run, top, ask, export, runs, delete, verify, bench}. Run `python -m bif -h`."""

from __future__ import annotations

import argparse
import os
import sys

from bif.errors import ConfigError

# A program, not the library: this process reads models from disk only and keeps the terminal quiet.
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                      ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
    os.environ.setdefault(_name, _value)


def _bar():
    """(bar, progress callback): a tqdm bar created on the first event, so nothing is drawn if none comes."""
    from tqdm import tqdm

    holder = {}

    def progress(ev: dict) -> None:
        if "bar" not in holder:
            holder["bar"] = tqdm(total=1000, unit="‰",
                                 bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}",
                                 file=sys.stdout if os.environ.get("BIF_PROGRESS_STDOUT") else sys.stderr)
        bar = holder["bar"]
        if ev.get("stage") == "sample":
            bar.set_description(f"chain {ev['chain'] + 1}/{ev.get('chains', '?')} draw {ev['draw']}/{ev['draws']}")
            bar.set_postfix_str(f"loss {ev['sampling_loss']:.3f} eta {ev.get('eta_s', 0):.0f}s")
            bar.n = int(1000 * ev.get("fraction", 0))
        elif ev.get("stage") == "scoring stored draws":
            bar.set_description(f"stored draws: chain {ev['chain'] + 1}/{ev['chains']} draw {ev['draw']}/{ev['draws']}")
            bar.n = int(1000 * ev.get("fraction", 0))
        elif ev.get("stage") in ("tokenizer", "train", "save"):
            bar.set_description(f"building demo model: {ev['stage']}")
            if ev.get("steps"):
                bar.n = int(1000 * ev.get("step", 0) / ev["steps"])
                bar.set_postfix_str(f"loss {ev.get('loss', float('nan')):.3f}")
        bar.refresh()

    def close() -> None:
        if "bar" in holder:
            holder["bar"].n = holder["bar"].total
            holder["bar"].close()

    return close, progress


def _config(args):
    from bif.core.config import parse_settings, preset

    return preset(args.preset, **parse_settings(args.set))


def cmd_demo(args) -> None:
    from bif.lm.builtin import build_demo_model

    close, progress = _bar()
    # 2 threads: ~1.5x faster on an idle 2-core machine, same weights (the build is thread-count independent)
    path = build_demo_model(args.cache, seed=args.seed, progress=progress, num_threads=min(2, os.cpu_count() or 1))
    close()
    print(path)


def cmd_run(args) -> int | None:
    from bif.lm.data import DataSpec, Query
    from bif.lm.models import ModelSpec
    from bif.store.request import RunRequest
    from bif.store.runs import compute

    model = ModelSpec(args.model, trust_remote_code=args.trust_remote_code)
    data = DataSpec(args.data, max_length=args.max_length, n_scored=None if args.n_scored == 0 else args.n_scored,
                    query_neighbours=args.query_neighbours)
    config = _config(args)
    procs = _procs(args, config)
    if procs > 1 and "WORLD_SIZE" not in os.environ:  # check the inputs once, then start the processes
        config, loaded = _check_inputs(args, model, data, config, main=True)
        _check_procs_memory(args, loaded, data, config, procs)
        return _relaunch(args, procs)
    dist, scale, say = _dist_setup(args)  # under torchrun: joins the process group; prints on rank 0 only
    if dist.is_main:  # this program shows the library's memory estimate (logger "bif")
        import logging

        logging.basicConfig(format="%(message)s")
        logging.getLogger("bif").setLevel(logging.INFO)
    if not os.environ.get("BIF_INPUTS_CHECKED"):  # set by _relaunch: the parent checked them
        config, _ = _check_inputs(args, model, data, config, main=dist.is_main)
    if dist.world > 1:  # every rank observes the completion that rank 0 generated (or was given)
        import torch

        box = [args.completion]
        torch.distributed.broadcast_object_list(box, src=0)
        args.completion = box[0]
    close, progress = _bar() if dist.is_main else (None, None)
    request = RunRequest(model, data, (Query(args.prompt, args.completion),), config, scale)
    run = compute(request, args.cache, progress, dist=dist)
    if not dist.is_main:
        return None
    close()
    print(f"run {run.key} in {run.dir}")
    _print_top(run, 0, None, args.k)
    return None


def _add_scale_arguments(parser) -> None:
    """The `python -m bif run` flags for large models and distributed runs."""
    g = parser.add_argument_group("scale (docs/cluster.md; under torchrun the run is spread over all processes)")
    g.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32")
    g.add_argument("--grad-checkpointing", action="store_true", help="recompute block activations in the SGLD step")
    g.add_argument("--offload-w-star", action="store_true", help="keep the copy of w* in host memory")
    g.add_argument("--memory-budget-gb", type=float, help="refuse runs whose estimate exceeds this (GiB)")
    g.add_argument("--chain-groups", type=int, help="chains sampled at once (default gcd(chains, processes))")


def _dist_setup(args):
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


def _check_inputs(args, model, data, config, main: bool):
    """Load the model (building the demo model on first use), generate the completion if none was given (only
    where `main`), check the data and the query, resolve --last-blocks. Returns the config to run."""
    from bif.lm.data import Query, load_texts, tokenize_queries
    from bif.lm.models import generate_completion, last_blocks, load_model

    close, progress = _bar() if main else (lambda: None, None)
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


def _check_procs_memory(args, loaded, data, config, procs: int) -> None:
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


def _relaunch(args, procs: int) -> int:
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
    print(f"error: {_worker_failure(proc.stderr, procs)}", file=sys.stderr)
    return 1


def _worker_failure(stderr: str, procs: int) -> str:
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


def _procs(args, config) -> int:
    """--procs: 'auto' = bif.dist.launch.default_procs (on CPU one process per core up to the number of chains,
    at most 4; on a GPU, 1).

    A number must be between 1 and the number of CPU cores (GPUs, under CUDA); the memory bound is checked once
    the model is loaded (_check_procs_memory)."""
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


def _check_view(run, query: int, token) -> None:
    """ConfigError when --query or --token (a position, or a span's positions) is outside the run (from 0)."""
    n = len(run.queries)
    if not 0 <= query < n:
        raise ConfigError(f"--query {query}: this run has {n} quer{'y' if n == 1 else 'ies'}; use 0 to {n - 1} "
                          f"(`bif top {run.key} --query N`).")
    if token is not None:
        import numpy as np

        trace, row = run.trace(query)
        positions = np.flatnonzero(trace.masks["query"][row])
        wanted = [token] if isinstance(token, int) else list(token)
        if not wanted or any(t not in positions for t in wanted):
            shown = token if isinstance(token, int) else f"{wanted[0]}-{wanted[-1]}" if wanted else "(empty span)"
            raise ConfigError(f"--token {shown}: not a completion position of query {query}; its completion is at "
                              f"positions {positions[0]} to {positions[-1]}. Leave --token out for the whole "
                              "completion.")


def _print_top(run, query: int, token: int | None, k: int) -> None:
    from bif.core import influence

    _check_view(run, query, token)
    for note in run.quarantined:
        print(f"note: {note}")
    trace, row = run.trace(query)
    s = influence.samples(trace, row, token)
    from bif.render import visible

    print(f"\nquery: {visible(repr(run.queries[query].prompt))} -> {visible(repr(run.queries[query].completion))}")
    print(f"scored: {run.request['how_scored']}")
    if run.request.get("approximate"):
        print(f"approximation: only parameters matching {run.config.param_patterns} were sampled")
    print("support = Corr(training-sample loss, completion loss); > 0 makes the completion more likely. "
          f"* = stands out of the noise. {influence.FINDING_RULE}")
    if s.no_findings_reason:
        print(s.no_findings_reason)
    for sign in ("support", "oppose"):
        print(f"\nmost {'supporting' if sign == 'support' else 'opposing'}:")
        for i in s.top(k, sign):
            text = visible(run.train_texts[i]).replace("\n", " ⏎ ")
            print(f"  {s.support[i]:+.3f} ± {s.support_se[i]:.3f} {'*' if s.significant[i] else ' '} "
                  f"#{run.train_ids[i]:<5} {text[:90]}")
    st = influence.stability(trace, row, k=min(k, 10), token=token)
    print(f"\ntop-{st['k']} agreement between chain halves: support {st['topk_support_overlap']:.0%}, "
          f"oppose {st['topk_oppose_overlap']:.0%}")
    from bif.core import null

    print(null.check([(trace, row)], token).sentence())
    from bif.core.diagnostics import diagnose

    d = diagnose(trace, run.config.nbeta, run.config.burn_in)
    print(f"sampler check: {d.verdict}. {d.advice}")
    from bif.core.diagnostics import THRESHOLDS_SOURCE

    print("convergence checks (" + THRESHOLDS_SOURCE + "): " + "; ".join(
        f"{c.name} {c.value:{'.3f' if 'R-hat' in c.name else '.0f'}} "
        f"({'ok' if c.ok else 'undefined' if c.ok is None else 'not met'}, recommended "
        f"{c.threshold})" for c in d.checks()))


def _open(args):
    from pathlib import Path

    from bif.store.catalog import is_run_key, run_dir
    from bif.store.runs import open_run

    path = Path(args.run)
    if not is_run_key(args.run) and path.is_dir():  # a run folder given by its path (e.g. copied from a cluster)
        return open_run(path)
    return open_run(run_dir(args.run, args.cache))


def cmd_top(args) -> None:
    _print_top(_open(args), args.query, args.token, args.k)


def cmd_ask(args) -> int | None:
    """A new question on a finished run: scored at its stored draws (seconds) or, without them, by replay."""
    import time

    from bif.lm.data import Query
    from bif.store.replay import add_queries, draws_note, query_method, replay_estimate_s

    t0 = time.perf_counter()
    run = _open(args)
    method = query_method(run, args.method)
    if args.completion is None:
        from bif.lm.models import ModelSpec, generate_completion, load_model

        loaded = load_model(ModelSpec(**run.request["model"]), args.cache)
        args.completion = generate_completion(loaded, args.prompt, args.max_new_tokens, greedy=True)
        print(f"generated completion: {args.completion!r}")
    query = Query(args.prompt, args.completion)
    if method == "replay":
        print(f"no stored draws ({draws_note(run.dir)}): replaying every SGLD step, about "
              f"{replay_estimate_s(run):.0f} s (as long as the run's sampling took)")
    close, progress = _bar()
    run = add_queries(run, [query], args.cache, progress, method=method)
    close()
    index = next(i for i, q in enumerate(run.queries) if q == query)
    used = run.answered_by(index)
    how = {"draws": "stored draws (one forward pass per draw, no SGLD)", "replay": "replay of every SGLD step",
           "run": "the run itself (this query was part of it)"}[used]
    print(f"answered from {how} in {time.perf_counter() - t0:.1f} s")
    _print_top(run, index, None, args.k)
    return None


def _positions(token: str | None):
    """--token P (one loss position) or A-B (a span, inclusive) -> None, an int or a tuple of positions."""
    if token is None:
        return None
    from bif.errors import DataError

    try:
        a, _, b = token.partition("-")
        return int(a) if not b else tuple(range(int(a), int(b) + 1))
    except ValueError:
        raise DataError(f"--token {token!r}: give a completion position (e.g. 5) or a span (e.g. 5-7).") from None


def _output(path: str, mode: str = "w"):
    """The file to write an export to; OutputError (saying what to do) when it cannot be written there."""
    from pathlib import Path

    from bif.errors import OutputError

    p = Path(path)
    if p.is_dir():
        raise OutputError(f"--out {path}: is a folder; give a file name inside it, e.g. {p / 'scores.csv'}.")
    if not p.parent.is_dir():
        raise OutputError(f"--out {path}: the folder {str(p.parent)!r} does not exist. Create it, or choose "
                          "another path.")
    if str(p.resolve()).startswith(("/proc/", "/sys/", "/dev/")):
        raise OutputError(f"--out {path}: a system path, not a place for files. Choose a path in your folders.")
    try:
        return open(p, mode, newline="", encoding="utf-8") if "b" not in mode else open(p, mode)
    except OSError as e:
        raise OutputError(f"--out {path}: cannot write there ({e.strerror}). Choose a folder you may write to.") \
            from None


def cmd_export(args) -> None:
    """Scores (csv, json), the heatmap page (html) or a figure (png, svg), each with its context (bif.export)."""
    from bif import export
    from bif.core import influence

    run = _open(args)
    token = _positions(args.token)
    _check_view(run, args.query, token)
    if args.format in ("png", "svg", "html"):
        from bif import image

        fig, ctx = export.view_figure(run, args.query, args.figure if args.format != "html" else "heatmap", token,
                                      args.sample)
        if args.format == "html":
            data = export.heatmap_html(ctx, fig, run.train_tokens[list(run.train_ids).index(ctx.sample_id)])
        else:
            data = image.figure_image(export.captioned(fig, ctx), args.format)
        if not args.out:
            out = sys.stdout.buffer
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            return
        with _output(args.out, "w" if isinstance(data, str) else "wb") as f:
            f.write(data)
        print(f"wrote {args.out}")
        return
    trace, row = run.trace(args.query)
    rows = export.sample_rows(influence.samples(trace, row, token), run.train_ids, run.train_texts)
    ctx = export.context(run, args.query, token)
    text = export.to_json(ctx, rows) if args.format == "json" else export.to_csv(ctx, rows)
    if not args.out:
        sys.stdout.write(text)
        return
    with _output(args.out) as f:
        f.write(text)
    print(f"wrote {len(rows)} rows to {args.out}")


def cmd_runs(args) -> None:
    from bif.store.catalog import list_runs

    for r in list_runs(args.cache):
        state = f"done, {r['verdict'] or '?'}" if r["complete"] else f"partial ({r['chains_done']} chains)" \
            if r["started"] else "failed at start"
        print(f"{r['key']}  {state:<18} {r['model'][:30]:<30} {r['data'][-30:]:<30} {r['size_mb']:6.1f} MB  "
              f"{r['query'][:40]!r}")


def cmd_delete(args) -> None:
    from bif.store.catalog import delete_run

    delete_run(args.key, args.cache)
    print(f"deleted {args.key}")


def cmd_verify(args) -> int:
    from bif.store.catalog import list_runs, verify_run

    keys = args.keys or [r["key"] for r in list_runs(args.cache) if r["complete"]]
    corrupt = 0
    for key in keys:
        bad = verify_run(key, args.cache)
        corrupt += bool(bad)
        print(f"{key}  " + ("intact" if not bad else f"CORRUPT: {', '.join(bad)} changed (delete and recompute)"))
    return 1 if corrupt else 0


def cmd_bench(args) -> None:
    if args.interactive:
        from bench.interactive import main as interactive_main

        return interactive_main(args)
    from bench.benchmark import main as bench_main

    bench_main(args)


def parser() -> argparse.ArgumentParser:
    from bif.lm import registry

    p = argparse.ArgumentParser(prog="python -m bif", description="Bayesian influence functions for language models.")
    p.add_argument("--cache", default=os.environ.get("BIF_CACHE", "cache"), help="cache directory (default: cache)")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="build the demo model (trained here, ~2 min on 2 cores)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(fn=cmd_demo)
    r = sub.add_parser("run", help="compute (or reuse) a BIF run and print the top samples")
    r.add_argument("--model", default=registry.DEMO,
                   help=f"{registry.names(registry.MODELS)} or a local model directory")
    r.add_argument("--trust-remote-code", action="store_true")
    r.add_argument("--data", default=registry.DEMO,
                   help=f"{registry.names(registry.DATA)} or a .txt/.jsonl/.csv/.parquet file")
    r.add_argument("--max-length", type=_positive("tokens", 2), default=64)
    r.add_argument("--n-scored", type=_positive("count", 0), default=256, help="training samples ranked (0 = all)")
    r.add_argument("--query-neighbours", type=_positive("count", 0), default=8, help="of the ranked places, this "
                   "many go to the samples sharing most words with the query (0 = a random subset only; said in the "
                   "output)")
    r.add_argument("--prompt", required=True)
    r.add_argument("--completion", help="omit to let the model generate it")
    r.add_argument("--max-new-tokens", type=_positive("tokens"), default=32)
    r.add_argument("--seed-gen", type=_positive("seed", 0),
                   help="sample the completion with this seed (default: greedy)")
    r.add_argument("--preset", default="demo-cpu")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a sampler setting, e.g. draws=200")
    r.add_argument("--last-blocks", type=_positive("blocks", 0),
                   help="sample only the last K transformer blocks (an approximation)")
    r.add_argument("-k", type=_positive("k"), default=5, help="samples shown per list")
    r.add_argument("--procs", default="auto", help="processes sharing the run (chains are spread over them); "
                   "'auto' = one per CPU core up to the number of chains, 1 on a GPU")
    _add_scale_arguments(r)
    r.set_defaults(fn=cmd_run)
    for name, fn, hlp in (("top", cmd_top, "print the most supporting and opposing samples of a run"),
                          ("export", cmd_export,
                           "write a run's scores (CSV, JSON), its heatmap page (HTML) or a figure (PNG, SVG)")):
        t = sub.add_parser(name, help=hlp)
        t.add_argument("run", help="run key or directory")
        t.add_argument("--query", type=_positive("query", 0), default=0, help="query number, from 0")
        t.add_argument("--token", type=_positive("token", 0) if name == "top" else str,
                       help="one completion position instead of the whole completion" + ("" if name == "top" else
                            "; A-B for a span (influence on its summed loss)"))
        t.add_argument("-k", type=_positive("k"), default=10, help="samples shown per list")
        if name == "export":
            t.add_argument("--format", choices=("csv", "json", "html", "png", "svg"), default="csv",
                           help="csv/json: every ranked sample's scores; html: the token x token heatmap page; "
                                "png/svg: a figure (--figure), rendered with kaleido and Chromium")
            t.add_argument("--figure", choices=("heatmap", "histogram", "trace"), default="heatmap",
                           help="which figure for png/svg (default: heatmap)")
            t.add_argument("--sample", type=int, help="training sample (train_id) of the heatmap; default: the most "
                           "supporting one")
            t.add_argument("--out", help="file (default: stdout)")
        t.set_defaults(fn=fn)
    a = sub.add_parser("ask", help="a new question on a finished run (seconds with stored draws, else replay)")
    a.add_argument("run", help="run key or directory")
    a.add_argument("--prompt", required=True)
    a.add_argument("--completion", help="omit to let the run's model generate it (greedy)")
    a.add_argument("--max-new-tokens", type=_positive("tokens"), default=32)
    a.add_argument("--method", choices=("auto", "draws", "replay"), default="auto",
                   help="'auto' = stored draws when the run has them, else replay")
    a.add_argument("-k", type=_positive("k"), default=5)
    a.set_defaults(fn=cmd_ask)
    sub.add_parser("runs", help="list cached runs").set_defaults(fn=cmd_runs)
    dl = sub.add_parser("delete", help="delete a cached run")
    dl.add_argument("key")
    dl.set_defaults(fn=cmd_delete)
    v = sub.add_parser("verify", help="hash every file of finished runs again (all, or the given keys)")
    v.add_argument("keys", nargs="*")
    v.set_defaults(fn=cmd_verify)
    b = sub.add_parser("bench", help="speed of a preset, and trust figures of demo-cpu and careful-cpu on held-out "
                                     "queries (prints the README's figures)")
    b.add_argument("--preset", default="demo-cpu", help="preset of the speed measurements, --scan and --basin")
    b.add_argument("--presets", default="demo-cpu,careful-cpu", help="presets whose trust figures are measured "
                   "(two seeds each, on the held-out test queries)")
    b.add_argument("--queries", type=int, help="use the first N held-out test queries (default: all 51)")
    b.add_argument("--n-scored", type=int, default=256, help="training samples ranked, a seeded random subset that "
                   "does not depend on the queries (0 = all)")
    b.add_argument("--quick", action="store_true", help="smaller measurement, for a smoke check (trust: 8 queries, "
                   "20 draws per chain: not the presets' figures)")
    b.add_argument("--trust-only", action="store_true", help="only the trust figures (no speed measurements)")
    b.add_argument("--fresh-clone", action="store_true", help="also time git clone -> first finished demo run")
    b.add_argument("--scan", action="store_true", help="only the mixing scan that chose the demo preset's step size")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="measure the preset with a setting changed")
    b.add_argument("--basin", metavar="MODEL", help="only a 30-step chain of the preset on MODEL (e.g. smollm2), "
                   "printing its sampling loss: does the preset keep that model in its basin?")
    b.add_argument("--interactive", action="store_true", help="only the interactive figures: first provisional "
                   "result, ask latency (stored draws vs replay vs a run), whole-set ranking, disk, estimate error, "
                   "the trust frontier of growing runs on the held-out TEST queries")
    b.add_argument("--replay", action="store_true", help="with --interactive: also measure a replay (minutes)")
    b.add_argument("--no-frontier", action="store_true", help="with --interactive: skip the trust frontier")
    b.set_defaults(fn=cmd_bench)
    return p


def _positive(name: str, minimum: int = 1):
    """An argparse type: an integer ≥ minimum, with a message that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: use {minimum} or more")
        return value
    parse.__name__ = name
    return parse


def check_args(args) -> None:
    """Checks at the boundary that argparse cannot express: the cache must be a folder (or not exist yet)."""
    from pathlib import Path

    cache = Path(args.cache)
    if cache.exists() and not cache.is_dir():
        raise ConfigError(f"--cache {args.cache}: is a file, not a folder. Give a folder for runs and models "
                          "(it is created if missing), e.g. --cache cache.")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from bif.errors import user_message

    try:
        check_args(args)
        rc = args.fn(args)
        if rc:
            return rc
    except KeyboardInterrupt:
        print("interrupted: finished chains are kept; run the same command again to resume.", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every error is one line; BIF_DEBUG=1 shows the traceback
        if os.environ.get("BIF_DEBUG"):
            raise
        print(f"error: {user_message(e, log='the traceback (rerun with BIF_DEBUG=1 to see it)')}", file=sys.stderr)
        return 2
    return 0
