"""How the demo model is made: its recipe, a byte-level BPE tokenizer, a tiny Llama, and a deterministic training loop.

`bif.lm.builtin` builds the demo model with these once; the LDS evaluation (bif.evaluation.benchmark) retrains subsets
with them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import torch

from bif.lm.corpus import demo_texts

Progress = Callable[[dict], None]
PAD, EOS = "<|pad|>", "<|eos|>"


@dataclasses.dataclass(frozen=True)
class DemoRecipe:
    """How the demo model is made; the LDS evaluation retrains subsets with the same recipe."""

    vocab_size: int = dataclasses.field(default=2048, metadata={"help": "Byte-level BPE vocabulary size."})
    n_layers: int = dataclasses.field(default=2, metadata={"help": "Llama decoder layers."})
    hidden_size: int = dataclasses.field(default=128, metadata={"help": "Residual stream width."})
    n_heads: int = dataclasses.field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = dataclasses.field(default=512, metadata={"help": "MLP width."})
    max_len: int = dataclasses.field(default=128, metadata={"help": "Tokens per example, eos included."})
    steps: int = dataclasses.field(default=1200, metadata={"help": "Optimizer steps."})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "Examples per step."})
    lr: float = dataclasses.field(default=3e-3, metadata={"help": "Peak AdamW learning rate."})
    warmup: int = dataclasses.field(default=100, metadata={"help": "Linear warmup steps, then cosine to 0."})
    weight_decay: float = dataclasses.field(default=0.0, metadata={"help": "AdamW weight decay."})

    def to_dict(self) -> dict:
        """The recipe as a JSON-ready dict."""
        return dataclasses.asdict(self)


def train_tokenizer(texts: list[str], vocab_size: int = 2048):
    """Trains a byte-level BPE tokenizer (pad, eos; bos = eos) on ``texts``; deterministic.

    Returns:
        A ``PreTrainedTokenizerFast`` that adds no special tokens on its own.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=EOS)


def new_demo_model(tokenizer, recipe: DemoRecipe = DemoRecipe(), seed: int = 0):
    """A freshly initialised tiny ``LlamaForCausalLM`` for ``tokenizer``; same seed, same weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.n_layers, num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_heads, max_position_embeddings=recipe.max_len, tie_word_embeddings=True,
        attention_dropout=0.0, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def _encode(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return [ids[:max_len] for ids in tokenizer([t + tokenizer.eos_token for t in texts])["input_ids"]]


def _collate(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    return ids, mask, ids.masked_fill(mask == 0, -100)


def _batches(n: int, lengths: list[int], batch_size: int, gen: torch.Generator):
    """Endless epochs of index batches of similar length (random chunks, sorted within a chunk)."""
    while True:
        perm, batches = torch.randperm(n, generator=gen).tolist(), []
        for start in range(0, n, batch_size * 16):
            chunk = sorted(perm[start : start + batch_size * 16], key=lambda i: lengths[i])
            batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
        yield from (batches[k] for k in torch.randperm(len(batches), generator=gen).tolist())


@torch.no_grad()
def mean_token_loss(model, tokenizer, texts: list[str], max_len: int = 128, batch_size: int = 64) -> float:
    """Mean next-token loss over all non-padding tokens of ``texts`` (each followed by eos)."""
    seqs, total, count = _encode(tokenizer, texts, max_len), 0.0, 0
    was_training = model.training
    model.eval()
    for start in range(0, len(seqs), batch_size):
        ids, mask, labels = _collate(seqs[start : start + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="sum")
        total, count = total + loss.item(), count + int((labels[:, 1:] != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def train_lm(model, tokenizer, texts: list[str], steps: int, batch_size: int, lr: float, seed: int = 0,
             progress: Progress | None = None, warmup: int = 0, weight_decay: float = 0.0,
             max_len: int = 128) -> float:
    """Trains a causal LM in place on ``texts`` (each + eos, right-padded, padding masked).

    AdamW with linear warmup then cosine decay to 0; batches of similar length are drawn from a
    generator seeded by ``seed``, so the same model, texts and seed give the same weights on CPU.

    Args:
        model: A ``*ForCausalLM``; ``tokenizer`` its tokenizer, with a pad token and an eos token.
        texts: The training texts.
        steps, batch_size, lr, warmup, weight_decay, max_len: The optimisation, as in :class:`DemoRecipe`.
        seed: Seeds the batch order.
        progress: Called with ``{"stage": "train", "step", "steps", "loss", "eta_s"}`` about 100 times.

    Returns:
        The mean token loss over all of ``texts`` after training.
    """
    seqs = _encode(tokenizer, texts, max_len)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / max(warmup, 1), 0.5 * (
        1 + math.cos(math.pi * min(max(s - warmup, 0) / max(steps - warmup, 1), 1.0)))))
    batches, t0, avg = _batches(len(seqs), [len(s) for s in seqs], batch_size, gen), time.perf_counter(), None
    model.train()
    for step in range(1, steps + 1):
        ids, mask, labels = _collate([seqs[i] for i in next(batches)], tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        avg = loss.item() if avg is None else 0.95 * avg + 0.05 * loss.item()
        if progress and (step % max(steps // 100, 1) == 0 or step == steps):
            eta = (time.perf_counter() - t0) / step * (steps - step)
            progress({"stage": "train", "step": step, "steps": steps, "loss": avg, "eta_s": eta})
    model.eval()
    return mean_token_loss(model, tokenizer, texts, max_len)


def train_demo_lm(texts: list[str], recipe: DemoRecipe = DemoRecipe(), seed: int = 0, tokenizer=None,
                  progress: Progress | None = None):
    """Trains a demo model from scratch on ``texts`` with ``recipe``.

    Args:
        texts: Training texts (all of :func:`demo_texts`, or a subset for retraining).
        recipe: Architecture and optimisation.
        seed: Seeds the initialisation and the batch order.
        tokenizer: A tokenizer to reuse (e.g. the built demo model's); trained on ``demo_texts()`` if None.
        progress: Receives ``{"stage": "tokenizer"}`` then the training dicts of :func:`train_lm`.

    Returns:
        ``(model, tokenizer, loss)``: the trained model in eval mode, its tokenizer, the final mean loss.
    """
    if tokenizer is None:
        if progress:
            progress({"stage": "tokenizer"})
        tokenizer = train_tokenizer(demo_texts(), recipe.vocab_size)
    model = new_demo_model(tokenizer, recipe, seed)
    loss = train_lm(model, tokenizer, texts, recipe.steps, recipe.batch_size, recipe.lr, seed, progress,
                    recipe.warmup, recipe.weight_decay, recipe.max_len)
    return model, tokenizer, loss
