"""Distributed runs: the plan, shards merged into one trace, resume per shard, and a real 2-process gloo run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bif
from tests.tiny import job_spec
from bif.store.request import RunRequest
from bif.core.examples import score_batches
from bif.dist import distributed
from bif.store import runs
from bif.store.chains import merge_chains, sample_chains
from bif.dist.distributed import Dist, ReplicaMismatch, make_plan
from bif.errors import ConfigError
from bif.core.trace import ChainWriter, open_chain

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")
OTHER = bif.Query("User: what is 2 plus 2?\nBot:", " 4")


def request(tiny_lm, tiny_corpus, **cfg):
    return (bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY],
            bif.preset("smoke", score_batch_size=8, **cfg))


@pytest.mark.parametrize("chains,world,groups", [(4, 1, 1), (4, 2, 2), (2, 4, 2), (4, 8, 4), (4, 6, 2), (3, 2, 1),
                                                 (4, 3, 1)])
def test_plan_covers_every_chain_and_shard_once(chains, world, groups):
    plan = make_plan(chains, world)
    assert plan.groups == groups
    work = sorted((c, plan.shard(r)) for r in range(world) for c in plan.chains_of(r))
    expected = sorted((c, (i, plan.group_size)) for c in range(chains) for i in range(plan.group_size))
    assert work == expected, "each (chain, shard) is computed by exactly one rank"
    assert all(plan.group(plan.leader(c)) == c % plan.groups for c in range(chains))


def test_plan_refuses_groups_that_do_not_divide_the_world():
    with pytest.raises(ConfigError, match="must divide"):
        make_plan(4, 6, groups=4)
    assert make_plan(4, 6, groups=1).group_size == 6


def test_one_torchrun_command_line_for_the_cli_and_the_jobs():
    """bif.dist.launch writes the command line both programs start workers with."""
    from bif.dist.launch import default_procs, worker_command

    assert worker_command(2, ["bif.service.worker", "D"]) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "bif.service.worker",
        "D"]
    assert worker_command(1, ["bif", "run"]) == [sys.executable, "-m", "bif", "run"], "one process: no torchrun"
    assert default_procs(1) == 1 and 1 <= default_procs(8) <= 4


def test_a_plain_compute_run_call_never_starts_a_process_group(tiny_lm, tiny_corpus, tmp_path, monkeypatch):
    """torchrun's variables in the environment do not make a library call join a group: the programs (CLI, job
    worker) join one with bif.dist.distributed.join; compute_run only uses a group that is already running."""
    started = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: started.append(k))
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "2"),
                        ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29599")):
        monkeypatch.setenv(name, value)
    run = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path)
    assert started == [] and not torch.distributed.is_initialized()
    assert run.train_losses.shape[0] == run.config.chains == 2, "one process computed every chain itself"
    assert distributed.current() == Dist()


def test_shards_are_the_single_process_scoring_batches(tiny_lm, tiny_corpus):
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)))
    ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts(str(tiny_corpus)), 64)
    full = bif.score_examples(loaded.model, bif.lm_token_loss, ex, 8)
    shards = [distributed.shard_rows(ex, 8, i, 3) for i in range(3)]
    rows = torch.cat([torch.cat(s) for s in shards])
    assert sorted(rows.tolist()) == list(range(len(ex)))
    for s in shards:
        got = score_batches(loaded.model, bif.lm_token_loss, ex, s, torch.device("cpu"))
        torch.testing.assert_close(got, full[torch.cat(s)], rtol=0, atol=0)  # bitwise: the same batches


def _prepared(tiny_lm, tiny_corpus, cache, **cfg):
    model, data, queries, cfg = request(tiny_lm, tiny_corpus, **cfg)
    prep = runs.prepare(RunRequest(model, data, tuple(queries), cfg), Path(cache), None, torch.device("cpu"))
    run_dir = Path(cache) / "runs" / prep.key
    run_dir.mkdir(parents=True)
    observed = {"train": prep.scored, "query": prep.queries}
    init = distributed.score_at_w_star(Dist(), prep.loaded.model, bif.lm_token_loss, observed, cfg.score_batch_size,
                                       "cpu", run_dir)
    runs.write_inputs(run_dir, prep, init)
    return prep, cfg, run_dir


@pytest.mark.parametrize("trace_dtype", ["float32", "float16"])
def test_shards_of_two_ranks_merge_into_the_single_process_trace_and_resume_per_shard(tiny_lm, tiny_corpus,
                                                                                     tmp_path, trace_dtype):
    """Both ranks of one group, simulated one after the other in this process (they never communicate)."""
    prep, cfg, run_dir = _prepared(tiny_lm, tiny_corpus, tmp_path / "dist", trace_dtype=trace_dtype)
    plan = make_plan(cfg.chains, 2, groups=1)
    events = []
    sample_chains(run_dir, prep, cfg, bif.core.scale.ScaleOptions(), Dist(rank=0, world=2), plan, "cpu",
                  events.append)
    parts = sorted(p.name for p in (run_dir / "parts").iterdir())
    assert parts == ["chain_000.shard-0-of-2.safetensors", "chain_001.shard-0-of-2.safetensors"]
    events.clear()
    sample_chains(run_dir, prep, cfg, bif.core.scale.ScaleOptions(), Dist(rank=0, world=2), plan, "cpu",
                  events.append)
    assert events == [], "finished shards are not recomputed"
    sample_chains(run_dir, prep, cfg, bif.core.scale.ScaleOptions(), Dist(rank=1, world=2), plan, "cpu", None)
    merge_chains(run_dir, prep, cfg, Dist(rank=0, world=2), plan, "cpu")
    assert not list((run_dir / "parts").iterdir()), "shards are removed once merged"
    single = bif.compute_run(*request(tiny_lm, tiny_corpus, trace_dtype=trace_dtype), cache_root=tmp_path / "single")
    assert single.key == run_dir.name
    for c in range(cfg.chains):
        a = open_chain(run_dir / f"chain_{c:03d}.safetensors")
        b = open_chain(single.dir / f"chain_{c:03d}.safetensors")
        for k in ("losses.train", "losses.query", "sampling_loss"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_shards_from_different_trajectories_are_refused(tiny_lm, tiny_corpus, tmp_path):
    prep, cfg, run_dir = _prepared(tiny_lm, tiny_corpus, tmp_path)
    plan = make_plan(cfg.chains, 2, groups=1)
    for rank in (0, 1):
        sample_chains(run_dir, prep, cfg, bif.core.scale.ScaleOptions(), Dist(rank=rank, world=2), plan, "cpu",
                      None)
    path = distributed.part_path(run_dir, 0, 1, 2)
    t = {k: np.array(v) for k, v in open_chain(path).items()}
    t["checksum"][3] *= 1.001  # as if rank 1 had drifted off rank 0's trajectory
    w = ChainWriter(path, {"train": t["losses.train"].shape, "query": t["losses.query"].shape},
                    len(t["sampling_loss"]), cfg.trace_dtype,
                    {k: (t[k].shape, t[k].dtype) for k in ("rows.train", "rows.query", "checksum")})
    for k in ("train", "query"):
        w.write_block(k, 0, t[f"losses.{k}"])
    for k in ("rows.train", "rows.query", "checksum"):
        w.put(k, t[k])
    w.finish(t["sampling_loss"], 0.0)
    with pytest.raises(ReplicaMismatch, match="weight checksum"):
        merge_chains(run_dir, prep, cfg, Dist(rank=0, world=2), plan, "cpu")


def test_torchrun_two_processes_give_the_single_process_trace(tiny_lm, tiny_corpus, tmp_path):
    """A real `torchrun --nproc-per-node 2 -m bif run` (gloo): both chains sharded over both processes."""
    model, data, queries, cfg = request(tiny_lm, tiny_corpus)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bif",
           "--cache", str(tmp_path / "dist"), "run", "--model", str(tiny_lm), "--data", str(tiny_corpus),
           "--n-scored", "0", "--prompt", QUERY.prompt, "--completion", QUERY.completion, "--preset", "smoke",
           "--set", "score_batch_size=8", "--chain-groups", "1", "-k", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "distributed: 2 processes (gloo)" in out.stdout and "memory estimate" in out.stderr
    single = bif.compute_run(model, data, queries, cfg, cache_root=tmp_path / "single")
    dist = bif.open_run(tmp_path / "dist" / "runs" / single.key)
    np.testing.assert_allclose(dist.train_losses, single.train_losses, rtol=1e-6, atol=0)
    np.testing.assert_allclose(dist.query_sets[0].losses, single.query_sets[0].losses, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(dist.sampling_loss, single.sampling_loss)
    np.testing.assert_allclose(dist.train_init, single.train_init, rtol=1e-6, atol=0)  # w* scored by both ranks
    np.testing.assert_allclose(dist.query_sets[0].init, single.query_sets[0].init, rtol=1e-6, atol=0)
    assert not (dist.dir / "parts").exists()


def test_torchrun_without_completion_generates_it_once_and_resolves_last_blocks(tiny_lm, tiny_corpus, tmp_path):
    """`torchrun ... -m bif run` with no --completion: rank 0 generates it and every rank observes the same one;
    --last-blocks is resolved on every rank (not silently dropped)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("BIF_INPUTS_CHECKED", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "bif",
           "--cache", str(tmp_path), "run", "--model", str(tiny_lm), "--data", str(tiny_corpus), "--n-scored", "0",
           "--prompt", QUERY.prompt, "--max-new-tokens", "3", "--last-blocks", "1", "--preset", "smoke",
           "--set", "score_batch_size=8", "-k", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)), tmp_path)
    expected = bif.generate_completion(loaded, QUERY.prompt, 3)
    assert out.stdout.count("generated completion") == 1, "generated on rank 0 only"
    run = bif.open_run(next((tmp_path / "runs").iterdir()))
    assert run.queries[0].completion == expected
    assert run.config.param_patterns and run.request["approximate"]


