"""The fast per-token loss (LM head on observed positions only) against a naive per-example loop."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import bif
from bif.core import examples
from bif.core.examples import lm_token_loss, score_examples


def naive_losses(model, ids_list):
    """One example at a time, full logits, torch's cross-entropy: the oracle."""
    out = []
    for ids in ids_list:
        x = torch.tensor([ids])
        logits = model(input_ids=x).logits[0, :-1]
        out.append(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none"))
    return out


def test_scored_losses_equal_a_naive_loop(tiny_lm):
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    texts = ["User: what is 1 plus 2?\nBot: 3", "Bot: 7", "User: what is 7 plus 4?\nBot: 11 and more words here"]
    ex = bif.tokenize_texts(tok, texts, max_length=64)
    got = score_examples(model, lm_token_loss, ex, batch_size=2)  # batches sorted by length, padded, cut
    rows = [ex.inputs["input_ids"][i, : int(ex.lengths[i])].tolist() for i in range(len(texts))]
    for i, ref in enumerate(naive_losses(model, rows)):
        torch.testing.assert_close(got[i, : len(ref)], ref.detach(), rtol=1e-4, atol=1e-5)
        assert torch.all(got[i, len(ref):] == 0), "padding positions are zero"
    assert examples._head_is_plain.verdicts[model], "the tiny Llama takes the fast path"


def test_fast_path_equals_full_logits_path(tiny_lm):
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    ids = torch.randint(0, model.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        fast = lm_token_loss(model, {"input_ids": ids}, mask)
        full = lm_token_loss(model, {"input_ids": ids})
    torch.testing.assert_close(fast[mask], full[mask], rtol=1e-4, atol=1e-5)
    assert torch.all(fast[~mask] == 0)
