"""The commands that read one run: `top` (most supporting and opposing samples), `ask` (a new question on a
finished run) and `export` (scores, heatmap page, figures), with their checks of --query, --token and --out."""

from __future__ import annotations

import sys

from bif.cli.progress import bar
from bif.errors import ConfigError


def check_view(run, query: int, token) -> None:
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


def print_top(run, query: int, token: int | None, k: int) -> None:
    from bif.core import influence

    check_view(run, query, token)
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


def open_arg(args):
    from pathlib import Path

    from bif.store.catalog import is_run_key, run_dir
    from bif.store.runs import open_run

    path = Path(args.run)
    if not is_run_key(args.run) and path.is_dir():  # a run folder given by its path (e.g. copied from a cluster)
        return open_run(path)
    return open_run(run_dir(args.run, args.cache))


def cmd_top(args) -> None:
    print_top(open_arg(args), args.query, args.token, args.k)


def cmd_ask(args) -> int | None:
    """A new question on a finished run: scored at its stored draws (seconds) or, without them, by replay."""
    import time

    from bif.lm.data import Query
    from bif.store.replay import add_queries, draws_note, query_method, replay_estimate_s

    t0 = time.perf_counter()
    run = open_arg(args)
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
    close, progress = bar()
    run = add_queries(run, [query], args.cache, progress, method=method)
    close()
    index = next(i for i, q in enumerate(run.queries) if q == query)
    used = run.answered_by(index)
    how = {"draws": "stored draws (one forward pass per draw, no SGLD)", "replay": "replay of every SGLD step",
           "run": "the run itself (this query was part of it)"}[used]
    print(f"answered from {how} in {time.perf_counter() - t0:.1f} s")
    print_top(run, index, None, args.k)
    return None


def positions(token: str | None):
    """--token P (one loss position) or A-B (a span, inclusive) -> None, an int or a tuple of positions."""
    if token is None:
        return None
    from bif.errors import DataError

    try:
        a, _, b = token.partition("-")
        return int(a) if not b else tuple(range(int(a), int(b) + 1))
    except ValueError:
        raise DataError(f"--token {token!r}: give a completion position (e.g. 5) or a span (e.g. 5-7).") from None


def output_file(path: str, mode: str = "w"):
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

    run = open_arg(args)
    token = positions(args.token)
    check_view(run, args.query, token)
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
        with output_file(args.out, "w" if isinstance(data, str) else "wb") as f:
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
    with output_file(args.out) as f:
        f.write(text)
    print(f"wrote {len(rows)} rows to {args.out}")
