"""The LDS benchmark: a fixed subset of the demo corpus, its own model trained with the demo recipe code, and
paraphrase queries whose source conversations are in the subset.

Retraining the full demo recipe (850 conversations, 3,000 steps, ≈ 8 min on one core) 32+ times does not fit a
CPU budget, so the benchmark is smaller: `n_train` conversations (every paraphrase source plus a seeded random
draw of the rest), trained for a fixed number of *epochs* with `bif.lm.train.train_lm` and the `DemoRecipe`
architecture. The benchmark model (trained on all `n_train`) is what every method scores; LDS retrains the same
recipe (same epochs, same seeds) on half-subsets. On disk (cache_root/evaluation/<key>/benchmark/):

    model/                   save_pretrained model + tokenizer (a normal model directory: runs can use it)
    train.jsonl              the benchmark training texts, in order ({"text": ...} per line)
    checkpoints.safetensors  weights saved during training, for TracIn (`ckpt<k>.<param name>`)
    meta.json                the spec, conversation ids, sources, learning rate and step of each checkpoint
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from bif.lm.train import DemoRecipe, new_demo_model, train_lm, train_tokenizer
from bif.lm.corpus import format_example
from bif.lm.data import Query, tokenize_queries
from bif.core.examples import Examples, lm_token_loss, score_examples
from bif.lm.queries import LDS_PARAPHRASES, demo_conversations, paraphrase_queries

SCHEMA = 1


@dataclass(frozen=True)
class BenchmarkSpec:
    """The benchmark's data and training recipe. Every field is part of the cache key."""

    n_train: int = field(default=128, metadata={"help": "Conversations in the benchmark training set (the "
                                                        "paraphrase sources plus a seeded random draw of the rest)."})
    n_queries: int = field(default=len(LDS_PARAPHRASES), metadata={"help": "Paraphrase queries used (first k)."})
    epochs: int = field(default=40, metadata={"help": "Training epochs; steps = ceil(epochs·n/batch), so a "
                                                     "half-subset is trained for half the steps."})
    batch_size: int = field(default=16, metadata={"help": "Examples per optimizer step."})
    lr: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate (warmup then cosine to 0)."})
    warmup_frac: float = field(default=0.1, metadata={"help": "Fraction of the steps spent in linear warmup."})
    vocab_size: int = field(default=2048, metadata={"help": "Tokenizer vocabulary (trained on all demo texts)."})
    n_layers: int = field(default=2, metadata={"help": "Llama decoder layers (DemoRecipe)."})
    hidden_size: int = field(default=128, metadata={"help": "Residual width (DemoRecipe)."})
    n_heads: int = field(default=4, metadata={"help": "Attention heads (DemoRecipe)."})
    intermediate_size: int = field(default=512, metadata={"help": "MLP width (DemoRecipe)."})
    max_len: int = field(default=128, metadata={"help": "Tokens per example, eos included."})
    select_seed: int = field(default=0, metadata={"help": "Seed of the random draw of non-source conversations."})
    checkpoints: int = field(default=5, metadata={"help": "Checkpoints saved during training, for TracIn."})

    def __post_init__(self) -> None:
        if not 1 <= self.n_queries <= len(LDS_PARAPHRASES):
            raise ValueError(f"n_queries must be in 1..{len(LDS_PARAPHRASES)}")
        if self.n_train < self.n_queries + 2:
            raise ValueError("n_train must exceed the number of queries (their sources are in the set)")
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoints < 1:
            raise ValueError("epochs, batch_size and checkpoints must be ≥ 1")

    def recipe(self, n: int) -> DemoRecipe:
        """The DemoRecipe for a training set of n examples (steps from epochs)."""
        steps = max(1, math.ceil(self.epochs * n / self.batch_size))
        return DemoRecipe(vocab_size=self.vocab_size, n_layers=self.n_layers, hidden_size=self.hidden_size,
                          n_heads=self.n_heads, intermediate_size=self.intermediate_size, max_len=self.max_len,
                          steps=steps, batch_size=self.batch_size, lr=self.lr,
                          warmup=max(1, int(self.warmup_frac * steps)), weight_decay=0.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return _hash({"schema": SCHEMA, **self.to_dict()})


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def quick_spec() -> BenchmarkSpec:
    """A tiny benchmark for tests and smoke checks (seconds, not findings)."""
    return BenchmarkSpec(n_train=24, n_queries=4, epochs=3, batch_size=8, vocab_size=300, n_layers=1,
                         hidden_size=32, n_heads=2, intermediate_size=64, max_len=96, checkpoints=2)


@dataclass
class Benchmark:
    """A built benchmark: data, queries, the trained model and its TracIn checkpoints."""

    spec: BenchmarkSpec
    dir: Path
    texts: list[str]  # the benchmark training set, in order
    conv_ids: list[int]  # index of each in demo_conversations()
    queries: list[Query]
    sources: list[int]  # position of each query's source in `texts`
    model: torch.nn.Module
    tokenizer: object
    checkpoints: list[dict]  # {"step", "lr", "state": {name: tensor}}
    train_seconds: float
    train_loss: float

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def data_path(self) -> Path:
        return self.dir / "train.jsonl"

    def query_examples(self) -> Examples:
        return tokenize_queries(self.tokenizer, self.queries, self.spec.max_len)

    def fresh_model(self, seed: int = 0) -> torch.nn.Module:
        """An untrained model with the recipe's architecture (seeded initialisation)."""
        return new_demo_model(self.tokenizer, self.spec.recipe(len(self.texts)), seed)


def select_data(spec: BenchmarkSpec) -> tuple[list[str], list[int], list[Query], list[int]]:
    """(texts, conversation ids, queries, source position of each query) of the benchmark."""
    convs = demo_conversations()
    queries, src = paraphrase_queries(LDS_PARAPHRASES[: spec.n_queries])
    others = [i for i in range(len(convs)) if i not in set(src)]
    random.Random(spec.select_seed).shuffle(others)
    conv_ids = sorted(set(src) | set(others[: spec.n_train - len(set(src))]))
    texts = [format_example(*convs[i]) for i in conv_ids]
    return texts, conv_ids, queries, [conv_ids.index(i) for i in src]


def query_losses(model: torch.nn.Module, queries: Examples, batch_size: int = 64) -> torch.Tensor:
    """Σ over completion tokens of the next-token loss, per query: (Q,) float64 (the BIF observable φ)."""
    was = model.training
    model.eval()
    loss = score_examples(model, lm_token_loss, queries, batch_size)  # (Q, P)
    model.train(was)
    return (loss * queries.mask).sum(1).double()


def train_recipe(spec: BenchmarkSpec, tokenizer, texts: list[str], seed: int, checkpoints: int = 0):
    """Train a fresh model on `texts` with the benchmark recipe.

    Returns (model, final mean token loss, seconds, checkpoints) where checkpoints are `checkpoints` snapshots
    {"step", "lr", "state"} taken at evenly spaced steps (the last one is the final model).
    """
    recipe = spec.recipe(len(texts))
    model = new_demo_model(tokenizer, recipe, seed)
    want = sorted({max(1, round(recipe.steps * (k + 1) / checkpoints)) for k in range(checkpoints)}) if checkpoints \
        else []
    saved: list[dict] = []
    every = max(recipe.steps // 100, 1)

    def lr_at(step: int) -> float:  # the LambdaLR of train_lm, evaluated at the step just taken
        s = step - 1
        w = recipe.warmup
        frac = min(max(s - w, 0) / max(recipe.steps - w, 1), 1.0)
        return recipe.lr * min((s + 1) / max(w, 1), 0.5 * (1 + math.cos(math.pi * frac)))

    def grab(ev: dict) -> None:
        step = ev["step"]
        hit = [t for t in want if step - every < t <= step and t not in [c["step"] for c in saved]]
        if hit:
            saved.append({"step": step, "lr": lr_at(step),
                          "state": {k: v.detach().clone() for k, v in model.state_dict().items()}})

    t0 = time.perf_counter()
    loss = train_lm(model, tokenizer, texts, recipe.steps, recipe.batch_size, recipe.lr, seed,
                    grab if checkpoints else None, recipe.warmup, recipe.weight_decay, recipe.max_len)
    return model, loss, time.perf_counter() - t0, saved


def build_benchmark(spec: BenchmarkSpec, cache_root: str | Path = "cache", seed: int = 0, log=print) -> Benchmark:
    """Build (or load) the benchmark: data, tokenizer, the model trained on all of it, TracIn checkpoints."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = Path(cache_root) / "evaluation" / spec.key() / f"benchmark-s{seed}"
    root.mkdir(parents=True, exist_ok=True)
    texts, conv_ids, queries, sources = select_data(spec)
    with FileLock(str(root / "lock")):
        if not (root / "meta.json").exists():
            log(f"benchmark: training the benchmark model on {len(texts)} conversations "
                f"({spec.recipe(len(texts)).steps} steps)")
            tokenizer = train_tokenizer([format_example(q, a) for q, a in demo_conversations()], spec.vocab_size)
            model, loss, secs, ckpts = train_recipe(spec, tokenizer, texts, seed, spec.checkpoints)
            tmp = root / "model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            shutil.rmtree(root / "model", ignore_errors=True)
            tmp.rename(root / "model")
            (root / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
            save_file({f"ckpt{k}.{n}": v.contiguous() for k, c in enumerate(ckpts) for n, v in c["state"].items()
                       if n != "lm_head.weight"}, str(root / "checkpoints.safetensors"))
            meta = {"spec": spec.to_dict(), "seed": seed, "conv_ids": conv_ids, "sources": sources,
                    "checkpoints": [{"step": c["step"], "lr": c["lr"]} for c in ckpts],
                    "train_seconds": secs, "train_loss": loss, "recipe": spec.recipe(len(texts)).to_dict()}
            (root / "meta.json").write_text(json.dumps(meta, indent=1))
    meta = json.loads((root / "meta.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.float32).eval()
    flat = load_file(str(root / "checkpoints.safetensors"))
    ckpts = []
    for k, c in enumerate(meta["checkpoints"]):
        state = {n[len(f"ckpt{k}."):]: v for n, v in flat.items() if n.startswith(f"ckpt{k}.")}
        ckpts.append({"step": c["step"], "lr": c["lr"], "state": state})
    return Benchmark(spec=spec, dir=root, texts=texts, conv_ids=conv_ids, queries=queries, sources=sources,
                     model=model, tokenizer=tokenizer, checkpoints=ckpts, train_seconds=meta["train_seconds"],
                     train_loss=meta["train_loss"])
