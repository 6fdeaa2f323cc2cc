"""Large-model options: checkpointing changes nothing, bf16 weights and offloaded w* work, memory is checked."""

import numpy as np
import pytest
import torch

import bif
from bif.core.sampler import run_chain, sample_chain
from bif.core.scale import OutOfMemory, ScaleOptions, apply_weights_dtype, checkpointing, estimate_memory

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


@pytest.fixture
def lm(tiny_lm, tiny_corpus):
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)))
    ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts(str(tiny_corpus)), 64)
    return loaded.model, ex


def test_gradient_checkpointing_gives_the_same_gradients_in_eval_mode(lm):
    model, ex = lm
    model.eval()
    inputs, mask = ex.batch(list(range(8)))
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(enabled):
        with checkpointing(model, enabled):
            loss = (bif.lm_token_loss(model, inputs, mask) * mask).sum() / mask.sum()
            return torch.autograd.grad(loss, params)

    for a, b in zip(grads(False), grads(True)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert not model.training
    assert all("forward" not in vars(m) for m in model.modules()), "the patch is undone"


def test_checkpointed_and_offloaded_chain_equals_the_plain_chain(lm):
    model, ex = lm
    cfg = bif.preset("smoke", device="cpu")
    plain = sample_chain(model, bif.lm_token_loss, ex, {"train": ex}, cfg, 0)
    other = sample_chain(model, bif.lm_token_loss, ex, {"train": ex}, cfg, 0,
                         scale=ScaleOptions(grad_checkpointing=True, offload_w_star=True))
    torch.testing.assert_close(other.losses["train"], plain.losses["train"], rtol=1e-5, atol=1e-6)


def test_bf16_weights_sample_through_float32_master_copies(lm):
    model, ex = lm
    apply_weights_dtype(model, ScaleOptions(weights_dtype="bfloat16"))
    w_star = [p.detach().clone() for p in model.parameters()]
    assert all(p.dtype == torch.bfloat16 for p in w_star)
    cfg = bif.preset("smoke", device="cpu", step_size=1e-5)
    seen = []
    loss, checksum, _ = run_chain(model, bif.lm_token_loss, ex, cfg, 0,
                                  lambda d: seen.append(next(model.parameters()).detach().clone()))
    assert torch.isfinite(loss).all() and torch.isfinite(checksum).all() and len(seen) == cfg.draws
    assert not torch.equal(seen[0], seen[-1]), "the bf16 weights move although each step is below bf16 resolution"
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w_star)), "w* is restored exactly"


def test_bf16_run_has_its_own_cache_key(tiny_lm, tiny_corpus, tmp_path):
    args = (bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY], bif.preset("smoke"))
    plain = bif.compute_run(*args, cache_root=tmp_path)
    half = bif.compute_run(*args, cache_root=tmp_path, scale=ScaleOptions(weights_dtype="bfloat16"))
    assert half.key != plain.key and half.request["scale"] == {"weights_dtype": "bfloat16"}
    assert np.isfinite(half.train_losses).all()
    again = bif.compute_run(*args, cache_root=tmp_path, scale=ScaleOptions(grad_checkpointing=True))
    assert again.key == plain.key, "options that do not change the trajectory do not change the key"


def test_a_run_that_cannot_fit_stops_before_sampling_with_advice(tiny_lm, tiny_corpus, tmp_path):
    args = (bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY], bif.preset("smoke"))
    started = []
    with pytest.raises(OutOfMemory, match=r"needs about .* but the memory budget is .*\. Largest part you can change"):
        bif.compute_run(*args, cache_root=tmp_path, progress=started.append,
                        scale=ScaleOptions(memory_budget_gb=1e-4))
    assert not [e for e in started if e.get("stage") == "sample"]
    assert isinstance(OutOfMemory("x"), bif.BIFError)


def test_memory_estimate_scales_with_the_options():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=8,
                                         num_attention_heads=2, num_key_value_heads=2))
    cfg = bif.preset("smoke", device="cpu", batch_size=32)
    kw = dict(n_train=1000, n_scored=1000, n_query=1, seq_len=64)
    base = estimate_memory(model, cfg, ScaleOptions(), **kw)
    ckpt = estimate_memory(model, cfg, ScaleOptions(grad_checkpointing=True), **kw)
    half = estimate_memory(model, cfg, ScaleOptions(weights_dtype="bfloat16"), **kw)
    off = estimate_memory(model, cfg, ScaleOptions(offload_w_star=True), **kw)
    assert ckpt.parts["SGLD step activations"] < base.parts["SGLD step activations"] / 2
    assert half.parts["weights"] * 2 == base.parts["weights"]
    assert off.parts["w* copy"] == 0
    assert base.disk_bytes == cfg.chains * cfg.draws * 1001 * 64 * 4
    assert "memory estimate on cpu" in base.describe()


@pytest.mark.parametrize("shape,params", [("smollm2", 134_515_008), ("1b", 1_235_814_400), ("3b", 3_212_749_824)])
def test_benchmark_shapes_have_the_published_models_parameter_counts(shape, params):
    """scale_bench times random-weight models of these shapes in place of the real ones: same size, same compute.
    (SmolLM2-135M-Instruct's converted safetensors hold 134,515,008 numbers; Llama-3.2-1B/3B: 1.24 B / 3.21 B.)"""
    from bench import randomlm

    with torch.device("meta"):  # no memory: shapes only
        model = randomlm.random_llama(shape)
    assert sum(p.numel() for p in model.parameters()) == params
