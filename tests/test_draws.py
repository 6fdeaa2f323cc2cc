"""Stored draws: the file format, the keep decision, the sampling key, and new queries scored at stored draws
equal to replay (float32 draws: to float32 rounding; float16 draws: within the stated tolerance)."""

import shutil

import numpy as np
import pytest
import torch

import bif
from bif.core.draws import ChainDraws, DrawApplier, DrawWriter, GiB, decide_keep, draws_bytes, open_draws
from bif.layout import draws_name
from bif.core.influence import samples
from bif.errors import CacheError, ConfigError

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")
OTHER = bif.Query("User: what is 2 plus 2?\nBot:", " 4")


def _params():
    torch.manual_seed(0)
    return [("a.weight", torch.nn.Parameter(torch.randn(3, 4))), ("b.bias", torch.nn.Parameter(torch.randn(5)))]


@pytest.mark.parametrize("dtype,rel", [("float32", 0.0), ("float16", 2.0**-11), ("bfloat16", 2.0**-8)])
def test_writer_round_trip_and_partial_reads(tmp_path, dtype, rel):
    named = _params()
    path = tmp_path / draws_name(0)
    w = DrawWriter(path, named, draws=3, dtype=dtype)
    star = [p.detach().clone() for _, p in named]
    deltas = []
    for d in range(3):
        with torch.no_grad():
            for _, p in named:
                p.add_(torch.randn(p.shape) * 1e-2)
        deltas.append([p.detach() - s for (_, p), s in zip(named, star)])
        w.write(d)
        if d == 0:  # a reader of the partial file sees exactly the draws that are complete
            partial = ChainDraws(path.with_suffix(".partial"))
            assert partial.written == 1 and partial.dtype == dtype
            with pytest.raises(CacheError, match="not written yet"):
                with DrawApplier(torch.nn.Module(), []).at(partial, 1):
                    pass
    with pytest.raises(ValueError, match="in order"):
        w.write(5)
    w.finish()
    cd = ChainDraws(path)
    assert cd.written == 3 and cd.names == ["a.weight", "b.bias"] and cd.draws == 3
    for d in range(3):
        for (name, _), true in zip(named, deltas[d]):
            got = cd.delta(name, d)
            assert got.dtype == torch.float32 and got.shape == true.shape
            # relative error of each delta entry: float32 exact up to the float32 subtraction, else the mantissa
            np.testing.assert_allclose(got, true, rtol=max(rel, 1e-6), atol=1e-7 if rel == 0 else 6e-8)


def test_applier_puts_draws_in_and_restores_w_star(tmp_path):
    model = torch.nn.Linear(4, 3)
    named = list(model.named_parameters())
    star = {n: p.detach().clone() for n, p in named}
    w = DrawWriter(tmp_path / draws_name(0), named, draws=2, dtype="float32")
    sampled = []
    for d in range(2):
        with torch.no_grad():
            for _, p in named:
                p.add_(0.01 * (d + 1))
        sampled.append({n: p.detach().clone() for n, p in named})
        w.write(d)
    w.finish()
    with torch.no_grad():
        for n, p in named:
            p.copy_(star[n])
    applier = DrawApplier(model, ChainDraws(tmp_path / draws_name(0)).names)
    cd = ChainDraws(tmp_path / draws_name(0))
    for d in range(2):
        with applier.at(cd, d):
            for n, p in model.named_parameters():
                torch.testing.assert_close(p.detach(), sampled[d][n], rtol=0, atol=1e-7)
        for n, p in model.named_parameters():
            assert torch.equal(p.detach(), star[n]), "w* is restored bitwise after each draw"
    with pytest.raises(CacheError, match="another model"):
        DrawApplier(torch.nn.Linear(2, 2), ["nope.weight"])


