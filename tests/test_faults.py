"""Fault injection: kill -9 at several points, damaged and truncated stored files, deleted markers, concurrent
starts, delete during a run. Each must end in a resume equal to an uninterrupted run (bitwise) or a clear
refusal (a BIFError), never a silently wrong score.

A kill -9 is a real SIGKILL of a forked copy of this process at the chosen moment (no cleanup runs, like an OOM
kill); the resume then runs here.
"""

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bif
from bif.core import integrity
from bif.errors import CacheError, RunBusy

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")
OTHER = bif.Query("User: what is 2 plus 2?\nBot:", " 4")


def request(tiny_lm, tiny_corpus):
    return (bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY],
            bif.preset("smoke", keep_draws="on"))


@pytest.fixture(scope="module")
def reference(tiny_lm, tiny_corpus, tmp_path_factory):
    """An uninterrupted run with stored draws, and OTHER added by replay and by stored draws."""
    cache = tmp_path_factory.mktemp("reference")
    run = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=cache)
    replayed = bif.add_queries(run, [OTHER], cache, method="replay")
    return run, replayed


def same(a: bif.Run, b: bif.Run) -> None:
    """Bitwise equal scores' inputs: every trace of every query, and the sampling losses."""
    np.testing.assert_array_equal(np.asarray(a.train_losses), np.asarray(b.train_losses))
    np.testing.assert_array_equal(a.sampling_loss, b.sampling_loss)
    assert a.queries == b.queries
    for q in range(len(a.queries)):
        np.testing.assert_array_equal(a.trace(q)[0].losses["query"], b.trace(q)[0].losses["query"])


