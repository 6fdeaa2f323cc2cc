"""Packed SGLD minibatches (bif.core.packing): the same losses and gradients as the padded batch, less work."""

import pytest
import torch

from bif.core import packing
from bif.core.examples import lm_token_loss


@pytest.fixture(scope="module")
def model(tiny_lm):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tiny_lm, local_files_only=True)
    return m.eval()


def _batch(lengths, T=12, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (len(lengths), T), generator=g)
    am = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids * am
    mask = am[:, 1:].bool()  # every next-token prediction of a real token
    return {"input_ids": ids, "attention_mask": am}, mask


def test_first_fit_places_longest_first_into_the_first_row_with_room():
    row, start, used = packing.first_fit([5, 12, 8, 3, 4], 12)
    assert (row[1], start[1]) == (0, 0)  # 12 fills row 0
    assert (row[2], start[2]) == (1, 0) and (row[0], start[0]) == (2, 0)  # 8 then 5: no room together
    assert (row[4], start[4]) == (1, 8) and (row[3], start[3]) == (2, 5)  # 4 fills the 8's row, 3 joins the 5
    assert used == [12, 12, 8]


def test_a_packed_row_restarts_positions_and_keeps_each_sequence_whole():
    inputs, _ = _batch([3, 4, 2], T=10)
    p = packing.pack(inputs["input_ids"], torch.tensor([3, 4, 2]))
    assert p.input_ids.shape == (1, 10)  # 4 + 3 + 2 tokens fit one row
    assert p.position_ids[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 0]  # the unused tail is a sequence of its own
    flat = p.input_ids.reshape(-1)
    for b, n in enumerate([3, 4, 2]):
        assert torch.equal(flat[p.where[b, :n]], inputs["input_ids"][b, :n])


def test_left_padding_or_a_mask_over_padding_is_not_packed():
    inputs, mask = _batch([5, 3], T=6)
    assert packing.right_padded_lengths(inputs, mask).tolist() == [5, 3]
    left = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"].flip(1)}
    assert packing.right_padded_lengths(left, mask) is None
    over = mask.clone()
    over[1, 4] = True  # predicts a padding token
    assert packing.right_padded_lengths(inputs, over) is None


def test_the_packed_sgld_loss_and_gradient_equal_the_padded_ones(model):
    assert packing.packs_sequences(model)
    inputs, mask = _batch([12, 3, 4, 5, 2, 6, 3, 4], T=12, vocab=model.config.vocab_size)
    assert packing.worth_packing(model, inputs, mask) is not None  # 8 rows -> 4
    params = [p for p in model.parameters() if p.requires_grad]

    def step():
        per = lm_token_loss(model, inputs, mask)  # (B, T-1)
        loss = (per * mask).sum() / mask.sum()
        return per.detach(), torch.autograd.grad(loss, params)

    packed_loss, packed_grad = step()
    keep, packing.WORTH = packing.WORTH, 0.0  # never worth it: the padded batch
    try:
        padded_loss, padded_grad = step()
    finally:
        packing.WORTH = keep
    with torch.no_grad():  # scoring is never packed
        assert torch.equal(lm_token_loss(model, inputs, mask), padded_loss)
    assert torch.allclose(packed_loss, padded_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(packed_grad, padded_grad):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


def test_a_model_that_ignores_position_ids_is_run_padded():
    class NoPositions(torch.nn.Module):  # attends over the whole row: packing would mix sequences
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"vocab_size": 50})()
            self.emb = torch.nn.Embedding(50, 8)

        @property
        def base_model(self):
            outer = self

            class Base(torch.nn.Module):
                def forward(self, input_ids, position_ids=None, use_cache=None, attention_mask=None):
                    h = outer.emb(input_ids).cumsum(1)  # every token sees all before it, across boundaries
                    return type("O", (), {"last_hidden_state": h})()
            return Base()

    assert not packing.packs_sequences(NoPositions())


def test_a_bfloat16_model_packs_too_and_its_packed_loss_is_the_padded_one_to_bfloat16_rounding(model):
    import copy

    half = copy.deepcopy(model).to(torch.bfloat16)
    assert packing.packs_sequences(half), "bfloat16 rounding (a few units) is not a mask that leaks"
    inputs, mask = _batch([12, 3, 4, 5, 2, 6, 3, 4], T=12, vocab=model.config.vocab_size)
    assert packing.worth_packing(half, inputs, mask) is not None  # the packed path is the one taken
    with torch.enable_grad():
        packed = lm_token_loss(half, inputs, mask).detach()
        keep, packing.WORTH = packing.WORTH, 0.0
        try:
            padded = lm_token_loss(half, inputs, mask).detach()
        finally:
            packing.WORTH = keep
    assert torch.allclose(packed[mask], padded[mask], rtol=0, atol=8 * 2 ** -8 * float(padded[mask].abs().max()))