def test_keep_decision():
    assert decide_keep("on", 10 * GiB, budget=GiB).keep and not decide_keep("off", 1, budget=GiB).keep
    assert decide_keep("auto", GiB // 2, budget=GiB).keep
    no = decide_keep("auto", 2 * GiB, budget=GiB)
    assert not no.keep and "budget" in no.reason
    with pytest.raises(ConfigError, match="keep_draws"):
        decide_keep("maybe", 1)
    with pytest.raises(ConfigError, match="keep_draws"):
        bif.preset("smoke", keep_draws="maybe")
    # the sizes the default budget (12 GiB) is chosen for: demo on; SmolLM2 all parameters off, last 2 blocks on
    budget = 12 * GiB
    assert decide_keep("auto", draws_bytes(800_000, 4, 100, "float16"), budget=budget).keep
    assert not decide_keep("auto", draws_bytes(134_515_008, 4, 200, "float16"), budget=budget).keep
    assert decide_keep("auto", draws_bytes(7_079_808, 4, 200, "float16"), budget=budget).keep


def test_storage_settings_do_not_change_the_chains(tiny_lm, tiny_corpus, tmp_path):
    cfg = bif.preset("smoke")
    for k, v in (("keep_draws", "off"), ("draws_dtype", "float32")):
        assert cfg.replace(**{k: v}).sampling_key() == cfg.sampling_key()
    spec, data = bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None)
    off = bif.compute_run(spec, data, [QUERY], cfg.replace(keep_draws="off"), cache_root=tmp_path / "a")
    on = bif.compute_run(spec, data, [QUERY], cfg.replace(keep_draws="on", draws_dtype="float32"),
                         cache_root=tmp_path / "b")
    assert off.key == on.key
    np.testing.assert_array_equal(off.train_losses, on.train_losses)
    np.testing.assert_array_equal(off.sampling_loss, on.sampling_loss)
    assert open_draws(off.dir, 2) is None and len(open_draws(on.dir, 2)) == 2
    # the draws are covered by the run's checksums
    path = on.dir / draws_name(1)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CacheError, match="corrupt"):
        bif.open_run(on.dir, verify="full")


@pytest.mark.parametrize("dtype,atol", [("float32", 1e-6), ("float16", 2e-4)])
def test_new_query_from_stored_draws_equals_replay(tiny_lm, tiny_corpus, tmp_path, dtype, atol):
    """Stored draws give replay's losses: float32 draws to float32 rounding (measured max |diff| 4.8e-7 on
    per-token losses ~5; tolerance 1e-6), float16 draws within 2e-4 (measured 6.1e-5 while the draws moved the
    loss by up to 0.25: the deltas keep 11 bits, so the error is ~2^-12 of the move). Corr then agrees to 1e-5
    (float32; measured 5e-7) and 1e-3 (float16; measured 8.8e-5)."""
    spec, data = bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None)
    cfg = bif.preset("smoke", keep_draws="on", draws_dtype=dtype, chains=4)
    run = bif.compute_run(spec, data, [QUERY], cfg, cache_root=tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    replayed = bif.add_queries(run, [OTHER], cache_root=tmp_path / "a", method="replay")
    stored = bif.add_queries(bif.open_run(tmp_path / "b" / "runs" / run.key), [OTHER], cache_root=tmp_path / "b")
    assert replayed.query_sets[1].method == "replay" and stored.query_sets[1].method == "draws"
    a, b = replayed.query_sets[1].losses, stored.query_sets[1].losses
    moved = np.abs(a - replayed.query_sets[1].init[None, None]).max()
    assert moved > 1e-2, "the draws move the query loss (else the comparison is empty)"
    np.testing.assert_allclose(b, a, rtol=0, atol=atol)
    sa = samples(replayed.trace(1)[0], replayed.trace(1)[1])
    sb = samples(stored.trace(1)[0], stored.trace(1)[1])
    np.testing.assert_allclose(sb.corr, sa.corr, atol=1e-5 if dtype == "float32" else 2e-3)
    assert bif.open_run(stored.dir).query_sets[1].method == "draws", "the method is stored with the query set"


def test_without_stored_draws_new_queries_fall_back_to_replay(tiny_lm, tiny_corpus, tmp_path):
    spec, data = bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None)
    run = bif.compute_run(spec, data, [QUERY], bif.preset("smoke", keep_draws="off"), cache_root=tmp_path)
    from bif.store.replay import query_method

    assert query_method(run) == "replay"
    with pytest.raises(ConfigError, match="no stored draws .*keep_draws=off"):
        bif.add_queries(run, [OTHER], cache_root=tmp_path, method="draws")
    assert bif.add_queries(run, [OTHER], cache_root=tmp_path).query_sets[1].method == "replay"
