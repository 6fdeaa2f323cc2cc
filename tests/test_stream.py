"""Traces on disk: chain files written draw by draw, memory-mapped reading, one-pass estimators, a memory budget."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import bif
from bif.core import influence
from bif.core import stream
from bif.core.estimators import covariance
from bif.core.trace import ChainStack, ChainTrace, ChainWriter, LossTrace, load_chain, open_chain, save_chain


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_chain_writer_file_equals_save_chain(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    losses = {"train": torch.rand(6, 9, 5, generator=g) * 4, "query": torch.rand(6, 2, 5, generator=g)}
    sampling = torch.rand(11, generator=g, dtype=torch.float64)
    save_chain(tmp_path / "a.safetensors", ChainTrace(losses, sampling, 1.0), dtype)
    w = ChainWriter(tmp_path / "b.safetensors", {k: tuple(v.shape) for k, v in losses.items()}, 11, dtype)
    assert (tmp_path / "b.partial").exists() and not (tmp_path / "b.safetensors").exists()
    for d in range(6):
        for k, v in losses.items():
            w.write(k, d, v[d])
    w.finish(sampling, 1.0)
    a = load_chain(tmp_path / "a.safetensors", ["train", "query"], 6, 11)
    b = load_chain(tmp_path / "b.safetensors", ["train", "query"], 6, 11)
    for k in losses:
        torch.testing.assert_close(a.losses[k], b.losses[k], rtol=0, atol=0)
    torch.testing.assert_close(a.sampling_loss, b.sampling_loss, rtol=0, atol=0)
    mapped = open_chain(tmp_path / "a.safetensors")  # old files map too
    stored = mapped["losses.train"]
    np.testing.assert_array_equal(stored, a.losses["train"].numpy().astype(stored.dtype))


def test_chain_stack_indexing_matches_numpy():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, 4, 5, 2)).astype(np.float32)
    s = ChainStack(list(full))
    assert s.shape == full.shape and len(s) == 3
    for key in [(slice(None), slice(None), 2), (0,), (1, 2), (slice(None), 1, [0, 3]), ([0, 2], slice(None), 4, 1)]:
        np.testing.assert_array_equal(s[key], full[key])
    assert isinstance(s[1:], ChainStack) and s[1:].shape == (2, 4, 5, 2)
    np.testing.assert_array_equal(np.asarray(s), full)
    t_mem = LossTrace({"x": full}, {"x": rng.random((5, 2)) > 0.3}, {}, np.zeros((3, 1)))
    t_map = LossTrace({"x": s}, t_mem.masks, {}, t_mem.sampling_loss)
    np.testing.assert_array_equal(t_map.series("x"), t_mem.series("x"))
    np.testing.assert_array_equal(t_map.series("x", [1, 4]), t_mem.series("x", [1, 4]))


def synthetic_trace(C=3, D=41, n=60, P=4, seed=0) -> LossTrace:
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(C, D, 1, 1))
    x = (30 + rng.normal(size=(C, D, n, P)) + shared * rng.normal(size=(1, 1, n, 1))).astype(np.float32)
    q = (5 + rng.normal(size=(C, D, 2, 3)) + shared).astype(np.float32)
    return LossTrace({"train": x, "query": q}, {"train": rng.random((n, P)) > 0.2, "query": np.ones((2, 3), bool)},
                     {}, np.zeros((C, 1)))


@pytest.mark.parametrize("token", [None, 1])
def test_one_pass_scores_equal_in_memory_estimators(token):
    trace = synthetic_trace()
    ref = influence.samples(trace, 1, token)
    direct = covariance(trace.series("train"), trace.losses["query"][:, :, 1, token][..., None] if token is not None
                        else trace.series("query", [1]))
    np.testing.assert_allclose(ref.corr, direct.corr[:, 0], rtol=1e-12)
    got = stream.samples(trace, 1, token, block_bytes=2000)  # many small blocks, batches split across them
    for f in ("bif", "bif_se", "corr", "corr_se", "p", "q"):
        np.testing.assert_allclose(getattr(got, f), getattr(ref, f), rtol=1e-9, atol=1e-12, err_msg=f)
    np.testing.assert_array_equal(got.significant, ref.significant)
    assert (got.n_draws, got.n_batches) == (ref.n_draws, ref.n_batches)
    np.testing.assert_array_equal(got.top(10), ref.top(10))
    np.testing.assert_array_equal(got.top(10, "oppose"), ref.top(10, "oppose"))


def test_memory_mapped_run_gives_the_same_views(tiny_run):
    _, run = tiny_run
    lazy = bif.open_run(run.dir, mmap=True)
    assert isinstance(lazy.train_losses, ChainStack)
    np.testing.assert_array_equal(np.asarray(lazy.train_losses), run.train_losses)
    a, row = run.trace(0)
    b, _ = lazy.trace(0)
    np.testing.assert_allclose(influence.samples(b, row).corr, influence.samples(a, row).corr, rtol=1e-12)
    np.testing.assert_allclose(stream.samples(b, row).corr, influence.samples(a, row).corr, rtol=1e-9)
    np.testing.assert_allclose(influence.pair(b, 3, row).corr, influence.pair(a, 3, row).corr, rtol=1e-12)


BUDGET_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch; torch.set_num_threads(1)
    import numpy as np
    from bif import SamplerConfig
    from bif.core import stream
    from bif.core.scale import peak_resident_bytes
    from bench.scale_samples import synthetic_problem

    ex, model, loss_fn = synthetic_problem(60000, 16)
    cfg = SamplerConfig(step_size=1e-4, nbeta=10.0, gamma=100.0, chains=2, draws=40, burn_in=0, steps_between=1,
                        batch_size=256, score_batch_size=8192, device="cpu")
    before = peak_resident_bytes()
    trace = stream.record(model, loss_fn, ex, {"train": ex, "query": ex.subset([0, 1])}, cfg, sys.argv[1])
    scores = stream.samples(trace, 0, block_bytes=1 << 22)
    top = scores.top(5).tolist()
    print(json.dumps({"before": before, "after": peak_resident_bytes(), "trace_bytes": trace.losses["train"].nbytes,
                      "top": top, "finite": bool(np.isfinite(scores.corr).all())}))
""")


