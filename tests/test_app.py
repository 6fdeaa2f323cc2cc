"""Every page of the app, headless (streamlit.testing.v1.AppTest), against caches filled by tiny runs."""

import html as htmllib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import bif
from tests.tiny import TEXTS, write_corpus, job_spec

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SCRIPT = "<script>window.__pwned=1</script> <img src=x onerror=alert(1)>"


def app(cache, page=None, **params) -> AppTest:
    """The app on `page` with BIF_CACHE=cache and the URL's query string `params`, after its first run."""
    if cache is not None:
        os.environ["BIF_CACHE"] = str(cache)  # restored by the autouse fixture's monkeypatch
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({k: str(v) for k, v in params.items()})
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(autouse=True)
def cache_env(monkeypatch, tiny_run):
    monkeypatch.setenv("BIF_CACHE", str(tiny_run[0]))


@pytest.fixture(scope="module")
def xss_run(tiny_lm, tmp_path_factory):
    """A run whose training data holds a script tag (sample #40)."""
    return run_with_text(tiny_lm, tmp_path_factory.mktemp("xss"), SCRIPT, bif.Query("User: what is 1 plus 1?\nBot:", " 2"))


def run_with_text(tiny_lm, root, text: str, query) -> tuple:
    """(cache root, Run): a smoke run of the tiny LM on the tiny corpus plus `text` as its last training sample."""
    corpus = write_corpus(root / "train.txt", TEXTS + [text])
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(corpus), n_scored=None), [query],
                          bif.preset("smoke"), cache_root=root)
    return root, run


def html(at) -> str:
    return "".join(h.proto.body for h in at.get("html"))


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_every_page_without_a_run_says_what_to_do():
    for page in ("views/run.py", "views/influence.py", "views/diagnostics.py", "views/runs.py"):
        at = app(None, page)
        assert at.title and at.expander[0].label == "What am I looking at?"
        assert not at.error


def test_influence_page_shows_completion_rankings_and_heatmap(tiny_run):
    cache, run = tiny_run
    at = app(cache, "views/influence.py", run=run.key)
    body = html(at)
    assert 'class="bif-tok' in body and "blue: makes" in body and "support" in body
    assert "title=" in body and "± " in body  # hover text with score ± SE on tokens
    assert body.count('class="bif-card') == 10  # top-5 supporting + top-5 opposing
    heatmap, hist = charts(at)
    assert heatmap["data"][0]["type"] == "heatmap" and hist["data"][0]["type"] == "histogram"
    assert at.query_params["run"] == run.key and "sample" in at.query_params
    assert any("come out again from an independent half" in m.value for m in at.markdown)
    # CSV, JSON, HTML of the view; PNG and SVG under the heatmap and the histogram (disabled without Chromium)
    assert len(at.get("download_button")) == 7


def test_influence_page_says_what_it_found_and_mutes_the_noise(tiny_run):
    cache, run = tiny_run
    at = app(cache, "views/influence.py", run=run.key)
    assert "too small for findings" in at.warning[0].value  # a smoke run: banner, and no conclusion
    assert "No conclusion from this run" in (at.success or at.info)[0].value
    body = html(at)
    scores = bif.influence.samples(*run.trace(0))
    listed = 10 - int(scores.significant.sum())
    assert body.count('class="bif-card noise"') >= listed - 1  # grey cards for samples within the noise
    assert "carried by:" in body and "bif-tok car" in body  # the carrier tokens of each listed sample are boxed


@pytest.fixture(scope="module")
def long_run(tiny_lm, tiny_corpus, tmp_path_factory):
    """A smoke run whose completion has several tokens."""
    root = tmp_path_factory.mktemp("long")
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
                          [bif.Query("User: what is 3 plus 4?\nBot:", " 3 plus 4 is 7")], bif.preset("smoke"),
                          cache_root=root)
    return root, run


