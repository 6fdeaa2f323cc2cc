"""Background jobs: a real worker process to the end, replay, cancel, errors, dead workers, cache look-up, cost."""

import dataclasses
import json
import shutil
import subprocess
import sys
import time

import pytest

import bif
from tests.tiny import job_spec
from bif.store import catalog
from bif.service import cost, jobs, worker

QUERY = {"prompt": "User: what is 3 plus 4?\nBot:", "completion": " 7"}


def request(tiny_lm, tiny_corpus, root, kind="run", queries=(QUERY,), **config):
    cfg = bif.preset("smoke", **config).to_dict()
    data = bif.DataSpec(str(tiny_corpus), n_scored=None).to_dict()
    return job_spec(kind, bif.ModelSpec(str(tiny_lm)).to_dict(), data, list(queries), cfg, root, preset="smoke")


def wait(job_id, root, timeout=180):
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = jobs.job_status(job_id, root)
        if s["state"] not in jobs.ACTIVE:
            return s
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {s}")


def test_worker_process_runs_to_done_with_progress(tiny_lm, tiny_corpus, tmp_path):
    req = request(tiny_lm, tiny_corpus, tmp_path)
    job_id = jobs.start_job(req, tmp_path)
    assert jobs.start_job(req, tmp_path) == job_id  # a double click starts nothing new
    s = wait(job_id, tmp_path)
    assert s["state"] == "done", (s, (tmp_path / "jobs" / job_id / "log.txt").read_text())
    run = bif.open_run(tmp_path / "runs" / s["result"]["run_key"])
    assert run.queries[s["result"]["query"]].completion == " 7"
    p = s["progress"]
    assert p["fraction"] == 1.0 and p["chains"] == 2
    assert set(p["history"]) == {"0", "1"} and all(len(h) >= 2 for h in p["history"].values())
    assert [j["id"] for j in jobs.list_jobs(tmp_path)] == [job_id]
    assert catalog.find_cached(req.run, tmp_path) == {"run_key": run.key, "query": 0, "exact": True}


def test_replay_job_adds_a_query_to_a_cached_run(tiny_run, tiny_lm, tiny_corpus, tmp_path):
    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    new = {"prompt": "User: what is 2 plus 2?\nBot:", "completion": " 4"}
    req = request(tiny_lm, tiny_corpus, root, queries=[new])
    assert catalog.find_cached(req.run, root) == {"run_key": run.key, "exact": False}
    job_id = jobs.create_job(dataclasses.replace(req, kind="replay", run_key=run.key), root)
    assert worker.run_job(jobs.job_dir(job_id, root)) == "done"
    s = jobs.job_status(job_id, root)
    assert s["result"] == {"run_key": run.key, "query": 1}
    assert catalog.find_cached(req.run, root) == {"run_key": run.key, "query": 1, "exact": True}


def test_cancel_stops_the_job(tiny_lm, tiny_corpus, tmp_path):
    job_id = jobs.create_job(request(tiny_lm, tiny_corpus, tmp_path), tmp_path)
    jobs.cancel_job(job_id, tmp_path)
    assert worker.run_job(jobs.job_dir(job_id, tmp_path)) == "cancelled"
    s = jobs.job_status(job_id, tmp_path)
    assert s["state"] == "cancelled" and "Cancelled" in s["message"]


def test_user_error_is_shown_as_is(tiny_corpus, tmp_path):
    req = request(tmp_path / "no-such-model", tiny_corpus, tmp_path)
    job_id = jobs.create_job(req, tmp_path)
    assert worker.run_job(jobs.job_dir(job_id, tmp_path)) == "failed"
    assert "does not exist" in jobs.job_status(job_id, tmp_path)["message"]


