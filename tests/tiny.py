"""A tiny random Llama + BPE tokenizer + arithmetic corpus, built in a second, for tests."""

from pathlib import Path

import torch

TEXTS = [f"User: what is {a} plus {b}?\nBot: {a + b}" for a in range(8) for b in range(5)]


def make_tiny_lm(out: Path, texts: list[str] = TEXTS, seed: int = 0) -> Path:
    """Save a 1-layer, width-32 LlamaForCausalLM (random weights) and a byte-level BPE tokenizer to `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|pad|>", "<|eos|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<|pad|>", eos_token="<|eos|>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_corpus(path: Path, texts: list[str] = TEXTS) -> Path:
    path.write_text("\n\n".join(texts))  # blank lines separate examples that span lines
    return path


def job_spec(kind, model: dict, data: dict, queries: list, config: dict, root, run_key=None, preset=None):
    """A bif.service.jobspec.JobSpec from plain dicts (as a run's request.json holds them)."""
    from bif.service.jobspec import JobSpec
    from bif.store.request import RunRequest

    request = RunRequest.from_json({"model": model, "data": data, "queries": list(queries), "config": config})
    return JobSpec(kind, request, str(root), run_key=run_key, preset=preset)
