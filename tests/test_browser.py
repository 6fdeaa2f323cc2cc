"""End to end in a real browser: Playwright drives Debian's Chromium against `streamlit run app.py`.

Runs a query from the Run page to a finished heatmap, clicks a completion token and a training sample, reopens
the shared URL in a new tab, and checks that a training text holding a <script> tag shows as text and runs
nothing. Prints the latency of re-selecting a token or a sample (not asserted). Screenshots go to screenshots/.
Run with: pytest -m browser tests/test_browser.py -s
"""

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.tiny import TEXTS, make_tiny_lm, write_corpus

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCRIPT = "<script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>"
PROMPT, COMPLETION = "User: what is 3 plus 4?\nBot:", " 7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(cache: Path, log_path: Path):
    """The app (streamlit run app.py) on a free local port with BIF_CACHE=cache; yields its base URL."""
    port = free_port()
    env = {**os.environ, "BIF_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start: " + log_path.read_text())
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, model dir, training file): the app on a free port with BIF_CACHE in a temp dir."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("browser")
    model = make_tiny_lm(tmp / "model")
    corpus = write_corpus(tmp / "train.txt", TEXTS + [SCRIPT])
    with app_server(tmp / "cache", tmp / "server.log") as url:
        yield url, model, corpus


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def settle(page, timeout=60.0) -> None:
    """Wait until Streamlit has finished its script run: no running indicator, no stale element, for 0.3 s."""
    busy = '[data-testid="stStatusWidget"], [data-stale="true"]'
    quiet, t0 = 0, time.perf_counter()
    while quiet < 3:
        quiet = quiet + 1 if page.locator(busy).count() == 0 else 0
        if time.perf_counter() - t0 > timeout:
            raise AssertionError("the app did not settle")
        page.wait_for_timeout(100)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


DIALOGS: list[str] = []  # alert()/confirm() calls seen: injected script would show up here


def new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.on("dialog", lambda d: (DIALOGS.append(d.message), d.dismiss()))
    return page


def heatmap_title(page) -> str:
    return page.locator(".js-plotly-plot .gtitle").first.text_content()


def fill_run_form(page, url: str, model, corpus, prompt: str = PROMPT, completion: str = COMPLETION) -> None:
    """Open the Run page and fill it in: a model directory, a training file, the prompt and the completion."""
    page.goto(url)
    page.get_by_role("heading", name="Run BIF on a completion").wait_for(timeout=60_000)
    settle(page)
    page.get_by_text("A model directory on disk").click()
    page.get_by_label("Model directory", exact=True).fill(str(model))
    page.get_by_label("Model directory", exact=True).press("Enter")
    settle(page)
    page.get_by_text("A file on disk").click()
    page.get_by_label("Training file path", exact=True).fill(str(corpus))
    page.get_by_label("Training file path", exact=True).press("Enter")
    settle(page)
    for label, text in (("Prompt", prompt), ("Completion", completion)):
        page.get_by_label(label, exact=True).fill(text)
        page.get_by_label(label, exact=True).press("Control+Enter")
        settle(page)


def test_run_query_click_share_and_escape(server, browser):
    url, model, corpus = server
    page = new_page(browser)
    fill_run_form(page, url, model, corpus)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Preset").click()
    page.get_by_role("option", name="smoke", exact=True).click()
    settle(page)
    page.get_by_text("Estimated time").wait_for()
    shot(page, "1-run-page")

    t0 = time.perf_counter()
    page.get_by_role("button", name="Start the run").click()
    page.get_by_text("Open the influence view").wait_for(timeout=180_000)
    print(f"\nrun from click to done: {time.perf_counter() - t0:.1f} s (worker start-up included)")
    settle(page)
    shot(page, "2-run-done")

    page.get_by_text("Open the influence view").click()
    page.get_by_role("heading", name="Which training data made this completion?").wait_for(timeout=60_000)
    page.locator(".js-plotly-plot .gtitle").first.wait_for(timeout=60_000)
    settle(page)
    assert page.locator(".bif-tok").count() > 5 and page.get_by_text("Most supporting").is_visible()
    shot(page, "3-influence")
    first_title = heatmap_title(page)
    ranking = page.get_by_text(re.compile("^Ranking for")).inner_text()

    # click a completion token: the ranking is redone for that token, the URL records it
    t0 = time.perf_counter()
    page.locator('[data-testid="stButtonGroup"] [role="radiogroup"] button').first.click()
    page.get_by_text(re.compile("^Ranking for token")).wait_for()
    token_shown = time.perf_counter() - t0
    page.wait_for_url(re.compile("token="))
    settle(page)
    token_latency = time.perf_counter() - t0
    assert page.get_by_text(re.compile("^Ranking for")).inner_text() != ranking
    shot(page, "4-token")

    # click another training sample: the heatmap switches to it
    current = re.search(r"#(\d+)", first_title).group(1)
    button = page.get_by_role("button", name=re.compile(r"^Inspect sample #(?!%s$)\d+$" % current)).first
    chosen = re.search(r"#(\d+)", button.inner_text()).group(1)
    t0 = time.perf_counter()
    button.click()
    page.locator(".js-plotly-plot .gtitle", has_text=f"#{chosen}:").wait_for()
    sample_shown = time.perf_counter() - t0
    page.wait_for_url(re.compile(f"sample={chosen}"))
    settle(page)
    sample_latency = time.perf_counter() - t0
    assert heatmap_title(page) != first_title
    shot(page, "5-sample")
    print(f"latency with a cached run, click -> new view shown (-> page idle, incl. 0.3 s quiet check): "
          f"token {token_shown:.2f} s ({token_latency:.2f} s), sample {sample_shown:.2f} s ({sample_latency:.2f} s)")

    # the shared URL opens the same view in a new tab
    shared = page.url
    other = new_page(browser)
    other.goto(shared)
    other.locator(".js-plotly-plot .gtitle", has_text=f"#{chosen}:").wait_for(timeout=60_000)
    settle(other)
    assert other.get_by_text(re.compile("^Ranking for token")).inner_text() == \
        page.get_by_text(re.compile("^Ranking for token")).inner_text()
    shot(other, "6-shared-link")

    # a training text with a script tag shows as text and runs nothing
    evil = other.url.split("sample=")[0] + f"sample={len(TEXTS)}"
    other.goto(evil)
    other.locator(".js-plotly-plot .gtitle", has_text=f"#{len(TEXTS)}:").wait_for(timeout=60_000)
    settle(other)
    texts = other.locator(".bif-toks").all_inner_texts()
    assert any(SCRIPT[:44] in t.replace("\n", "") for t in texts)  # the start of it (texts are cut at 64 tokens)
    assert other.evaluate("window.__pwned") is None and not DIALOGS
    shot(other, "7-script-as-text")

    # the other pages render without an error
    for name, heading in (("Diagnostics", "Diagnostics"), ("Runs", "Runs")):
        other.get_by_role("link", name=name).click()
        other.get_by_role("heading", name=re.compile(heading)).first.wait_for()
        settle(other)
        assert other.locator('[data-testid="stException"]').count() == 0
        shot(other, f"8-{name.lower()}")
    other.close()
    page.close()
