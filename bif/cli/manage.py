"""The commands on the cache as a whole: `demo` (build the demo model), `runs`, `delete`, `verify`, and `bench`
(the benchmarks in bench/)."""

from __future__ import annotations

import os

from bif.cli.progress import bar


def cmd_demo(args) -> None:
    from bif.lm.builtin import build_demo_model

    close, progress = bar()
    # 2 threads: ~1.5x faster on an idle 2-core machine, same weights (the build is thread-count independent)
    path = build_demo_model(args.cache, seed=args.seed, progress=progress, num_threads=min(2, os.cpu_count() or 1))
    close()
    print(path)


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


def cmd_bench(args) -> int | None:
    if args.peer:  # the authors' code side by side (bench/peer.py; devinterp is optional, never a requirement)
        from bench.peer import main as peer_main

        return peer_main(args)
    if args.interactive:
        from bench.interactive import main as interactive_main

        return interactive_main(args)
    from bench.benchmark import main as bench_main

    bench_main(args)
