"""Random-weight Llama models for the scale benchmarks: sizes xs to l, and published shapes (SmolLM2-135M,
Llama-3.2-1B/3B) with the same compute and memory as the real models (timings only); random token data; a model
directory with a BPE trained on the demo texts, saved like a real model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bif.lm.registry import SMOLLM2


SIZES = {"xs": (2, 128, 2048), "s": (4, 256, 4096), "m": (6, 384, 8192), "l": (8, 512, 16384)}
SHAPES = {  # layers, hidden, intermediate, heads, kv heads, vocab
    SMOLLM2: (30, 576, 1536, 9, 3, 49152),  # the built-in SmolLM2-135M's shape
    "1b": (16, 2048, 8192, 32, 8, 128256),  # Llama-3.2-1B
    "3b": (28, 3072, 8192, 24, 8, 128256),  # Llama-3.2-3B
}


def vocab_of(size: str) -> int:
    return SHAPES[size][5] if size in SHAPES else SIZES[size][2]


def random_llama(size: str, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if size in SHAPES:
        layers, hidden, inter, heads, kv, vocab = SHAPES[size]
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                            num_hidden_layers=layers, num_attention_heads=heads,
                                            num_key_value_heads=kv, max_position_embeddings=2048,
                                            tie_word_embeddings=True)).eval()
    layers, hidden, vocab = SIZES[size]
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 2,
                                        num_hidden_layers=layers, num_attention_heads=max(2, hidden // 64),
                                        num_key_value_heads=max(2, hidden // 64), max_position_embeddings=128,
                                        tie_word_embeddings=True)).eval()


def random_tokens(n: int, T: int, vocab: int, seed: int = 0):
    from bif.core.examples import Examples

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, T), generator=g)
    return Examples(inputs={"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                    mask=torch.ones(n, T - 1, dtype=torch.bool), lengths=torch.full((n,), T))


def bench_model_dir(out: Path, size: str = "xs") -> Path:
    """A random Llama of `size` plus a byte-level BPE trained on the demo texts, saved like a real model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from bif.lm.corpus import demo_texts

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(demo_texts(), trainers.BpeTrainer(vocab_size=SIZES[size][2],
                                                             special_tokens=["<|pad|>", "<|eos|>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<|pad|>", eos_token="<|eos|>")
    model = random_llama(size)
    model.config.pad_token_id, model.config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
