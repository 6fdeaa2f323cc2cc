"""Runs that grow: a chain continued from its saved state equals the uninterrupted chain bitwise, and a run with
more draws built on a finished shorter run equals a fresh run with those draws, file by file."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import bif
from bif.core.chainstate import load_state, save_state
from bif.core.sampler import run_chain
from bif.errors import ConfigError
from bif.layout import state_name

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


def _chain(loaded, ex, cfg, resume=None):
    """(sampling loss, checksums, per-draw losses of 4 rows, end state) of chain 1."""
    seen, end = {}, []

    def on_draw(d):
        seen[d] = bif.score_examples(loaded.model, bif.lm_token_loss, ex.subset([0, 1, 2, 3]), 64, "cpu")

    loss, checksum, _ = run_chain(loaded.model, bif.lm_token_loss, ex, cfg, 1, on_draw, device=torch.device("cpu"),
                                  resume=resume, on_end=end.append)
    return loss, checksum, seen, end[0]


@pytest.mark.parametrize("preconditioner", ["none", "rmsprop"])
def test_continued_chain_equals_uninterrupted_chain_bitwise(tiny_lm, tmp_path, preconditioner):
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)), tmp_path)
    ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts("demo")[:30], 32)
    # batch 8 of 30 rows: 3 minibatches an epoch, so the continuation starts inside an epoch
    cfg = bif.preset("smoke", preconditioner=preconditioner, steps_between=2, draws=10)
    star = [p.detach().clone() for p in loaded.model.parameters()]
    short = _chain(loaded, ex, cfg)
    save_state(short[3], tmp_path / "state.safetensors")
    grown = _chain(loaded, ex, cfg.replace(draws=20), resume=load_state(tmp_path / "state.safetensors"))
    fresh = _chain(loaded, ex, cfg.replace(draws=20))
    assert torch.equal(grown[0], fresh[0]) and torch.equal(grown[1], fresh[1])
    assert sorted(grown[2]) == list(range(10, 20)), "only the new draws are recorded"
    for d in range(10, 20):
        assert torch.equal(grown[2][d], fresh[2][d])
    for d in range(10):
        assert torch.equal(short[2][d], fresh[2][d])
    for name, v in fresh[3].params.items():
        assert torch.equal(grown[3].params[name], v)
    assert torch.equal(grown[3].noise_rng, fresh[3].noise_rng)
    assert all(torch.equal(p, s) for p, s in zip(loaded.model.parameters(), star)), "w* restored"


def test_a_state_off_the_chains_path_is_refused(tiny_lm, tmp_path):
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)), tmp_path)
    ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts("demo")[:30], 32)
    cfg = bif.preset("smoke")
    state = _chain(loaded, ex, cfg)[3]
    with pytest.raises(ConfigError, match="does not lie on"):
        run_chain(loaded.model, bif.lm_token_loss, ex, cfg.replace(steps_between=3, draws=20), 0, lambda d: None,
                  device=torch.device("cpu"), resume=state)


def _tensors(run_dir, prefix):
    return {p.name: load_file(str(p)) for p in sorted(run_dir.glob(f"{prefix}*.safetensors"))}


@pytest.mark.parametrize("keep_draws", ["on", "off"])
def test_extending_10_to_20_draws_equals_a_fresh_20_draw_run_bitwise(tiny_lm, tiny_corpus, tmp_path, keep_draws):
    model, data = bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None)
    cfg = bif.preset("smoke", keep_draws=keep_draws)
    short = bif.compute_run(model, data, [QUERY], cfg, cache_root=tmp_path / "a")
    starts = {}

    def progress(ev):
        if ev["stage"] == "sample":
            starts.setdefault(ev["chain"], ev["first_step"])

    grown = bif.compute_run(model, data, [QUERY], cfg.replace(draws=20), cache_root=tmp_path / "a",
                            progress=progress)
    assert starts == {0: cfg.steps_per_chain, 1: cfg.steps_per_chain}, "both chains continued the 10-draw run"
    fresh = bif.compute_run(model, data, [QUERY], cfg.replace(draws=20), cache_root=tmp_path / "b")
    assert grown.key == fresh.key != short.key
    names = ["chain_", "state_", "init"] + (["draws_"] if keep_draws == "on" else [])
    for prefix in names:
        a, b = _tensors(grown.dir, prefix), _tensors(fresh.dir, prefix)
        assert a and sorted(a) == sorted(b)
        for f in a:
            assert sorted(a[f]) == sorted(b[f])
            for k in a[f]:
                assert torch.equal(a[f][k], b[f][k]), f"{f}:{k} differs"
    assert not list(grown.dir.glob("draws_*")) if keep_draws == "off" else True
    np.testing.assert_array_equal(grown.train_losses[:, :10], short.train_losses)
    assert (short.dir / state_name(0)).exists() and not bif.store.catalog.verify_run(short.key, tmp_path / "a")


def test_questions_asked_on_the_shorter_run_are_carried_into_the_grown_run(tiny_lm, tiny_corpus, tmp_path):
    """A run grown 10 → 20 draws is asked the shorter run's later questions again, at its own stored draws: the
    same losses as asking them on a fresh 20-draw run. The job worker does this after every run it computes."""
    model, data = bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None)
    cfg = bif.preset("smoke", keep_draws="on")
    later = bif.Query("User: what is 9 plus 9?\nBot:", " 18")
    short = bif.add_queries(bif.compute_run(model, data, [QUERY], cfg, cache_root=tmp_path / "a"), [later],
                            tmp_path / "a", method="draws")
    grown = bif.compute_run(model, data, [QUERY], cfg.replace(draws=20), cache_root=tmp_path / "a")
    assert later not in grown.queries, "compute_run alone does not ask it"
    carried = bif.carry_queries(grown, tmp_path / "a")
    i = carried.queries.index(later)
    assert carried.answered_by(i) == "draws" and carried.key == grown.key
    fresh = bif.compute_run(model, data, [QUERY], cfg.replace(draws=20), cache_root=tmp_path / "b")
    asked = bif.add_queries(fresh, [later], tmp_path / "b", method="draws")
    (a, ra), (b, rb) = carried.trace(i), asked.trace(asked.queries.index(later))
    assert a.losses["query"].shape[:2] == (2, 20)
    np.testing.assert_allclose(a.losses["query"][:, :, ra], b.losses["query"][:, :, rb], rtol=0, atol=1e-6)
    s, rs = short.trace(short.queries.index(later))
    np.testing.assert_allclose(s.losses["query"][:, :, rs], a.losses["query"][:, :10, ra], rtol=0, atol=1e-6,
                               err_msg="the first 10 draws: the shorter run's own")
    assert bif.carry_queries(carried, tmp_path / "a").queries == carried.queries, "asked once"
    assert bif.carry_queries(fresh, tmp_path / "b") is fresh, "a run that did not grow is left as it is"
