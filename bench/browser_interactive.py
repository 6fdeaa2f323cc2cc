"""The interactive goals of the README ("Interactive runs") measured in a real browser, as a new user meets them.

    python -m bench.browser_interactive [--cache DIR] [--asks 3] [--shots DIR]

Starts `streamlit run app.py` on a free port (BIF_CACHE=DIR; the demo model must be built there, nothing is
cached otherwise: a fresh run), opens the Run page in Debian's Chromium (Playwright), presses *Start the run* with
the demo's default settings (demo-cpu), follows the job panel's link to the Influence page and times

1. Start → the first provisional heatmap (the coloured completion under the *Provisional* mark), with the job's
   stage at each second (where the time goes);
2. the estimate the job showed 20 s after Start against the actual time to the finished run;
3. on the finished run, a question of one's own: Enter in the completion box → its heatmap (30-token completion),
   `--asks` times with fresh completions.

Screenshots at 1400 and 800 px wide go to --shots. Prints the load average with every figure. Needs the test
dependencies (playwright) and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

ANSWERS = (" I love rainy days: the sound of rain on the window is calming, a good day to read {n}.",
           " Rain makes me sleepy, so I stay at home with tea and listen to the drops on {n}.",
           " Rainy days are fine with me: I take my umbrella and walk to the park at {n}.")  # ~30 tokens each


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def shots(page, folder: Path, name: str) -> None:
    from tests.test_browser import settle

    for w in (1400, 800):
        page.set_viewport_size({"width": w, "height": 3000})
        page.wait_for_timeout(300)
        settle(page)
        page.screenshot(path=str(folder / f"{name}-{w}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 2400})


def watch_start(page, cache: Path, folder: Path) -> dict:
    """Press Start on the Run page; time the first provisional heatmap and the estimate at 20 s."""
    from bif.service import jobs
    from tests.test_browser import settle

    page.get_by_role("button", name="Start the run").click()
    t0 = time.perf_counter()
    link = page.get_by_text("Provisional results, while it samples")
    link.wait_for(timeout=60_000)
    t_link = time.perf_counter() - t0
    from urllib.parse import parse_qs, urlparse

    job = parse_qs(urlparse(page.url).query)["job"][0]
    link.click()
    stages, first, estimate, etas = [], None, None, []
    while True:
        now = time.perf_counter() - t0
        s = jobs.job_status(job, cache)
        p = s["progress"]
        stage = (p.get("stage"), p.get("chain"), p.get("draw"))
        if not stages or stages[-1][1] != stage:
            stages.append((round(now, 1), stage))
        if estimate is None and now >= 20 and p.get("eta_s") is not None:
            estimate = (now, now + float(p["eta_s"]), p.get("stage"))
        if p.get("eta_s") is not None and (not etas or now - etas[-1][0] >= 30):
            etas.append((now, now + float(p["eta_s"])))
        if first is None and page.get_by_text(re.compile(r"from \d+ of \d+ draws per chain")).count() and \
                page.get_by_text("The completion, coloured by influence").count():
            first = now
            print(f"first provisional heatmap {first:.1f} s after Start (link to it after {t_link:.1f} s); "
                  f"load {load()}", flush=True)
            settle(page)
            shots(page, folder, "provisional")
        if s["state"] not in jobs.ACTIVE:
            break
        if first is None and len(stages) and now > 45 and not (folder / "late.png").exists():
            page.screenshot(path=str(folder / "late.png"), full_page=True)
            print("no provisional view 45 s after Start; the page says: "
                  + page.inner_text("body")[-1500:].replace("\n", " | "), flush=True)
        page.wait_for_timeout(250)
    actual = time.perf_counter() - t0
    print("stages (s after Start: stage, chain, draw): "
          + "; ".join(f"{t}: {st}" for t, st in stages[:12]) + (" ..." if len(stages) > 12 else ""))
    print("estimated total (s after Start: estimate): " + "; ".join(f"{t:.0f}: {e:.0f}" for t, e in etas))
    if estimate:
        print(f"estimate at {estimate[0]:.0f} s (stage {estimate[2]}): {estimate[1]:.0f} s; actual {actual:.0f} s "
              f"({(estimate[1] - actual) / actual:+.0%}); load {load()}", flush=True)
    return {"job": job, "state": s["state"], "result": s.get("result"), "first_s": first, "actual_s": actual}


def ask(page, answer: str) -> tuple[float, float]:
    """(seconds from Enter in the completion box to the new completion's heatmap drawn and the page settled, the
    scoring's own seconds as the page's note states them)."""
    from tests.test_browser import settle

    box = page.get_by_label("Completion to explain", exact=True)
    box.fill(answer)
    tag = answer.rstrip(".").split()[-1]  # new to the run: in the page's completion once it is drawn
    pick = page.locator(".bif-pick")
    t0 = time.perf_counter()
    box.press("Enter")
    while not pick.count() or tag not in (pick.first.text_content() or ""):
        if time.perf_counter() - t0 > 120:
            raise TimeoutError(f"the new completion was not drawn 120 s after Enter: {pick.first.text_content()!r}")
        page.wait_for_timeout(50)
    settle(page)  # the whole page drawn again, the new completion's heatmap in it
    took = time.perf_counter() - t0
    note = page.get_by_text(re.compile("^Answered from stored draws")).first.text_content()
    return took, float(re.search(r"in ([\d.]+) s", note).group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="cache")
    ap.add_argument("--asks", type=int, default=3)
    ap.add_argument("--shots", default="screenshots")
    ap.add_argument("--run", help="a finished run's key: skip Start, only ask on it")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.test_browser import ARGS, CHROMIUM, app_server, settle

    cache, folder = Path(args.cache).resolve(), Path(args.shots)
    folder.mkdir(parents=True, exist_ok=True)
    with app_server(cache, folder / "server.log") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        if args.run:
            page.goto(f"{url}/influence?run={args.run}")
        else:
            page.goto(url)
            page.get_by_role("heading", name="Run BIF on a completion").wait_for(timeout=60_000)
            settle(page)
            page.get_by_text("Estimated time").wait_for(timeout=60_000)
            print(f"Run page: {page.get_by_text('Estimated time').first.inner_text()!r}; load {load()}", flush=True)
            r = watch_start(page, cache, folder)
            if r["state"] != "done":
                raise SystemExit(f"the run ended {r['state']}")
        try:
            page.get_by_text("Ask about another completion").first.wait_for(timeout=60_000)
        except Exception:
            page.screenshot(path=str(folder / "no-ask.png"), full_page=True)
            raise
        settle(page)
        shots(page, folder, "finished")
        page.get_by_text("Ask about another completion").first.click()
        page.get_by_label("Prompt", exact=True).fill("User: What do you think about rainy days?\nBot:")
        from tokenizers import Tokenizer

        from bif.lm.builtin import demo_model_path

        words = Tokenizer.from_file(str(demo_model_path(cache) / "tokenizer.json"))
        for i in range(args.asks):
            answer = ANSWERS[i % len(ANSWERS)].format(n=time.strftime("%H%M%S") + str(i))  # new to the run
            s, scoring = ask(page, answer)
            print(f"ask {i + 1}: Enter to heatmap {s:.1f} s ({len(words.encode(answer).ids)}-token completion, "
                  f"of which scoring {scoring:.1f} s); load {load()}", flush=True)
        shots(page, folder, "asked")
        browser.close()


if __name__ == "__main__":
    main()
