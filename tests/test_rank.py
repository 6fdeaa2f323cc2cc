"""Ranking the whole training set afterwards: the texts a run did not rank, scored at its stored draws, equal what
a run ranking all of them records (float32 draws: to float32 rounding); resumable chain by chain; in the app a
button, and the approximation note goes once done."""

import dataclasses
import shutil

import numpy as np
import pytest

import bif
from tests.tiny import job_spec
from bif.core import influence
from bif.errors import ConfigError
from bif.store.rank import rank_all, ranked_dir, unranked
from tests.test_app import app

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


@pytest.fixture(scope="module")
def subset_run(tiny_lm, tiny_corpus, tmp_path_factory):
    """(cache, run ranking 12 of 40 texts, run ranking all 40): same chains (the sampler sees all texts)."""
    cache = tmp_path_factory.mktemp("rank")
    model, cfg = bif.ModelSpec(str(tiny_lm)), bif.preset("smoke", draws_dtype="float32")
    some = bif.compute_run(model, bif.DataSpec(str(tiny_corpus), n_scored=12, query_neighbours=2), [QUERY], cfg,
                           cache_root=cache)
    every = bif.compute_run(model, bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY], cfg, cache_root=cache)
    return cache, some, every


def test_ranking_the_rest_equals_a_run_that_ranks_everything(subset_run, tmp_path):
    cache, some, every = subset_run
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    some = bif.open_run(root / "runs" / some.key)
    assert len(some.train_ids) == 12 and unranked(some) == 28
    ranked = rank_all(some, root)
    assert ranked.train_ids == list(range(40)) and unranked(ranked) == 0
    assert ranked.train_texts == every.train_texts and ranked.train_tokens == every.train_tokens
    np.testing.assert_array_equal(ranked.train_mask, every.train_mask)
    np.testing.assert_array_equal(ranked.train_init, every.train_init)
    own = [ranked.train_ids.index(i) for i in some.train_ids]  # the run's own rows are untouched
    np.testing.assert_array_equal(ranked.train_losses[:, :, own], some.train_losses)
    np.testing.assert_allclose(ranked.train_losses, every.train_losses, rtol=0, atol=2e-5)
    a, b = influence.samples(*ranked.trace(0)), influence.samples(*every.trace(0))
    np.testing.assert_allclose(a.support, b.support, rtol=0, atol=1e-3)
    assert "all 40 training samples" in ranked.request["how_scored"]
    again = bif.open_run(ranked.dir)  # reopened: the merge is part of the run
    np.testing.assert_array_equal(again.train_losses, ranked.train_losses)


def test_ranking_resumes_chain_by_chain(subset_run, tmp_path):
    cache, some, _ = subset_run
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    run = rank_all(bif.open_run(root / "runs" / some.key), root)
    out = ranked_dir(run.dir)
    kept = (out / "chain_000.safetensors").stat().st_mtime_ns
    (out / "COMPLETE").unlink()
    (out / "chain_001.safetensors").unlink()
    events = []
    again = rank_all(bif.open_run(run.dir), root, progress=lambda ev: "chain" in ev and events.append(ev["chain"]))
    assert set(events) == {1} and (out / "chain_000.safetensors").stat().st_mtime_ns == kept
    np.testing.assert_array_equal(again.train_losses, run.train_losses)


def test_ranking_needs_stored_draws(tiny_lm, tiny_corpus, tmp_path):
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=10), [QUERY],
                          bif.preset("smoke", keep_draws="off"), cache_root=tmp_path)
    with pytest.raises(ConfigError, match="no stored draws"):
        rank_all(run, tmp_path)


def test_influence_page_offers_ranking_and_drops_the_note_once_done(subset_run, tmp_path, monkeypatch):
    from bif.service import jobs, worker

    cache, some, _ = subset_run
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda request, cache_root: started.append(request) or "job-1")
    at = app(root, "views/influence.py", run=some.key)
    assert any("an approximation" in i.value for i in at.info)
    at.button(key=f"rank-{some.key}").click().run()
    assert started and started[0].kind == "rank" and started[0].run_key == some.key
    job_id = jobs.create_job(started[0], root)
    assert worker.run_job(jobs.job_dir(job_id, root)) == "done"
    at = app(root, "views/influence.py", run=some.key)
    assert not any("an approximation" in i.value for i in at.info)
    assert any("all 40 training samples" in i.value for i in at.info)
    assert not [b for b in at.button if b.key.startswith("rank-")]


def test_a_finished_demo_run_goes_on_to_rank_every_conversation(subset_run, monkeypatch):
    from bif.service import jobs, worker

    cache, some, every = subset_run
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda request, cache_root: started.append(request) or "job-1")
    req = job_spec("run", some.request["model"], {"source": "demo"}, [QUERY.to_dict()],
                   some.request["config"], cache)
    worker._rank_afterwards(req, every)  # ranks everything already: nothing to do
    worker._rank_afterwards(dataclasses.replace(req, run=dataclasses.replace(req.run, data=bif.DataSpec("mine.txt"))),
                          some)  # not the demo: on request only
    assert not started
    worker._rank_afterwards(req, some)
    assert [(r.kind, r.run_key) for r in started] == [("rank", some.key)]


def test_ranking_afterwards_gives_way_to_questions_asked_meanwhile(subset_run, tmp_path):
    """The rank job's worker (a separate process) runs at a lower CPU priority than the app, whose questions come
    first; a run job's worker keeps the app's priority."""
    import os

    from bif.layout import JobFiles
    from bif.service import jobs, jobspec, worker
    from tests.test_jobs import wait

    cache, some, _ = subset_run
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    job = jobs.start_job(jobspec.rank_job_spec(some, root), root)
    assert wait(job, root)["state"] == "done"
    log = JobFiles(jobs.job_dir(job, root)).log.read_text()
    assert f"CPU priority lowered (nice {os.nice(0) + worker.BACKGROUND_NICE})" in log, log
    run_job = jobs.create_job(job_spec("run", some.request["model"], some.request["data"], [QUERY.to_dict()],
                                       some.request["config"], root), root)
    assert worker.yield_cpu(jobs.job_dir(run_job, root)) == os.nice(0)  # in this process: unchanged


def test_influence_page_says_what_the_running_rank_job_does(subset_run, tmp_path):
    from bif.service import jobs, jobspec

    cache, some, _ = subset_run
    root = tmp_path / "c"
    shutil.copytree(cache, root)
    jobs.create_job(jobspec.rank_job_spec(some, root), root)  # queued: active, no worker needed here
    at = app(root, "views/influence.py", run=some.key)
    bars = [p for p in at.get("progress")]
    assert bars and "Ranking the 28 other training texts in the background" in bars[0].proto.text, bars
    assert not [b for b in at.button if b.key.startswith("rank-")]