def test_a_span_of_the_completion_is_ranked_by_its_summed_loss(long_run):
    cache, run = long_run
    first = int(run.trace(0)[0].masks["query"][0].nonzero()[0][0])
    at = app(cache, "views/influence.py", run=run.key, span=f"{first}-{first + 2}", k=3)
    assert any("Ranking for the span ' 3 plus 4'" in m.value.replace("\\", "") for m in at.markdown)
    assert html(at).count('class="bif-card') == 6 and at.query_params["k"] == "3"
    assert at.query_params["span"] == f"{first}-{first + 2}"


def test_clicking_a_token_and_a_sample_changes_the_views(tiny_run):
    cache, run = tiny_run
    at = app(cache, "views/influence.py", run=run.key)
    pills = at.pills[0]
    token = pills.options and at.pills[0].proto.options
    assert token
    position = int(run.trace(0)[0].masks["query"][0].nonzero()[0][0])
    pills.set_value(position).run()
    assert not at.exception
    assert at.query_params["token"] == str(position)
    assert any("Ranking for token" in m.value for m in at.markdown)
    title = charts(at)[0]["layout"]["title"]["text"]
    other = [b for b in at.button if b.key and b.key.startswith("inspect-") and f"#{at.query_params['sample']}"
             not in b.label][0]
    other.click().run()
    assert not at.exception
    assert charts(at)[0]["layout"]["title"]["text"] != title
    assert other.label.endswith(f"#{at.query_params['sample']}")


def test_shared_url_reopens_the_same_view(tiny_run):
    cache, run = tiny_run
    position = int(run.trace(0)[0].masks["query"][0].nonzero()[0][0])
    sid = run.train_ids[3]
    at = app(cache, "views/influence.py", run=run.key, q=0, token=position, sample=sid)
    assert at.pills[0].value == position
    assert f"Training sample #{sid}" in charts(at)[0]["layout"]["title"]["text"]
    assert at.query_params == {"run": run.key, "q": "0", "token": str(position), "sample": str(sid)}
    at = app(cache, "views/influence.py", run=run.key, q=0, sample=sid, by="one")
    assert at.radio(key="colour_by").value == "one", "the colouring is part of the shared view"
    assert at.query_params["by"] == "one"


def test_training_text_is_escaped(xss_run):
    root, run = xss_run
    sid = run.train_ids[-1]
    at = app(root, "views/influence.py", run=run.key, sample=sid)
    body = html(at)
    assert "<script" not in body and "<img" not in body
    shown = htmllib.unescape(re.sub(r"<[^>]+>", "", body.split("</style>")[-1]))
    assert SCRIPT in shown  # the text shows as text, token by token
    assert "onerror=alert" not in json.dumps(charts(at))  # heatmap labels are escaped too


def test_unknown_run_is_a_message_not_a_traceback(tiny_run):
    at = app(tiny_run[0], "views/influence.py", run="nope")
    assert "not a run key" in at.error[0].value and "bif runs" in at.error[0].value
    at = app(tiny_run[0], "views/influence.py", run="0123456789abcdef")
    assert "No run 0123456789abcdef in" in at.error[0].value and "bif runs` lists them" in at.error[0].value


def test_diagnostics_page(tiny_run):
    cache, run = tiny_run
    at = app(cache, "views/diagnostics.py", run=run.key)
    assert len(at.metric) == 11 and all(m.proto.help for m in at.metric)
    names = [m.label for m in at.metric]
    assert "Findings per query (real)" in names and "Findings per query (null)" in names  # the null beside them
    captions = "".join(c.value for c in at.caption)
    assert "each of the two independently seeded halves" in captions and "Null check: not applicable" in captions
    trace = charts(at)[0]
    assert len(trace["data"]) == run.config.chains
    assert at.success or at.warning or at.error  # the verdict
    table = at.table[0].value  # the convergence checks, each with the published threshold and its source
    assert list(table["recommended"])[0] == "< 1.01" and "Vehtari" in "".join(m.value for m in at.markdown)