def test_replay_job_under_torchrun_spreads_the_chains_and_equals_one_process(tiny_lm, tiny_corpus, tmp_path):
    """A new query on a cached run, replayed by a 2-process job (`torchrun ... -m bif.service.worker DIR`, as the app
    starts it on CPU): each rank replays one chain; the result equals a single-process replay."""
    from bif.service import jobs

    model, data, queries, cfg = request(tiny_lm, tiny_corpus)
    cfg = cfg.replace(keep_draws="off")  # no stored draws: the job replays
    run = bif.compute_run(model, data, queries, cfg, cache_root=tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    one = bif.add_queries(run, [OTHER], cache_root=tmp_path / "one")
    req = job_spec("replay", model.to_dict(), data.to_dict(), [OTHER.to_dict()], cfg.to_dict(),
                   tmp_path / "two", run_key=run.key)
    assert jobs.default_procs(req) == min(2, os.cpu_count() or 1), "a replay spreads its chains like a run"
    job = jobs.create_job(req, tmp_path / "two")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "bif.service.worker", str(jobs.job_dir(job, tmp_path / "two"))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    status = jobs.job_status(job, tmp_path / "two")
    assert out.returncode == 0 and status["state"] == "done", out.stdout[-3000:] + out.stderr[-3000:]
    rank1 = json.loads((jobs.job_dir(job, tmp_path / "two") / "progress.rank1.json").read_text())
    assert list(rank1["history"]) == ["1"], "rank 1 replayed chain 1 (and only it)"
    two = bif.open_run(tmp_path / "two" / "runs" / run.key)
    assert two.queries == one.queries
    np.testing.assert_allclose(two.query_sets[1].losses, one.query_sets[1].losses, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(two.query_sets[1].init, one.query_sets[1].init)
