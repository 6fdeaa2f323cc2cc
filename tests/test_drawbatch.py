"""Several stored draws per forward pass (bif.core.drawbatch) give the losses of one draw at a time, to float32
rounding, and leave the model at w*."""

import pytest
import torch

import bif
from bif.core.draws import ChainDraws, score_at_draws
from bif.layout import draws_name
from bif.core.drawbatch import draws_per_pass, lm_losses_at_draws

QUERIES = [bif.Query("User: what is 3 plus 4?\nBot:", " 7"), bif.Query("User: what is 12 plus 30?\nBot:", " 42")]


def test_draws_per_pass_keeps_passes_small():
    assert draws_per_pass(rows=1, n_params=800_000) == 64
    assert draws_per_pass(rows=64, n_params=800_000) == 1
    assert draws_per_pass(rows=1, n_params=100_000_000) == 1  # 64 copies would not fit the parameter budget
    assert draws_per_pass(rows=1, n_params=800_000, largest=262_144) == 16  # the embedding's 16 copies: 16 MiB
    assert draws_per_pass(rows=1, n_params=800_000, largest=50_000_000) == 1


@pytest.mark.parametrize("per_pass", [1, 3, 7])
def test_stacked_draws_equal_one_draw_at_a_time(tiny_run, tiny_lm, tmp_path, per_pass):
    _, run = tiny_run
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)), tmp_path)
    ex = bif.tokenize_queries(loaded.tokenizer, QUERIES, loaded.max_length)
    chain = ChainDraws(run.dir / draws_name(1))
    star = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    one = score_at_draws(loaded.model, bif.lm_token_loss, ex, chain, 64, "cpu", batched=False)
    many = lm_losses_at_draws(loaded.model, ex, chain, chain.written, "cpu", per_pass=per_pass)
    assert many.shape == one.shape == (10, 2, ex.positions)
    torch.testing.assert_close(many, one, rtol=0, atol=2e-5)
    assert torch.equal(many == 0, ~ex.mask.expand_as(many)), "zero exactly outside the completion"
    assert all(torch.equal(p, star[n]) for n, p in loaded.model.named_parameters())


def test_free_threads_uses_only_the_cores_the_load_leaves_free(monkeypatch):
    """Inside the block torch runs on max(1, min(threads set, cores - load)) threads; afterwards as before."""
    from bif.core import drawbatch
    before = torch.get_num_threads()
    monkeypatch.setattr(drawbatch.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(drawbatch.os, "getloadavg", lambda: (9.5, 9.0, 8.0))  # a busy 2-core machine
    torch.set_num_threads(2)
    try:
        with drawbatch.free_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(drawbatch.os, "getloadavg", lambda: (0.1, 0.1, 0.1))  # idle: keeps the threads set
        with drawbatch.free_threads():
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
