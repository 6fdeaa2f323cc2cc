"""The command line's progress bar: one tqdm bar fed by the library's progress events."""

from __future__ import annotations

import os
import sys


def bar():
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
