"""Model loading: a built-in by name (bif.lm.registry) or any local transformers causal-LM directory, offline."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bif.layout import model_config
from bif.errors import ModelNotFound, ModelRefused
from bif.lm import registry


@dataclass(frozen=True)
class ModelSpec:
    """Which model: a built-in's name (bif.lm.registry: 'demo', 'smollm2') or a path to a local directory saved with
    `save_pretrained`."""

    name_or_path: str = registry.DEMO
    trust_remote_code: bool = False
    seed: int = 0  # the demo model's training seed

    def __post_init__(self) -> None:
        from bif.errors import ConfigError

        if not isinstance(self.name_or_path, (str, Path)) or not str(self.name_or_path):
            raise ConfigError(f"name_or_path must be {registry.names(registry.MODELS)} or a model folder "
                              f"(got {self.name_or_path!r}).")
        object.__setattr__(self, "name_or_path", str(self.name_or_path))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number ≥ 0 (got {self.seed!r}).")

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
    built_in = registry.model(spec.name_or_path)
    if built_in:
        return Path(built_in.build(cache_root, spec.seed, progress))
    path = Path(spec.name_or_path).expanduser()
    if path.is_file():
        raise ModelNotFound(f"{str(path)!r} is a file; give the model's folder (the one holding config.json, the "
                            f"weights and the tokenizer), e.g. {str(path.parent)!r}.")
    if not path.is_dir():
        raise ModelNotFound(f"Model directory {str(path)!r} does not exist. Give a local folder saved with "
                            "save_pretrained (config.json + weights + tokenizer), or one of "
                            f"{sorted(registry.MODELS)}. Hub names cannot be downloaded here (offline).")
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
    model_type = _model_type(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - tokenizers raise many types for missing or damaged files
        raise ModelRefused(f"Could not load the tokenizer of {str(path)!r} ({_short(e)}). The folder must hold the "
                           "tokenizer files saved with save_pretrained (tokenizer.json or vocab files).") from e
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True,
                                                           trust_remote_code=spec.trust_remote_code,
                                                           output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - the loader raises many types for damaged or refused files
        raise ModelRefused(_load_problem(path, model_type, e)) from e
    _check_weights(path, model_type, model, info)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    max_len = int(getattr(model.config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 1024))
    built_in = registry.model(spec.name_or_path)
    label = built_in.label if built_in else f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, fingerprint=directory_fingerprint(path),
                       label=label, max_length=min(max_len, 1 << 20))


def _short(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]


def _model_type(path: Path) -> str:
    """config.json's model_type; ModelRefused when config.json is not a JSON object with one."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelRefused(f"{str(path / 'config.json')!r} is not readable JSON ({_short(e)}). Save the model again "
                           "with save_pretrained.") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise ModelRefused(f"{str(path / 'config.json')!r} names no model_type: it is not a transformers model "
                           "config. Save the model again with save_pretrained.")
    return cfg["model_type"]


def _load_problem(path: Path, model_type: str, e: BaseException) -> str:
    """What to say when the loader refuses a folder."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    weights = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf"))
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return (f"{str(path)!r} holds a {model_type!r} model, which is not a causal (next-token) language model; "
                "BIF needs one (e.g. Llama, GPT-2, SmolLM2).")
    if not weights:
        return f"{str(path)!r} holds no weights (model.safetensors). Save the model with save_pretrained."
    if not any(w.endswith(".safetensors") for w in weights):
        return (f"{str(path)!r} only has {', '.join(weights)}: pickle weight files are refused (loading them can run "
                "code). Convert the model to safetensors (save_pretrained(..., safe_serialization=True)).")
    return (f"The weights in {str(path)!r} are damaged or incomplete ({_short(e)}). Copy or save the model "
            "again.")


def _check_weights(path: Path, model_type: str, model: torch.nn.Module, info: dict) -> None:
    """ModelRefused when the stored weights do not fill the architecture exactly (a model that would be partly
    randomly initialised, or weights of another architecture)."""
    problems = {k: sorted(map(str, info.get(k) or [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    tensors = dict(model.state_dict(keep_vars=True))
    loaded = {t.data_ptr() for k, t in tensors.items() if k not in problems["missing_keys"]}
    # a key tied to a loaded one (lm_head.weight = the embeddings, tie_word_embeddings) is not missing
    problems["missing_keys"] = [k for k in problems["missing_keys"] if k not in tensors
                                or tensors[k].data_ptr() not in loaded]
    if any(problems.values()):
        found = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {v[0]})" for k, v in problems.items() if v)
        raise ModelRefused(f"The weights in {str(path)!r} do not match its config ({model_type!r}, "
                           f"{type(model).__name__}): {found}. Loading it would give a partly random model. Check "
                           "that config.json belongs to these weights.")


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
