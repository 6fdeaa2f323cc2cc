"""Seconds a new question takes on a finished run with stored draws, the model loaded once (as the app keeps it).

    python -m bench.ask_latency RUN_KEY [--cache cache]

Prints the model's load time, then for two fresh completions the seconds of add_queries(method="draws") and the
completion's token count, with the load average. A question asked before is answered from the cache in ~0 s, so
each call here uses a completion the run has not seen (the time of day makes it new).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import bif
from bif.layout import Store
from bif.store.runs import open_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--cache", default=os.environ.get("BIF_CACHE", "cache"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    run = open_run(Store(args.cache).run(args.run).dir)
    t = time.perf_counter()
    loaded = bif.load_model(run.asked.model, cache_root=args.cache)
    print(f"model load {time.perf_counter() - t:.2f} s   load average {os.getloadavg()[0]:.1f}")
    stamp = time.strftime("%H:%M:%S")
    for prompt, completion in (("What is your favourite colour?", f" I like blue, the colour of the sky at {stamp}."),
                               ("Do you like music?", f" Yes, I listen to music every day, even at {stamp}.")):
        query = bif.Query(f"User: {prompt}\nBot:", completion)
        t = time.perf_counter()
        bif.add_queries(run, [query], args.cache, method="draws", loaded=loaded)
        n = len(loaded.tokenizer(completion)["input_ids"])
        print(f"ask {time.perf_counter() - t:.2f} s   {n} completion tokens   load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
