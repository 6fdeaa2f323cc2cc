"""GPU checks (skipped without CUDA): replicas stay bitwise equal, large-model options, NCCL equals one GPU."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bif
from bif.core.sampler import run_chain, sample_chain
from bif.core.scale import ScaleOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


@pytest.fixture
def lm_cuda(tiny_lm, tiny_corpus):
    from bif.dist.distributed import deterministic_cuda

    deterministic_cuda()
    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)), device="cuda")
    ex = bif.tokenize_texts(loaded.tokenizer, bif.load_texts(str(tiny_corpus)), 64)
    return loaded.model, ex


def test_a_chain_replays_bitwise_on_the_gpu(lm_cuda):
    """What ranks sharing a chain rely on: the same trajectory from the same seeds."""
    model, ex = lm_cuda
    cfg = bif.preset("smoke", device="cuda")
    a = run_chain(model, bif.lm_token_loss, ex, cfg, 0, lambda d: None)
    b = run_chain(model, bif.lm_token_loss, ex, cfg, 0, lambda d: None)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_offload_checkpointing_and_bf16_on_the_gpu(lm_cuda):
    model, ex = lm_cuda
    cfg = bif.preset("smoke", device="cuda")
    plain = sample_chain(model, bif.lm_token_loss, ex, {"train": ex}, cfg, 0)
    other = sample_chain(model, bif.lm_token_loss, ex, {"train": ex}, cfg, 0,
                         scale=ScaleOptions(grad_checkpointing=True, offload_w_star=True))
    torch.testing.assert_close(other.losses["train"], plain.losses["train"], rtol=1e-4, atol=1e-5)
    model.to(torch.bfloat16)
    half = sample_chain(model, bif.lm_token_loss, ex, {"train": ex}, cfg, 0)
    assert torch.isfinite(half.losses["train"]).all()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_torchrun_on_two_gpus_equals_one_gpu(tiny_lm, tiny_corpus, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    common = ["-m", "bif", "run", "--model", str(tiny_lm), "--data", str(tiny_corpus), "--n-scored", "0",
              "--prompt", QUERY.prompt, "--completion", QUERY.completion, "--preset", "smoke",
              "--set", "score_batch_size=8", "-k", "1"]
    for name, launcher in (("one", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "1"]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "2"])):
        cmd = launcher + common[:2] + ["--cache", str(tmp_path / name)] + common[2:] + ["--chain-groups", "1"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    [a] = list((tmp_path / "one" / "runs").iterdir())
    [b] = list((tmp_path / "two" / "runs").iterdir())
    ra, rb = bif.open_run(a), bif.open_run(b)
    np.testing.assert_allclose(rb.train_losses, ra.train_losses, rtol=1e-5, atol=1e-6)
