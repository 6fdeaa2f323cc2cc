"""The app while a run computes and when it grows: provisional results under a banner that goes when the run is
finished; 'Sample more' asks for the same run with twice the draws, which continues the finished chains."""

import json
import os
import shutil

import numpy as np
import pytest

import bif
from tests.tiny import job_spec
from bif.core.trace import open_chain
from bif.service import jobs, worker
from bif.layout import GROWS_FROM
from tests.test_app import app, html
from views.provisional import worth_redrawing


def _computing(tiny_run, tmp_path, written=6):
    """A copy of the tiny run as if chain 1 were at draw `written`, and a running job computing it."""
    cache, run = tiny_run
    root = tmp_path / "cache"
    d = shutil.copytree(run.dir, root / "runs" / run.key)
    (d / "COMPLETE").unlink()
    chain = d / "chain_001.safetensors"
    counter = open_chain(chain)["written"]
    with open(chain, "r+b") as f:
        os.pwrite(f.fileno(), np.array([written], dtype=np.int64).tobytes(), counter.offset)
    chain.rename(d / "chain_001.partial")
    job_id = jobs.create_job(job_spec("run", run.request["model"], run.request["data"],
                                      run.request["queries"], run.request["config"], root), root)
    jd = jobs.job_dir(job_id, root)
    (jd / "progress.json").write_text(json.dumps({"stage": "sample", "chain": 1, "chains": 2, "draw": written,
                                                  "draws": 10, "step": written + 5, "steps": 15, "fraction": 0.8,
                                                  "eta_s": 3, "run_key": run.key}))
    (jd / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    return root, run, job_id


def _finished(tiny_run, tmp_path):
    """The computing run of `_computing`, then finished: its last chain sealed, the job done."""
    root, run, job_id = _computing(tiny_run, tmp_path)
    d = root / "runs" / run.key
    (d / "chain_001.partial").unlink()
    shutil.copy(run.dir / "chain_001.safetensors", d)
    shutil.copy(run.dir / "COMPLETE", d)
    status = {"state": "done", "pid": os.getpid(), "result": {"run_key": run.key, "query": 0}}
    (jobs.job_dir(job_id, root) / "status.json").write_text(json.dumps(status))
    return root, run, job_id


def test_influence_page_shows_provisional_results_while_the_run_computes(tiny_run, tmp_path):
    root, run, job_id = _computing(tiny_run, tmp_path)
    at = app(root, "views/influence.py", job=job_id)
    text = " ".join(m.value for m in at.markdown)
    assert "Provisional" in text and "from 6 of 10 draws per chain" in text and "12 draws in all" in text
    assert "Nothing is marked as standing out until 4 chains are in" in text, "2 chains: no findings yet"
    rule = [m.proto.help for m in at.markdown if "Provisional" in m.value][0]
    assert "the chains and number of draws with the most draws in all, from 2 chains × 2 draws on" in rule
    assert 'class="bif-tok' in html(at) and at.get("plotly_chart"), "the views are drawn from the draws so far"
    bar = at.get("progress")[0].proto.text
    assert bar.startswith("Sampling chain 2 of 2")
    line = [c.value for c in at.sidebar.caption if "Background job" in c.value]
    assert line and "Sampling chain 2 of 2" in line[0], "the sidebar names the same stage"
    assert not [t for t in at.text_area if t.key == "ask_prompt"], "no new questions on an unfinished run"
    assert not [b for b in at.button if b.key.startswith("grow-")]


def test_provisional_banner_goes_when_the_run_is_finished(tiny_run, tmp_path):
    root, run, job_id = _finished(tiny_run, tmp_path)
    at = app(root, "views/influence.py", job=job_id, run=run.key)
    assert not any("Provisional" in m.value for m in at.markdown)
    assert 'class="bif-tok' in html(at)


def test_sample_more_continues_the_run_with_twice_the_draws(tiny_run, tmp_path, monkeypatch):
    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(run.dir, root / "runs" / run.key)
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda request, cache_root: started.append(request) or "job-1")
    at = app(root, "views/influence.py", run=run.key)
    button = at.button(key=f"grow-{run.key}")
    assert "10 → 20 draws" in button.label
    assert any("from this run's own speed" in c.value for c in at.caption)
    button.click().run()
    assert not at.exception and len(started) == 1
    request = started[0]
    assert request.run.config.to_dict() == {**run.request["config"], "draws": 20} and \
        request.run.to_json()["queries"] == run.request["queries"]
    job_id = jobs.create_job(request, root)  # what the worker does with it, in this process
    assert worker.run_job(jobs.job_dir(job_id, root)) == "done"
    grown = jobs.job_status(job_id, root)["result"]["run_key"]
    assert json.loads((root / "runs" / grown / GROWS_FROM).read_text()) == {"key": run.key, "draws": 10}
    assert jobs.job_status(job_id, root)["progress"]["run_key"] == grown
    assert bif.open_run(root / "runs" / grown).config.draws == 20


def test_before_enough_draws_the_page_says_when_results_will_come(tiny_run, tmp_path):
    root, run, job_id = _computing(tiny_run, tmp_path, written=1)  # chain 1 has 1 draw: too few for error bars
    at = app(root, "views/influence.py", job=job_id)
    assert any("Provisional results appear here once 2 chains have 2 draws" in m.value for m in at.markdown)
    assert not any("No run is open" in i.value for i in at.info) and not html(at).count('class="bif-tok')


def test_a_page_rerun_after_the_job_ended_shows_its_run(tiny_run, tmp_path):
    """The sidebar's refresher may rerun the page first when the job ends: the page still opens the job's run."""
    root, run, job_id = _finished(tiny_run, tmp_path)
    at = app(root, "views/influence.py", job=job_id)  # no run= : as if the provisional view had never set it
    assert not any("No run is open" in i.value for i in at.info)
    assert 'class="bif-tok' in html(at) and not any("Provisional" in m.value for m in at.markdown)


def test_before_the_worker_made_the_runs_folder_the_page_waits_for_it(tiny_run, tmp_path):
    """Provisional clicked as soon as the job starts: its worker has not yet named the run (no run_key)."""
    root, run, job_id = _computing(tiny_run, tmp_path)
    (jobs.job_dir(job_id, root) / "progress.json").write_text(json.dumps({"stage": "load"}))
    at = app(root, "views/influence.py", job=job_id)
    assert any("Provisional results appear here once" in m.value for m in at.markdown)
    assert not any("No run is open" in i.value for i in at.info), "it waits (and refreshes), not 'no run'"


@pytest.mark.parametrize("old, new, redraw", [
    ("", "0,1:2", True),  # the first view
    ("0,1:2", "0,1:3", True),  # at least one more draw per chain
    ("0,1:20", "0,1:21", False), ("0,1:20", "0,1:22", True),  # then 10 % more
    ("0,1:100", "0,1:109", False), ("0,1:100", "0,1:110", True),
    ("0,1:40", "0,1,2,3:30", True),  # other chains joined
    ("0,1:5", "0,1:5", False), ("0,1:5", "", False),
])
def test_the_page_is_drawn_again_at_ten_percent_more_draws_or_other_chains(old, new, redraw):
    assert worth_redrawing(old, new) is redraw