def test_a_trace_larger_than_the_memory_budget_is_recorded_and_scored_within_it(tmp_path):
    out = subprocess.run([sys.executable, "-c", BUDGET_SCRIPT, str(tmp_path / "trace")], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    budget = r["trace_bytes"] // 4  # 307 MB of trace, 77 MB of budget for everything the run adds
    assert r["after"] - r["before"] < budget, f"peak RSS grew by {(r['after'] - r['before']) / 2**20:.0f} MiB"
    assert r["finite"] and len(r["top"]) > 0
    assert len(list((tmp_path / "trace").glob("chain_*.safetensors"))) == 2


def test_record_resumes_only_chains_recorded_with_the_same_settings_and_shapes(tmp_path):
    from bif.errors import CacheError, ConfigError
    from tests.test_sampler import Linear, linear_problem, squared_loss

    _, _, ex = linear_problem(n=12)
    cfg = bif.SamplerConfig(step_size=1e-3, nbeta=20.0, gamma=5.0, chains=2, draws=10, burn_in=2, steps_between=1,
                            batch_size=4, device="cpu")
    first = stream.record(Linear(3), squared_loss, ex, {"train": ex}, cfg, tmp_path)
    stamps = [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("*.safetensors"))]
    again = stream.record(Linear(3), squared_loss, ex, {"train": ex}, cfg.replace(score_batch_size=3), tmp_path)
    assert [p.stat().st_mtime_ns for p in sorted(tmp_path.glob("*.safetensors"))] == stamps, "resumed, not redone"
    np.testing.assert_array_equal(np.asarray(again.losses["train"]), np.asarray(first.losses["train"]))
    with pytest.raises(ConfigError, match="step_size"):
        stream.record(Linear(3), squared_loss, ex, {"train": ex}, cfg.replace(step_size=2e-3), tmp_path)
    with pytest.raises(CacheError, match=r"shape \(10, 12, 1\).*\(10, 5, 1\)"):
        stream.record(Linear(3), squared_loss, ex, {"train": ex.subset(list(range(5)))}, cfg, tmp_path)
    (tmp_path / "config.json").unlink()  # a directory from before config.json was checked: shapes still are
    with pytest.raises(CacheError, match="shape"):
        stream.record(Linear(3), squared_loss, ex, {"train": ex.subset(list(range(5)))}, cfg, tmp_path)