def kill_at(monkeypatch_target, fn) -> None:
    """Fork; in the child install the hook (`monkeypatch_target(kill)`) and run fn; the hook SIGKILLs the child.
    Fails if the child was not killed (the hook was never reached)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            monkeypatch_target(lambda: os.kill(os.getpid(), signal.SIGKILL))
            fn()
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with status {status}"


def compute(tiny_lm, tiny_corpus, cache, progress=None):
    return bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=cache, progress=progress)


def on_progress(kill, chain: int, step: int):
    def progress(ev):
        if ev.get("stage") == "sample" and ev["chain"] == chain and ev["step"] >= step:
            kill()
    return progress


# ------------------------------------------------------------------------------------------------ kill -9


def test_kill_during_a_chain_resumes_to_the_same_run(reference, tiny_lm, tiny_corpus, tmp_path):
    kill_at(lambda kill: None, lambda: compute(tiny_lm, tiny_corpus, tmp_path, on_progress(lambda: os.kill(
        os.getpid(), signal.SIGKILL), chain=1, step=5)))
    d = next((tmp_path / "runs").iterdir())
    assert (d / "chain_000.safetensors").exists() and not (d / "chain_001.safetensors").exists()
    assert (d / "chain_001.partial").exists() and not (d / "COMPLETE").exists()
    assert bif.list_runs(tmp_path)[0]["state"] == "partial"
    same(compute(tiny_lm, tiny_corpus, tmp_path), reference[0])


@pytest.mark.parametrize("point", ["before sealing", "renaming a chain file into place", "writing stored draws",
                                   "writing the inputs"])
def test_kill_at_other_points_resumes_to_the_same_run(reference, tiny_lm, tiny_corpus, tmp_path, point):
    from bif.core import chainwriter, draws
    from bif.store import runs

    def hook(kill):
        if point == "before sealing":
            runs.seal = lambda *a, **k: kill()
        elif point == "renaming a chain file into place":  # the data is written, the rename never happens
            chainwriter.close_into_place = lambda *a, **k: kill()
        elif point == "writing stored draws":
            original = draws.DrawWriter.write

            def write(self, draw):
                original(self, draw)
                if draw == 3:
                    kill()
            draws.DrawWriter.write = write
        else:
            runs.integrity.save_checked = lambda *a, **k: kill()  # request and texts written, tensors not

    kill_at(hook, lambda: compute(tiny_lm, tiny_corpus, tmp_path))
    assert not list(tmp_path.glob("runs/*/COMPLETE"))
    same(compute(tiny_lm, tiny_corpus, tmp_path), reference[0])
    assert bif.store.catalog.verify_run(reference[0].key, tmp_path) == []


@pytest.mark.parametrize("method", ["replay", "draws"])
def test_kill_while_adding_a_query_resumes_to_the_same_scores(reference, tiny_lm, tiny_corpus, tmp_path, method):
    shutil.copytree(reference[0].dir.parent.parent, tmp_path / "c")
    cache = tmp_path / "c"
    shutil.rmtree(next((cache / "runs").iterdir()) / "queries")
    run = bif.open_run(cache / "runs" / reference[0].key)

    def progress(ev, kill=lambda: os.kill(os.getpid(), signal.SIGKILL)):
        if ev.get("chain") == 1 and (ev.get("step", 0) >= 5 or ev.get("draw", 0) >= 5):
            kill()

    kill_at(lambda kill: None, lambda: bif.add_queries(run, [OTHER], cache, progress, method=method))
    qdir = next((run.dir / "queries").iterdir())
    assert (qdir / "chain_000.safetensors").exists() and not (qdir / "COMPLETE").exists()
    resumed = bif.add_queries(bif.open_run(run.dir), [OTHER], cache, method=method)
    if method == "replay":
        same(resumed, reference[1])
    else:  # the same query added without interruption, in another copy
        shutil.copytree(reference[0].dir.parent.parent, tmp_path / "u")
        shutil.rmtree(tmp_path / "u" / "runs" / run.key / "queries")
        same(resumed, bif.add_queries(bif.open_run(tmp_path / "u" / "runs" / run.key), [OTHER], tmp_path / "u",
                                      method="draws"))


def test_kill_under_the_cli_says_that_rerunning_resumes():
    from bif.cli.workers import worker_failure

    dump = ("torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
            "============================================================\nbif FAILED\n"
            "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n"
            "  exitcode  : -9 (pid: 4242)\n  error_file: <N/A>\n  traceback : Signal 9 (SIGKILL) received by PID 4242\n")
    line = worker_failure(dump, 2)
    assert "\n" not in line and "killed (SIGKILL" in line and "run the same command again to resume" in line
    assert "ChildFailedError" not in line
    other = worker_failure("Traceback ...\nRuntimeError: boom\n", 2)
    assert "RuntimeError: boom" in other and "resume" in other


# ------------------------------------------------------------------------------- damaged and missing files


def sealed_copy(reference, tmp_path) -> Path:
    shutil.copytree(reference[0].dir.parent.parent, tmp_path / "c")
    return tmp_path / "c" / "runs" / reference[0].key


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip one byte: in the data (near the end) or in the header / JSON (near the start)
        at = len(data) - 3 if how == "flip-data" else min(20, len(data) - 1)
        data[at] ^= 0x55
        path.write_bytes(bytes(data))


RUN_FILES = ["request.json", "texts.json", "examples.safetensors", "init.safetensors", "draws.json",
             "chain_000.safetensors", "chain_001.safetensors", "draws_000.safetensors", "draws_001.safetensors",
             "state_000.safetensors"]


@pytest.mark.parametrize("how", ["flip-data", "flip-head", "truncate"])
@pytest.mark.parametrize("name", RUN_FILES + ["COMPLETE"])
def test_a_damaged_sealed_run_is_refused(reference, tmp_path, name, how):
    d = sealed_copy(reference, tmp_path)
    damage(d / name, how)
    with pytest.raises(CacheError, match="corrupt|damaged"):
        bif.open_run(d)
    bad = bif.store.catalog.verify_run(d.name, d.parent.parent)
    assert bad and (name in bad or name == "COMPLETE")


@pytest.mark.parametrize("how", ["flip-data", "truncate", "delete"])
@pytest.mark.parametrize("name", RUN_FILES)
def test_resume_recomputes_a_damaged_unsealed_file_never_seals_it(reference, tiny_lm, tiny_corpus, tmp_path,
                                                                  name, how):
    """COMPLETE deleted (an interrupted run) and a file damaged: the resume recomputes what is damaged."""
    d = sealed_copy(reference, tmp_path)
    shutil.rmtree(d / "queries")
    (d / "COMPLETE").unlink()
    (d / "VERIFIED").unlink(missing_ok=True)
    if how == "delete":
        (d / name).unlink()
    else:
        damage(d / name, how)
    resumed = compute(tiny_lm, tiny_corpus, tmp_path / "c")
    same(resumed, reference[0])
    assert bif.store.catalog.verify_run(d.name, tmp_path / "c") == []
    assert all(integrity.intact(d / n) for n in RUN_FILES if n.endswith(".safetensors"))


def test_a_file_damaged_after_it_was_written_and_before_sealing_is_recomputed(reference, tiny_lm, tiny_corpus,
                                                                              tmp_path, monkeypatch):
    from bif.store import runs

    original, calls = runs.sample_chains, []

    def sample_then_damage(run_dir, *a, **k):  # as if the disk flipped a bit in chain 0 while chain 1 ran
        original(run_dir, *a, **k)
        calls.append(1)
        if len(calls) == 1:
            damage(run_dir / "chain_000.safetensors", "flip-data")

    monkeypatch.setattr(runs, "sample_chains", sample_then_damage)
    same(compute(tiny_lm, tiny_corpus, tmp_path), reference[0])
    assert len(calls) == 2, "the damaged chain was computed again before sealing"


@pytest.mark.parametrize("how", ["flip-data", "truncate"])
@pytest.mark.parametrize("name", ["queries.json", "examples.safetensors", "chain_000.safetensors", "COMPLETE"])
def test_one_damaged_query_set_is_quarantined_and_the_run_still_opens(reference, tmp_path, name, how):
    d = sealed_copy(reference, tmp_path)
    qdir = next((d / "queries").iterdir())
    damage(qdir / name, how)
    run = bif.open_run(d)
    assert run.queries == [QUERY] and run.quarantined and "Ask the query again" in run.quarantined[0]
    np.testing.assert_array_equal(run.trace(0)[0].losses["query"], reference[0].trace(0)[0].losses["query"])
    assert not qdir.exists() and list((d / "quarantine").iterdir())
    again = bif.add_queries(run, [OTHER], d.parent.parent, method="replay")  # asking again recomputes it
    same(again, reference[1])


def test_a_damaged_unsealed_query_chain_is_recomputed(reference, tmp_path):
    d = sealed_copy(reference, tmp_path)
    qdir = next((d / "queries").iterdir())
    (qdir / "COMPLETE").unlink()
    damage(qdir / "chain_001.safetensors", "flip-data")
    run = bif.open_run(d)
    assert run.queries == [QUERY]
    same(bif.add_queries(run, [OTHER], d.parent.parent, method="replay"), reference[1])


@pytest.mark.parametrize("marker", ["COMPLETE", "VERIFIED", "init.safetensors", "draws.json"])
def test_deleted_markers_resume_to_the_same_run(reference, tiny_lm, tiny_corpus, tmp_path, marker):
    d = sealed_copy(reference, tmp_path)
    shutil.rmtree(d / "queries")
    (d / marker).unlink(missing_ok=True)
    if marker != "VERIFIED":
        (d / "COMPLETE").unlink(missing_ok=True)
    same(compute(tiny_lm, tiny_corpus, tmp_path / "c"), reference[0])


# ------------------------------------------------------------------------------------ concurrency, delete


def test_delete_is_refused_while_the_run_is_computed_and_the_run_survives(reference, tiny_lm, tiny_corpus, tmp_path):
    gate = tmp_path / "go"

    def pause(ev):  # the child holds the run's lock and waits mid-chain until the parent has tried to delete
        if ev.get("stage") == "sample" and ev["chain"] == 0 and ev["step"] >= 5:
            while not gate.exists():
                time.sleep(0.05)

    pid = os.fork()
    if pid == 0:
        try:
            compute(tiny_lm, tiny_corpus, tmp_path, pause)
            os._exit(0)
        finally:
            os._exit(1)
    try:
        key = reference[0].key
        for _ in range(600):
            if list(tmp_path.glob("runs/*/chain_000.partial")):
                break
            time.sleep(0.05)
        with pytest.raises(RunBusy, match="being computed"):
            bif.delete_run(key, tmp_path)
        assert bif.store.catalog.is_busy(tmp_path / "runs" / key)
    finally:
        gate.write_text("")
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    same(bif.open_run(tmp_path / "runs" / key), reference[0])
    bif.delete_run(key, tmp_path)  # allowed once nobody computes it
    assert not (tmp_path / "runs" / key).exists()


def test_two_simultaneous_job_starts_create_one_job(tmp_path, monkeypatch):
    from bif.service import jobs, jobspec
    from bif.store.request import RunRequest

    started = []
    monkeypatch.setattr(jobs, "_launch", lambda spec, files: started.append(files))
    request = jobspec.run_job_spec(RunRequest(bif.ModelSpec("demo"), bif.DataSpec("demo"), (QUERY,),
                                              bif.preset("smoke")), tmp_path)
    barrier, ids = threading.Barrier(4), []

    def start():
        barrier.wait()
        ids.append(jobs.start_job(request, tmp_path))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(started) == 1 and len(jobs.list_jobs(tmp_path)) == 1


def test_a_run_that_fails_at_start_leaves_no_entry(tiny_lm, tiny_corpus, tmp_path, monkeypatch):
    from bif.dist import distributed

    def fail(*a, **k):
        raise MemoryError("no room")

    monkeypatch.setattr(distributed, "score_at_w_star", fail)
    with pytest.raises(MemoryError):
        compute(tiny_lm, tiny_corpus, tmp_path)
    assert bif.list_runs(tmp_path) == []
    (tmp_path / "runs" / "0123456789abcdef").mkdir(parents=True)  # e.g. killed before writing anything
    (tmp_path / "runs" / "0123456789abcdef" / "lock").write_text("")
    assert [r["state"] for r in bif.list_runs(tmp_path)] == ["failed at start"]


def test_damaged_ranked_texts_are_set_aside_and_ranked_again(tiny_lm, tiny_corpus, tmp_path):
    from bif.store import rank

    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=10), [QUERY],
                          bif.preset("smoke", keep_draws="on"), cache_root=tmp_path)
    full = rank.rank_all(run, tmp_path)
    assert full.train_losses.shape[2] == 40 > run.train_losses.shape[2]
    damage(run.dir / "ranked" / "chain_001.safetensors", "flip-data")
    reopened = bif.open_run(run.dir)
    assert reopened.train_losses.shape == run.train_losses.shape and "ranked" in reopened.quarantined[0]
    np.testing.assert_array_equal(reopened.train_losses, run.train_losses)
    again = rank.rank_all(reopened, tmp_path)
    np.testing.assert_array_equal(again.train_losses, full.train_losses)
    (again.dir / "ranked" / "COMPLETE").unlink()  # interrupted before sealing, with a damaged chain: recomputed
    damage(again.dir / "ranked" / "chain_000.safetensors", "truncate")
    np.testing.assert_array_equal(rank.rank_all(bif.open_run(run.dir), tmp_path).train_losses, full.train_losses)