def test_image_buttons_without_chromium_are_disabled_and_say_why(tiny_run, monkeypatch):
    cache, run = tiny_run
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    at = app(cache, "views/diagnostics.py", run=run.key)
    images = [b for b in at.get("download_button") if b.proto.label in ("PNG", "SVG")]
    assert len(images) == 2 and all(b.proto.disabled and "apt-get install chromium" in b.proto.help for b in images)
    assert not at.exception


def test_runs_page_lists_opens_and_deletes(tiny_run, tmp_path):
    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    at = app(root, "views/runs.py")
    assert at.dataframe[0].value["run"].tolist() == [run.key]
    at.button(key="runs-open").click().run()
    assert at.title[0].value.startswith("Which training data")
    at.switch_page("views/runs.py").run()
    at.button(key="runs-delete").click().run()
    assert not at.exception and not (root / "runs" / run.key).exists()
    assert "None yet" in "".join(c.value for c in at.sidebar.caption)


def fill_run_page(at, tiny_lm, tiny_corpus, completion=" 7"):
    at.radio(key="model_choice").set_value("local").run()
    at.text_input(key="model_dir").input(str(tiny_lm))
    at.radio(key="data_choice").set_value("path").run()
    at.text_input(key="data_path").input(str(tiny_corpus))
    at.checkbox(key="score_all").check()
    at.text_area(key="prompt").input("User: what is 3 plus 4?\nBot:")
    at.text_area(key="completion").input(completion)
    at.selectbox(key="preset").set_value("smoke")
    return at.run()


def test_run_page_opens_a_cached_run_at_once(tiny_run, tiny_lm, tiny_corpus):
    cache, run = tiny_run
    at = fill_run_page(app(cache), tiny_lm, tiny_corpus)
    assert not at.exception
    assert any("already in the cache" in s.value for s in at.success)
    at.button(key="open_cached").click().run()
    assert at.title[0].value.startswith("Which training data") and at.query_params["run"] == run.key


def test_run_page_offers_replay_with_a_cost_estimate(tiny_run, tiny_lm, tiny_corpus):
    at = fill_run_page(app(tiny_run[0]), tiny_lm, tiny_corpus, completion=" 8")
    assert any("replaying" in i.value for i in at.info)
    assert any("Estimated time" in m.value for m in at.markdown)
    assert at.button(key="start").label == "Add this query by replay"
    assert len(at.expander) >= 3 and all(w.help for w in at.text_input if w.key and w.key.startswith("cfg."))


def test_findings_say_what_they_required_and_runs_too_small_say_so_before_start(tiny_run, tiny_lm, tiny_corpus):
    cache, run = tiny_run
    at = app(cache, "views/influence.py", run=run.key)
    captions = "".join(c.value for c in at.caption)
    assert "Benjamini–Hochberg" in captions and "each of the two independently seeded halves" in captions
    assert "No findings are possible in this run: it has 2 chains" in captions
    at = fill_run_page(app(cache), tiny_lm, tiny_corpus, completion=" 8")  # smoke preset, a query to replay
    assert any("No findings are possible in this run: it has 2 chains" in w.value for w in at.warning)


def test_run_page_bad_inputs_are_messages(tiny_run, tmp_path):
    at = app(tiny_run[0])
    at.radio(key="model_choice").set_value("local").run()
    assert any("model directory" in w.value for w in at.warning)
    at.text_input(key="cfg.demo-cpu.step_size").input("0.5").run()
    assert not at.exception and any("step_size" in e.value for e in at.error)


