import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402

from tests.tiny import make_tiny_lm, write_corpus  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """Path of a tiny random causal LM directory (built once per test session)."""
    return make_tiny_lm(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Path of a .txt training file with 40 one-line arithmetic conversations."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "train.txt")


@pytest.fixture(scope="session")
def tiny_run(tiny_lm, tiny_corpus, tmp_path_factory):
    """(cache_root, Run): a finished smoke run of the tiny LM on the tiny corpus with one query."""
    import bif

    cache = tmp_path_factory.mktemp("cache")
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
                          [bif.Query("User: what is 3 plus 4?\nBot:", " 7")], bif.preset("smoke"), cache_root=cache)
    return cache, run