def test_internal_error_is_generic(tiny_lm, tiny_corpus, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(bif.store.runs, "compute", boom)
    job_id = jobs.create_job(request(tiny_lm, tiny_corpus, tmp_path), tmp_path)
    worker.run_job(jobs.job_dir(job_id, tmp_path))
    s = jobs.job_status(job_id, tmp_path)
    assert s["state"] == "failed" and "Unexpected problem (RuntimeError)" in s["message"]
    assert "secret" not in s["message"] and "log" in s["message"]


def test_dead_worker_is_reported(tiny_lm, tiny_corpus, tmp_path):
    job_id = jobs.create_job(request(tiny_lm, tiny_corpus, tmp_path), tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    d = jobs.job_dir(job_id, tmp_path)
    status = json.loads((d / "status.json").read_text())
    (d / "status.json").write_text(json.dumps({**status, "state": "running", "pid": proc.pid}))
    s = jobs.job_status(job_id, tmp_path)
    assert s["state"] == "failed" and "stopped without reporting" in s["message"]
    assert jobs.list_jobs(tmp_path, active_only=True) == []


def test_job_ids_cannot_escape_the_jobs_folder(tmp_path):
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(ValueError):
            jobs.job_dir(bad, tmp_path)


def test_progress_history_stays_small(tmp_path):
    w = worker.ProgressWriter(tmp_path)
    for step in range(1, 2001):
        w({"stage": "sample", "chain": 0, "chains": 1, "step": step, "steps": 2000, "sampling_loss": 1.0,
           "draw": 0, "draws": 10})
    saved = json.loads((tmp_path / "progress.json").read_text())
    assert len(saved["history"]["0"]) <= worker.HISTORY_POINTS and saved["step"] == 2000
    (tmp_path / "cancel").write_text("")
    with pytest.raises(bif.errors.Cancelled):
        w({"stage": "sample", "chain": 0, "step": 1, "steps": 2, "sampling_loss": 1.0})


def test_changed_training_file_is_not_reused(tiny_run, tiny_lm, tiny_corpus, tmp_path):
    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    corpus = tmp_path / "train.txt"
    shutil.copy(tiny_corpus, corpus)
    req = request(tiny_lm, tiny_corpus, root)
    assert catalog.find_cached(req.run, root)["exact"]
    assert catalog.find_cached(request(tiny_lm, corpus, root).run, root) is None  # other path
    assert catalog.find_cached(dataclasses.replace(req.run, config=bif.preset("smoke", seed=1)), root) is None
    assert catalog.find_cached(dataclasses.replace(req.run, config=bif.preset("smoke", score_batch_size=7)),
                               root)["exact"]


def test_cost_estimate_scales_with_the_work(tiny_lm, tiny_corpus, tmp_path):
    small = cost.estimate_cost(request(tiny_lm, tiny_corpus, tmp_path), n_train=40, mean_tokens=12)
    big = cost.estimate_cost(request(tiny_lm, tiny_corpus, tmp_path, draws=100), n_train=40, mean_tokens=12)
    replay = cost.estimate_cost(request(tiny_lm, tiny_corpus, tmp_path, kind="replay", draws=100), 40, 12)
    assert 0 < small["seconds"] < big["seconds"] and replay["scoring_s"] < big["scoring_s"]
    assert small["n_scored"] == 40
    demo = job_spec("run", {"name_or_path": "smollm2"}, bif.DataSpec().to_dict(), [QUERY],
                    bif.preset("demo-cpu").to_dict(), tmp_path)
    assert cost.estimate_cost(demo, 2000, 60)["seconds"] > 600  # a 135 M model at demo-cpu is slow on a CPU
    assert jobs.format_seconds(30) == "30 s" and jobs.format_seconds(600) == "10 min"


def test_cpu_approximation_samples_the_last_blocks_and_costs_less(tiny_lm):
    from bif.service import cost, jobs, worker

    req = job_spec("run", {"name_or_path": "smollm2"}, bif.DataSpec("demo").to_dict(),
                   [{"prompt": "a", "completion": " b"}], bif.preset("smollm2-gpu").to_dict(), "cache")
    full = cost.estimate_cost(req, 2000, 40)["seconds"]
    approx = cost.cpu_approximation(req, 2000, 40)
    assert list(approx["spec"].run.config.param_patterns) == ["model.layers.28.*", "model.layers.29.*"]
    assert approx["seconds"] < full / 3 and "last 2 of 30 blocks" in approx["label"]
    assert approx["spec"].run.config.is_approximate
    assert cost.block_layout(bif.ModelSpec(str(tiny_lm))) == ("model.layers", 1)
    assert cost.block_layout(bif.ModelSpec("/nowhere")) is None
