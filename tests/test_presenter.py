"""The demo as a presenter walks it, in a real browser (Playwright + Debian's Chromium against `streamlit run`).

Start a run (demo-cpu preset on the tiny model), read the headline sentence, drag across a span of the completion,
see the carrier tokens boxed in the top sample and a muted noise sample, ask a second question and compare the two
side by side, open each export and check that it names its context. Prints the latency of token and span selection
(not asserted) and saves screenshots at 1400 and 800 px under screenshots/ (look at them for clipping).
Run with: pytest -m browser tests/test_presenter.py -s
"""

import json
import re
import time

import pytest

from tests.test_browser import browser, fill_run_form, new_page, server, settle, shot  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

PROMPT, COMPLETION = "User: what is 3 plus 4?\nBot:", " 3 plus 4 is 7"
SECOND = " 7"
WIDTHS = (1400, 800)


def shots(page, name: str) -> None:
    """Screenshots of the page at each width (full page), then back to the first width."""
    for w in WIDTHS:
        page.set_viewport_size({"width": w, "height": 5200})  # Streamlit scrolls inside: a tall viewport shows all
        page.wait_for_timeout(400)
        settle(page)
        shot(page, f"presenter-{name}-{w}")
    page.set_viewport_size({"width": WIDTHS[0], "height": 2400})
    settle(page)


def ranking(page) -> str:
    return page.get_by_text(re.compile("^Ranking for")).inner_text()


def timed(page, action, text: str) -> float:
    """Seconds from `action()` to a ranking line containing `text` (the new view shown)."""
    before = ranking(page)
    t0 = time.perf_counter()
    action()
    while True:
        now = page.get_by_text(re.compile("^Ranking for")).all_inner_texts()
        if now and now[0] != before and now[0].startswith("Ranking for " + text):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 30:
            raise AssertionError(f"the ranking did not change to {text!r}: {now}")
        page.wait_for_timeout(20)


def start_run(page, url, model, corpus) -> None:
    fill_run_form(page, url, model, corpus, PROMPT, COMPLETION)
    page.get_by_text("Estimated time").wait_for()
    shots(page, "1-run")
    t0 = time.perf_counter()
    page.get_by_role("button", name="Start the run").click()
    page.get_by_text("Background job:").wait_for(timeout=60_000)
    side = page.locator('[data-testid="stSidebar"]').get_by_text("Background job:").inner_text()
    print(f"\nsidebar while running: {side!r}")
    page.get_by_text("Open the influence view").wait_for(timeout=600_000)
    print(f"run from click to done: {time.perf_counter() - t0:.1f} s")
    settle(page)
    page.get_by_text("Open the influence view").click()
    page.get_by_role("heading", name="Which training data made this completion?").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot .gtitle").first.wait_for(timeout=60_000)
    settle(page)


def check_exports(page) -> None:
    """Each download on the Influence page names its run, model, query and token (the part `eco` built)."""
    buttons = page.locator('[data-testid="stDownloadButton"] button:not([disabled])')
    names = []
    for i in range(buttons.count()):
        if not buttons.nth(i).is_visible():  # e.g. inside a collapsed expander
            continue
        with page.expect_download(timeout=60_000) as info:
            buttons.nth(i).click()
        d = info.value
        text = open(d.path(), "rb").read()
        names.append(d.suggested_filename)
        if d.suggested_filename.endswith((".csv", ".json", ".html", ".svg")):
            body = text.decode("utf-8", "replace")
            assert "3 plus 4 is 7" in body or "3 plus 4 is 7" in json.dumps(body), d.suggested_filename
            assert re.search(r"[0-9a-f]{16}", body), f"{d.suggested_filename} names no run key"
        else:
            assert text[:8] == b"\x89PNG\r\n\x1a\n", d.suggested_filename
    print(f"exports opened and checked for context: {names}")
    assert any(n.endswith(".csv") for n in names) and any(n.endswith(".json") for n in names)


def test_presenter_walk(server, browser):  # noqa: F811 - fixtures
    url, model, corpus = server
    page = new_page(browser)
    start_run(page, url, model, corpus)

    # the headline sentence, and no smoke banner on a demo-cpu run
    head = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(
        "training text|Nothing stands out")).first
    print(f"headline: {head.inner_text()!r}")
    assert page.get_by_text("too small for findings").count() == 0
    shots(page, "2-influence")

    # click one token, then drag across a span of the completion itself
    toks = page.locator(".bif-pick [data-p]")
    assert toks.count() >= 4
    first_click = timed(page, lambda: toks.nth(1).click(), "token")
    settle(page)
    again = timed(page, lambda: toks.nth(2).click(), "token")
    settle(page)

    def drag():
        a, b = toks.nth(0).bounding_box(), toks.nth(2).bounding_box()
        page.mouse.move(a["x"] + 3, a["y"] + a["height"] / 2)
        page.mouse.down()
        page.mouse.move(b["x"] + 3, b["y"] + b["height"] / 2, steps=5)
        page.mouse.up()

    span = timed(page, drag, "the span")
    page.wait_for_url(re.compile(r"span=\d+-\d+"))
    settle(page)
    print(f"latency click -> new ranking shown: first token {first_click:.2f} s, another token {again:.2f} s, "
          f"span {span:.2f} s")
    assert "' 3 plus'" in ranking(page) or "the span" in ranking(page)
    shots(page, "3-span")

    # carriers boxed in the top sample; noise samples muted grey
    top = page.locator(".bif-card").first
    assert top.locator(".bif-tok.car").count() >= 1 and "carried by:" in top.inner_text()
    noise = page.locator(".bif-card.noise")
    assert noise.count() >= 1
    assert "grayscale" in noise.first.evaluate("e => getComputedStyle(e).filter")
    print(f"cards: {page.locator('.bif-card').count()}, muted noise cards: {noise.count()}")

    check_exports(page)

    # ask a second question (stored draws: seconds), then compare the two side by side
    page.get_by_text("Ask about another completion").click()
    page.get_by_label("Completion to explain", exact=True).fill(SECOND)
    page.get_by_role("button", name="Ask", exact=True).click()
    page.get_by_text(re.compile("^Answered from")).wait_for(timeout=120_000)
    settle(page)
    page.get_by_role("link", name="Compare").click()
    page.get_by_role("heading", name="Compare two completions").wait_for(timeout=60_000)
    settle(page)
    sentence = page.locator('[data-testid="stAlert"]').filter(has_text="completion").last.inner_text()
    print(f"compare: {sentence!r}")
    assert page.get_by_role("heading", name="Left").is_visible() and page.get_by_role("heading", name="Right").is_visible()
    assert page.locator('[data-testid="stDataFrame"]').count() == 1
    shots(page, "4-compare")

    # a real model: its own preset, and before Start what it costs here and what fits a CPU
    page.get_by_role("link", name="Run", exact=True).click()
    page.get_by_role("heading", name="Run BIF on a completion").wait_for()
    settle(page)
    page.get_by_text("SmolLM2-135M-Instruct").click()
    settle(page)
    cost = page.get_by_text(re.compile("CPU only, no GPU"))
    if cost.count():  # no GPU on this machine
        print(f"SmolLM2 before Start: {cost.first.inner_text()!r}")
        assert "CPU approximation" in cost.first.inner_text()
    shots(page, "6-smollm2")

    for name, heading in (("Evidence", "Evidence"), ("Runs", "Runs")):
        page.get_by_role("link", name=name).click()
        page.get_by_role("heading", name=heading).first.wait_for()
        settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        shots(page, f"5-{name.lower()}")
    page.close()
