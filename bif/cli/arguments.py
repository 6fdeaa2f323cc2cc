"""The command line's arguments: one argparse parser, each subcommand bound to its function."""

from __future__ import annotations

import argparse
import os

from bif.cli.manage import cmd_bench, cmd_delete, cmd_demo, cmd_runs, cmd_verify
from bif.cli.results import cmd_ask, cmd_export, cmd_top
from bif.cli.run import cmd_run


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
    r.add_argument("--max-length", type=positive("tokens", 2), default=64)
    r.add_argument("--n-scored", type=positive("count", 0), default=256, help="training samples ranked (0 = all)")
    r.add_argument("--query-neighbours", type=positive("count", 0), default=8, help="of the ranked places, this "
                   "many go to the samples sharing most words with the query (0 = a random subset only; said in the "
                   "output)")
    r.add_argument("--prompt", required=True)
    r.add_argument("--completion", help="omit to let the model generate it")
    r.add_argument("--max-new-tokens", type=positive("tokens"), default=32)
    r.add_argument("--seed-gen", type=positive("seed", 0),
                   help="sample the completion with this seed (default: greedy)")
    r.add_argument("--preset", default="demo-cpu")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a sampler setting, e.g. draws=200")
    r.add_argument("--last-blocks", type=positive("blocks", 0),
                   help="sample only the last K transformer blocks (an approximation)")
    r.add_argument("-k", type=positive("k"), default=5, help="samples shown per list")
    r.add_argument("--procs", default="auto", help="processes sharing the run (chains are spread over them); "
                   "'auto' = one per CPU core up to the number of chains, 1 on a GPU")
    add_scale_arguments(r)
    r.set_defaults(fn=cmd_run)
    for name, fn, hlp in (("top", cmd_top, "print the most supporting and opposing samples of a run"),
                          ("export", cmd_export,
                           "write a run's scores (CSV, JSON), its heatmap page (HTML) or a figure (PNG, SVG)")):
        t = sub.add_parser(name, help=hlp)
        t.add_argument("run", help="run key or directory")
        t.add_argument("--query", type=positive("query", 0), default=0, help="query number, from 0")
        t.add_argument("--token", type=positive("token", 0) if name == "top" else str,
                       help="one completion position instead of the whole completion" + ("" if name == "top" else
                            "; A-B for a span (influence on its summed loss)"))
        t.add_argument("-k", type=positive("k"), default=10, help="samples shown per list")
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
    a.add_argument("--max-new-tokens", type=positive("tokens"), default=32)
    a.add_argument("--method", choices=("auto", "draws", "replay"), default="auto",
                   help="'auto' = stored draws when the run has them, else replay")
    a.add_argument("-k", type=positive("k"), default=5)
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
    b.add_argument("--seeds", default="0,1", help="trust and the frontier: the two seeds compared; one seed (e.g. "
                   "--seeds 1) computes its runs alone, so two processes can fill the cache in parallel")
    b.add_argument("--queries", type=positive("count"), help="use the first N held-out test queries (default: all 51)")
    b.add_argument("--n-scored", type=positive("count", 0), default=0, help="training samples ranked: 0 (default) "
                   "= all, else a seeded random subset; never chosen by the queries")
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
    b.add_argument("--frontier-only", action="store_true", help="with --interactive: only the trust frontier")
    b.add_argument("--frontier-steps", default="100,200,400,800",
                   help="with --interactive: draws per chain of the frontier's growing runs (default 100,200,400,800)")
    b.add_argument("--peer", choices=("devinterp",), help="only whole runs against devinterp 2.0.1 on the same "
                   "fixtures, alternating (bench/peer.py; README 'Against the authors' code')")
    b.add_argument("--peer-python", help="with --peer: a Python where devinterp is installed (default: this one)")
    b.set_defaults(fn=cmd_bench)
    return p


def add_scale_arguments(parser) -> None:
    """The `python -m bif run` flags for large models and distributed runs."""
    g = parser.add_argument_group("scale (docs/cluster.md; under torchrun the run is spread over all processes)")
    g.add_argument("--weights-dtype", choices=("float32", "bfloat16"), default="float32")
    g.add_argument("--grad-checkpointing", action="store_true", help="recompute block activations in the SGLD step")
    g.add_argument("--offload-w-star", action="store_true", help="keep the copy of w* in host memory")
    g.add_argument("--memory-budget-gb", type=float, help="refuse runs whose estimate exceeds this (GiB)")
    g.add_argument("--chain-groups", type=int, help="chains sampled at once (default gcd(chains, processes))")


def positive(name: str, minimum: int = 1):
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
