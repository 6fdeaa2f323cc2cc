"""Command line: python -m bif {demo, run, top, ask, export, runs, delete, verify, bench}. Run `python -m bif -h`.

arguments (the parser), run and workers (`bif run`, under torchrun), results (top, ask, export), manage (demo, runs,
delete, verify, bench), progress (the bar). This module: the process's environment and `main`."""

from __future__ import annotations

import os
import sys

from bif.errors import ConfigError

# A program, not the library: this process reads models from disk only and keeps the terminal quiet.
for _name, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                      ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
    os.environ.setdefault(_name, _value)

from bif.cli.arguments import parser  # noqa: E402  (after the environment is set)


def check_args(args) -> None:
    """Checks at the boundary that argparse cannot express: the cache must be a folder (or not exist yet)."""
    from pathlib import Path

    cache = Path(args.cache)
    if cache.exists() and not cache.is_dir():
        raise ConfigError(f"--cache {args.cache}: is a file, not a folder. Give a folder for runs and models "
                          "(it is created if missing), e.g. --cache cache.")


def main(argv: list[str] | None = None) -> int:
    from bif.core.allocator import keep_freed_memory

    keep_freed_memory()  # a sampling process: freed tensors are reused, not faulted in again (bif.core.allocator)
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
