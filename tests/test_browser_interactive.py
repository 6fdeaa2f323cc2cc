"""In a real browser (-m browser): a new question asked on the Influence page of a finished run is answered from
its stored draws and its heatmap replaces the old one on the same page; 'Sample more' is offered. Prints the
latency from the click to the new heatmap (not asserted). Run with: pytest -m browser tests/test_browser_interactive.py -s
"""

import time

import pytest

import bif
from tests.test_browser import browser, new_page, server, settle  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

PROMPT, COMPLETION = "User: what is 3 plus 4?\nBot:", " 7"


def test_ask_another_completion_and_find_its_heatmap(server, browser):  # noqa: F811
    url, model, corpus = server
    cache = model.parent / "cache"  # the server's BIF_CACHE (tests/test_browser.py)
    run = bif.compute_run(bif.ModelSpec(str(model)), bif.DataSpec(str(corpus), n_scored=None),
                          [bif.Query(PROMPT, COMPLETION)], bif.preset("smoke"), cache_root=cache)
    page = new_page(browser)
    page.goto(f"{url}/influence?run={run.key}")
    page.get_by_role("heading", name="Which training data made this completion?").wait_for(timeout=60_000)
    settle(page)
    page.get_by_text("Sample more (10 → 20 draws)").first.wait_for()
    page.get_by_text("Ask about another completion").click()
    page.get_by_label("Prompt", exact=True).fill("User: what is 9 plus 9?\nBot:")  # no training text has a 9 + b
    page.get_by_label("Completion to explain", exact=True).fill(" 18")
    page.get_by_label("Completion to explain", exact=True).press("Tab")  # the form holds the typed value
    t0 = time.perf_counter()
    page.get_by_role("button", name="Ask", exact=True).click()
    answered = page.get_by_text("Answered from stored draws")
    try:  # the answer, or the message the page shows instead (a failure then says what the user would read)
        answered.or_(page.locator('[data-testid="stAlertContentError"]')).first.wait_for(timeout=120_000)
    except Exception as e:  # noqa: BLE001 - playwright's TimeoutError: say what the server logged
        log = (model.parent / "server.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"no answer after 120 s ({e}); server log ends:\n{log}") from None
    assert answered.count(), "the page shows an error: " + " | ".join(
        page.locator('[data-testid="stAlertContentError"]').all_text_contents())
    settle(page)
    print(f"\nask from click to new heatmap: {time.perf_counter() - t0:.1f} s")
    assert "q=1" in page.url, "the page switched to the new query"
    drawn = page.locator(".bif-pick").first.text_content()  # the clickable completion (views/ui/pick.py)
    assert "9 plus 9" in drawn and "18" in drawn, drawn