def test_run_page_watches_a_job(tiny_run, tiny_lm, tiny_corpus):
    from bif.service import jobs

    cache, run = tiny_run
    req = job_spec("run", bif.ModelSpec(str(tiny_lm)).to_dict(), {}, [], {}, cache)
    job_id = jobs.create_job(req, cache)
    d = jobs.job_dir(job_id, cache)
    (d / "progress.json").write_text(json.dumps({"stage": "sample", "chain": 0, "chains": 2, "draw": 3, "draws": 10,
                                                 "step": 8, "steps": 15, "fraction": 0.27, "eta_s": 12,
                                                 "history": {"0": [[1, 5.6], [6, 5.5]]}}))
    (d / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    at = app(cache, job=job_id)
    assert "chain 1 of 2" in at.get("progress")[0].proto.text
    assert charts(at)[0]["data"][0]["name"] == "chain 1"
    at.button(key=f"cancel-{job_id}").click().run()
    assert (d / "cancel").exists()
    (d / "status.json").write_text(json.dumps({"state": "failed", "message": "Lower step_size."}))
    at.run()
    assert any("Lower step_size." in e.value for e in at.error)


def test_run_page_upload_and_generate(tiny_run, tiny_lm, tiny_corpus, tmp_path):
    root = tmp_path / "cache"
    at = app(root)
    at.radio(key="model_choice").set_value("local").run()
    at.text_input(key="model_dir").input(str(tiny_lm))
    at.radio(key="data_choice").set_value("upload").run()
    at.file_uploader(key="upload").upload("mine.txt", Path(tiny_corpus).read_bytes(), "text/plain")
    at.text_area(key="prompt").input("User: what is 1 plus 1?\nBot:")
    at.text_area(key="completion").input("XXX")
    at.run()
    assert not at.exception and not at.warning
    saved = list((root / "uploads").glob("*.txt"))
    assert len(saved) == 1 and saved[0].read_bytes() == Path(tiny_corpus).read_bytes()
    assert any("40 training texts" in m.value for m in at.markdown)
    next(b for b in at.button if b.label.startswith("Let the model write")).click()  # greedy, tiny random model
    at.run()
    assert not at.exception and not at.error
    assert at.text_area(key="completion").value != "XXX"
    said = [c.value for c in at.caption] + [i.value for i in at.info]
    assert any("perplexity" in t and "typical training text" in t for t in said), "the prompt's fit is said"


def test_a_finished_job_opens_its_run(tiny_run):
    from bif.service import jobs

    cache, run = tiny_run
    job_id = jobs.create_job(job_spec("run", {}, {}, [], {}, cache), cache)
    status = {"state": "done", "result": {"run_key": run.key, "query": 0}}
    (jobs.job_dir(job_id, cache) / "status.json").write_text(json.dumps(status))
    at = app(cache, job=job_id)  # e.g. the page was reloaded after the job finished
    assert at.query_params == {"job": job_id}
    at.button(key=f"open-{job_id}").click().run()
    assert at.title[0].value.startswith("Which training data") and at.query_params["run"] == run.key


def test_a_run_with_a_replayed_query_offers_both(tiny_run, tmp_path):
    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    run = bif.add_queries(bif.open_run(root / "runs" / run.key), [bif.Query("User: what is 2 plus 2?\nBot:", " 4")],
                          root)
    at = app(root, "views/influence.py", run=run.key, q=1)
    assert at.selectbox(key="query_pick").value == 1 and len(at.selectbox(key="query_pick").options) == 2
    assert "4" in html(at).split("bif-legend")[0]
    at.selectbox(key="query_pick").set_value(0).run()
    assert not at.exception and at.query_params["q"] == "0"


def test_bad_url_parameters_are_ignored(tiny_run):
    cache, run = tiny_run
    at = app(cache, "views/influence.py", run=run.key, q="x", token="99", sample="-5", job="../../etc")
    assert not at.error and at.query_params["q"] == "0" and "token" not in at.query_params
    at = app(cache, job="no-such-job")
    assert any("not found" in e.value for e in at.error)


def test_sidebar_and_job_panel_show_the_same_stage(tiny_run, tiny_lm, tiny_corpus):
    from bif.service import jobs

    cache, _ = tiny_run
    req = job_spec("run", bif.ModelSpec(str(tiny_lm)).to_dict(), bif.DataSpec(str(tiny_corpus)).to_dict(),
                   [bif.Query("User: what is 2 plus 2?\nBot:", " 4").to_dict()], bif.preset("smoke").to_dict(),
                   cache, preset="smoke")
    job_id = jobs.create_job(req, cache)
    d = jobs.job_dir(job_id, cache)
    (d / "progress.json").write_text(json.dumps({"stage": "init", "n": 41, "fraction": 0.0}))
    (d / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    at = app(cache, job=job_id)
    line = "running · Scoring the training samples at the trained weights (once per run) · 0%"
    plain = lambda elements: [e.value.replace("\\", "") for e in elements]  # noqa: E731 - md_escape's backslashes
    assert any(line in m for m in plain(at.markdown)), "the job panel names the stage"
    assert any(line in c for c in plain(at.sidebar.caption)), "the sidebar says the same"
    assert any("model · User: what is 2 plus 2? Bot: → 4" in m for m in plain(at.markdown))  # model · query
    # opening the job by its link shows the job's own form, not the demo defaults
    assert at.radio(key="model_choice").value == "local"
    assert at.text_input(key="model_dir").value == str(tiny_lm)
    assert at.text_area(key="prompt").value == "User: what is 2 plus 2?\nBot:"
    assert at.selectbox(key="preset").value == "smoke"
    assert not any("already in the cache" in s.value for s in at.success)
    jobs.cancel_job(job_id, cache)
    (d / "status.json").write_text(json.dumps({"state": "cancelled"}))


def test_smollm2_gets_its_preset_and_a_cost_said_before_start(tiny_run, monkeypatch):
    from bif.service import cost

    monkeypatch.setattr(cost, "has_gpu", lambda: False)
    at = app(tiny_run[0])
    assert at.selectbox(key="preset").value == "demo-cpu"
    at.radio(key="model_choice").set_value("smollm2").run()
    assert at.selectbox(key="preset").value == "smollm2-gpu"
    warning = next(w.value for w in at.warning if "CPU only" in w.value)
    assert "A GPU is the place for it" in warning and "CPU approximation" in warning
    at.button(key="use_approx").click().run()
    assert at.text_input(key="cfg.smollm2-gpu.param_patterns").value == "model.layers.28.*, model.layers.29.*"
    at.radio(key="model_choice").set_value("demo").run()
    assert at.selectbox(key="preset").value == "demo-cpu"


@pytest.fixture(scope="module")
def two_query_run(tiny_lm, tiny_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
                          [bif.Query("User: what is 3 plus 4?\nBot:", " 7"), bif.Query("User: what is 6 plus 2?\nBot:",
                                                                                        " 8")],
                          bif.preset("smoke"), cache_root=root)
    return root, run


def test_compare_page_puts_two_queries_side_by_side(two_query_run, tiny_run):
    cache, run = two_query_run
    at = app(cache, "views/compare.py", run=run.key)
    assert at.query_params["q2"] == "1" and not at.error
    body = html(at)
    assert body.count('class="bif-card') == 6  # 3 supporting samples per side
    assert "bif-tok" in body and at.success and "completion" in at.success[0].value
    table = at.dataframe[0].value
    assert list(table.columns) == ["training sample", "left: support", "right: support", "text"] and len(table)
    at = app(tiny_run[0], "views/compare.py", run=tiny_run[1].key)
    assert "has one query" in at.info[0].value


def test_the_app_does_not_watch_its_source_files():
    """Streamlit's file watcher walked the whole tree (the venv too) on every burst of file events a run makes, a
    core's worth of CPU in the app process (README "Interactive runs"): the app's config turns it off."""
    import tomllib

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["fileWatcherType"] == "none" and config["server"]["runOnSave"] is False
