"""In a real browser: every export of the Influence and Diagnostics pages downloads and stands on its own.

A finished smoke run of the tiny model is put in the app's cache; the test opens the Influence page on it, clicks
each download button (CSV, JSON, heatmap HTML, PNG and SVG of the heatmap and histogram) and the Diagnostics
page's trace PNG, and checks the files: context (run key, prompt, completion, settings, sign convention) in the
CSV, JSON and HTML, PNG magic bytes, SVG that parses. Prints the time each download took (not asserted).
Run with: pytest -m browser tests/test_browser_exports.py -s
"""

import csv
import io
import json
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.test_browser import ARGS, CHROMIUM, app_server, settle
from tests.tiny import make_tiny_lm, write_corpus

pytestmark = pytest.mark.browser
PROMPT, COMPLETION = "User: what is 3 plus 4?\nBot:", " 7"


@pytest.fixture(scope="module")
def app_with_run(tmp_path_factory):
    """(base URL, Run): the app on a free port, its cache holding one finished smoke run."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    import bif

    tmp = tmp_path_factory.mktemp("browser-exports")
    cache = tmp / "cache"
    run = bif.compute_run(bif.ModelSpec(str(make_tiny_lm(tmp / "model"))),
                          bif.DataSpec(str(write_corpus(tmp / "train.txt")), n_scored=None),
                          [bif.Query(PROMPT, COMPLETION)], bif.preset("smoke"), cache_root=cache)
    with app_server(cache, tmp / "server.log") as url:
        yield url, run


def download(page, button) -> bytes:
    t0 = time.perf_counter()
    with page.expect_download(timeout=120_000) as d:
        button.click()
    data = Path(d.value.path()).read_bytes()
    print(f"download {d.value.suggested_filename}: {time.perf_counter() - t0:.2f} s, {len(data)} bytes")
    return data


def test_every_export_downloads_with_its_context(app_with_run):
    from playwright.sync_api import sync_playwright

    url, run = app_with_run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
        page.goto(f"{url}/influence?run={run.key}")
        page.get_by_text("Share and export").wait_for(timeout=120_000)
        settle(page)

        def named(text):
            return page.locator('[data-testid="stDownloadButton"]').get_by_role(
                "button", name=re.compile(re.escape(text) + "$"))

        rows = list(csv.DictReader(io.StringIO(download(page, named("Ranking as CSV")).decode())))
        assert rows and all(r["run_key"] == run.key and r["prompt"] == PROMPT and r["completion"] == COMPLETION
                            for r in rows)
        assert json.loads(rows[0]["settings"])["draws"] == run.config.draws and "+Corr" in rows[0]["sign_convention"]
        j = json.loads(download(page, named("View as JSON")))
        assert j["context"]["run_key"] == run.key and j["context"]["settings"] == run.request["config"]
        assert len(j["rows"]) == len(run.train_ids)
        page_html = download(page, named("Heatmap as HTML")).decode()
        assert run.key in page_html and "Sign convention" in page_html and "3 plus 4" in page_html
        images = [download(page, named(fmt).nth(i)) for i in range(2) for fmt in ("PNG", "SVG")]
        for png, svg in (images[0:2], images[2:4]):  # heatmap, histogram
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            assert ET.fromstring(svg).tag.endswith("svg") and run.key.encode() in svg  # caption names the run
        page.goto(f"{url}/diagnostics?run={run.key}")
        page.get_by_text("Convergence checks").wait_for(timeout=120_000)
        settle(page)
        png = download(page, named("PNG").first)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        browser.close()
