"""Exports stand on their own (bif.export): every CSV, JSON and HTML file names its run, model, data, query, token
text, sign convention and settings; figures render to PNG/SVG offline (bif.image, skipped without Chromium)."""

import csv
import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bif import export, image
from bif.core import influence
from bif.core.estimators import covariance

needs_chromium = pytest.mark.skipif(not image.available(), reason="no Chromium here (apt-get install chromium)")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def completion_position(run, q=0) -> int:
    trace, row = run.trace(q)
    return int(np.flatnonzero(trace.masks["query"][row])[0])


def test_context_names_run_model_data_query_token_and_settings(tiny_run):
    _, run = tiny_run
    p = completion_position(run)
    ctx = export.context(run, 0, p, sample=run.train_ids[3])
    tokens = run.query_tokens(0)
    assert ctx.run_key == run.key and ctx.model and ctx.data["source"] == run.request["data"]["source"]
    assert (ctx.prompt, ctx.completion) == (run.queries[0].prompt, run.queries[0].completion)
    assert ctx.positions == (p,) and ctx.token_text == tokens[p + 1] == " 7"  # position p predicts token p+1
    assert repr(" 7") in ctx.view and ctx.sample_text == run.train_texts[3]
    assert ctx.settings == run.request["config"] and ctx.settings["draws"] == run.config.draws
    assert "positive = the training sample makes the completion more likely" in ctx.sign_convention
    whole = export.context(run, 0)
    assert whole.positions is None and whole.token_text is None and whole.view == "the whole completion"


def test_csv_and_json_carry_the_context_in_every_file(tiny_run):
    _, run = tiny_run
    p = completion_position(run)
    trace, row = run.trace(0)
    scores = influence.samples(trace, row, p)
    ctx = export.context(run, 0, p)
    rows = export.sample_rows(scores, run.train_ids, run.train_texts)
    table = list(csv.DictReader(io.StringIO(export.to_csv(ctx, rows))))
    assert len(table) == len(run.train_ids)
    for r in table:  # every row stands on its own
        assert (r["run_key"], r["prompt"], r["completion"]) == (run.key, run.queries[0].prompt, " 7")
        assert r["view"] == ctx.view and r["view_positions"] == str(p) and "+Corr" in r["sign_convention"]
        assert json.loads(r["settings"])["draws"] == run.config.draws
    assert float(table[0]["support"]) == pytest.approx(np.nanmax(scores.support))
    j = json.loads(export.to_json(ctx, rows))
    assert j["schema"] == export.SCHEMA and j["context"]["token_text"] == " 7" and j["context"]["positions"] == [p]
    assert j["context"]["model"] == ctx.model and j["context"]["settings"]["chains"] == run.config.chains
    assert j["rows"][0]["train_id"] == rows[0]["train_id"] and len(j["rows"]) == len(rows)


def test_rows_keep_the_sign_convention():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 50, 2))
    s = influence._squeeze(covariance(x, x[:, :, :1]), 1)  # sample 0 is the query itself: Corr = 1
    rows = export.sample_rows(s, [10, 11], ["a", "b"])
    assert rows[0]["train_id"] == 10 and rows[0]["support"] > 0 and rows[0]["bif"] < 0  # support = +Corr = sign(-bif)
    tok = export.token_rows(["a", "b", "c"], s)
    assert [t["token"] for t in tok] == ["b", "c"] and tok[0]["position"] == 0 and tok[0]["token_index"] == 1


def test_heatmap_html_holds_the_texts_escaped_and_whole(tiny_run):
    _, run = tiny_run
    fig, ctx = export.view_figure(run, 0, "heatmap", sample=run.train_ids[0])
    evil = "<script>alert(1)</script>\nsecond line " + "x" * 300
    ctx = ctx.__class__(**{**ctx.__dict__, "sample_text": evil, "prompt": "P<b>"})
    page = export.heatmap_html(ctx, fig, ["<i>", "b"])
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x" * 300 in page and "second line" in page  # whole, line breaks kept by <pre>
    assert "P&lt;b&gt;" in page and export.esc(run.queries[0].completion) in page and run.key in page
    assert "Sign convention" in page and "Sampler settings" in page and "plotly" in page.lower()
    # the figure reserves room for its labels and axis title instead of cutting them
    assert fig.layout.yaxis.automargin and fig.layout.xaxis.automargin


def cli(*args, cache, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bif", "--cache", str(cache), *args], capture_output=True,
                          env=env, timeout=300)


def test_cli_exports_have_context(tiny_run, tmp_path):
    cache, run = tiny_run
    p = completion_position(run)
    r = cli("export", run.key, "--format", "json", "--token", str(p), cache=cache)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["context"]["run_key"] == run.key and j["context"]["token_text"] == " 7"
    out = tmp_path / "h.html"
    r = cli("export", run.key, "--format", "html", "--sample", str(run.train_ids[1]), "--out", str(out), cache=cache)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert export.esc(run.train_texts[1]) in page and export.esc(run.queries[0].prompt) in page
    r = cli("export", run.key, "--format", "html", "--sample", "99999", cache=cache)
    assert r.returncode == 2 and b"not among the" in r.stderr and b"Traceback" not in r.stderr


def test_cli_image_without_chromium_says_how_to_get_it(tiny_run):
    cache, run = tiny_run
    r = cli("export", run.key, "--format", "png", cache=cache, env={"BROWSER_PATH": "/nonexistent/chromium"})
    assert r.returncode == 2 and b"apt-get install chromium" in r.stderr and b"Traceback" not in r.stderr


@needs_chromium
def test_figures_render_to_png_and_svg(tiny_run, tmp_path):
    cache, run = tiny_run
    for which in export.FIGURES:
        fig, ctx = export.view_figure(run, 0, which)
        png = image.figure_image(export.captioned(fig, ctx), "png")
        assert png.startswith(PNG_MAGIC)
    svg = image.figure_image(export.captioned(fig, ctx), "svg")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg") and run.key in svg.decode()  # the caption names the run
    out = tmp_path / "f.svg"
    r = cli("export", run.key, "--format", "svg", "--figure", "histogram", "--out", str(out), cache=cache)
    assert r.returncode == 0, r.stderr
    ET.parse(out)
