"""python -m bif.evaluation [run|sweep] --out results/ [--quick] ...  (`run` is the default).

run:   the LDS / retrieval / wall-time table of BIF and the baselines -> OUT/evaluation.{json,md}
sweep: BIF's reproducibility frontier and sensitivity grid -> OUT/sweep.{json,md}
Both resume from cache/evaluation/ when stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _configs(args):
    from bif.core.config import parse_settings as _parse_set  # the CLI's --set: patterns comma-separated
    from bif.core.config import preset
    from bif.evaluation.benchmark import BenchmarkSpec, quick_spec
    from bif.evaluation.evaluate import METHODS, EvalConfig

    spec = quick_spec() if args.quick else BenchmarkSpec()
    if args.n_train:
        spec = BenchmarkSpec(**{**spec.to_dict(), "n_train": args.n_train})
    if args.quick:
        bif = preset("smoke", **_parse_set(args.set))
    elif args.cmd == "sweep" and args.preset is None:
        from bif.evaluation.sweep import SWEEP_BASE

        bif = SWEEP_BASE.replace(**_parse_set(args.set))
    else:
        bif = preset(args.preset or "demo-cpu", **_parse_set(args.set))
    cfg = EvalConfig(subsets=args.subsets or (6 if args.quick else 32), seeds=tuple(args.seeds), bif=bif,
                     methods=tuple(args.methods or METHODS), n_boot=200 if args.quick else 1000,
                     ekfac_damping=args.ekfac_damping)
    return spec, cfg


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "sweep", "-h", "--help"):
        argv = ["run", *argv]
    p = argparse.ArgumentParser(prog="python -m bif.evaluation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "sweep"):
        s = sub.add_parser(name)
        s.add_argument("--out", default="results", help="Folder for the JSON and Markdown results.")
        s.add_argument("--cache", default="cache", help="Cache root (retrains go to CACHE/evaluation/).")
        s.add_argument("--quick", action="store_true", help="Tiny benchmark and sampler: seconds, for tests.")
        s.add_argument("--subsets", type=int, default=None, help="LDS half-subsets M (default 32; 6 with --quick).")
        s.add_argument("--seeds", type=int, nargs="+", default=[0], help="Retrain seeds per subset.")
        s.add_argument("--n-train", type=int, default=None, help="Benchmark training-set size (default 128).")
        s.add_argument("--preset", default=None, help="BIF sampler preset (bif.core.config.PRESETS); default demo-cpu "
                       "for run, sweep.SWEEP_BASE for sweep.")
        s.add_argument("--set", action="append", metavar="KEY=VALUE", help="Override a sampler setting.")
        s.add_argument("--methods", nargs="+", default=None, help="Subset of methods (default: all).")
        if name == "sweep":
            s.add_argument("--only", nargs="+", default=None, help="Only these settings (labels of sweep.GRID).")
        s.add_argument("--ekfac-damping", type=float, default=None,
                       help="EK-FAC damping λ (default: kronfluence's heuristic, 0.1 × mean eigenvalue).")
        s.add_argument("--threads", type=int, default=1, help="torch threads (1 is stable on shared cores).")
    args = p.parse_args(argv)

    import torch

    from bif.errors import BIFError
    from bif.evaluation.report import write_evaluation, write_sweep

    torch.set_num_threads(args.threads)
    try:
        spec, cfg = _configs(args)
        if args.cmd == "run":
            from bif.evaluation.evaluate import evaluate

            res = evaluate(spec, cfg, args.cache, log=_log)
            paths = write_evaluation(res, args.out)
        else:
            from bif.evaluation.sweep import GRID, sweep

            short = ("draws", "chains")
            grid = [(lab, {k: v for k, v in over.items() if k not in short}, seeds) for lab, over, seeds in GRID[:3]] \
                if args.quick else GRID
            if args.only:
                grid = [g for g in grid if g[0] in args.only]
            res = sweep(spec, cfg.bif, cfg, args.cache, grid=grid,
                        draws=(10,) if args.quick else (25, 50, 100), chains=(2,) if args.quick else (2, 4),
                        log=_log, on_setting=lambda partial: write_sweep(partial, args.out))
            paths = write_sweep(res, args.out)
    except (BIFError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths[1].read_text())
    _log(f"wrote {paths[0]} and {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
