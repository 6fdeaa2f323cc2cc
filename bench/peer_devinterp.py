"""The devinterp side of the side-by-side fixture (bench/peer.py): one whole BIF run with devinterp 2.0.1.

    python -m bench.peer_devinterp FIXTURE_DIR OUT_DIR      (in a Python where devinterp is installed)

Runs devinterp's own entry point, `devinterp.slt.bif.bif` (sampling with observables, then the correlations), as
its authors intend it to be used: a HuggingFace model, HuggingFace Datasets of equal-length `input_ids`, one
observable holding the scored rows, losses recorded per draw in devinterp's zarr output. Nothing of `bif` is
imported here, so this process pays for its own imports only. Hyperparameters come from FIXTURE_DIR/fixture.json
(written by bench/peer.py). Writes OUT_DIR/result.json: `done` (time.time() when the correlations were computed,
before anything else), then the fairness statistics read back from the zarr output (not timed):
mean sampling loss, the scored rows' mean loss per draw, the query's completion loss per draw.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main(fixture_dir: str, out_dir: str) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from datasets import Dataset
    from devinterp.slt.bif import bif
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    fx = json.loads(open(os.path.join(fixture_dir, "fixture.json")).read())
    tok = load_file(os.path.join(fixture_dir, "tokens.safetensors"))
    h = fx["hyper"]
    model = AutoModelForCausalLM.from_pretrained(fx["model_dir"], dtype=torch.float32, local_files_only=True)
    sampling = Dataset.from_dict({"input_ids": tok["sampling"].tolist()}).with_format("torch")
    observed = Dataset.from_dict({"input_ids": tok["observed"].tolist()}).with_format("torch")
    zarr_path = os.path.join(out_dir, "samples.zarr")
    loss_fn = masked_loss(fx["pad_id"]) if fx["masked"] else None  # None: devinterp's own per-token loss
    result = bif(model, sampling, {"scored": (observed, len(observed) // h["batch_size"])}, loss_fn=loss_fn,
                 lr=h["step_size"], n_beta=h["nbeta"], localization=h["gamma"], num_chains=h["chains"],
                 num_draws=h["draws"], batch_size=h["batch_size"], num_burnin_steps=h["burn_in"],
                 num_steps_bw_draws=h["steps_between"], num_init_loss_batches=h["init_batches"],
                 init_seed=h["seed"], device="cpu", output_path=zarr_path, correlation_method="sequence")
    done = time.time()
    use = resource.getrusage(resource.RUSAGE_SELF)  # all of this process's threads, zarr writers included
    stats = _stats(zarr_path, tok, result)
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump({"done": done, "cpu_seconds": use.ru_utime + use.ru_stime, **stats}, f)


def masked_loss(pad_id: int):
    """devinterp's per-token loss with padding masked out, for the fixture of variable-length texts padded to one
    width: losses (B, T-1), 0 where the predicted token is padding. In the SGLD step (gradients on) the losses
    are scaled by B(T-1) / (real tokens), so that devinterp's mean over all B(T-1) positions is the mean over real
    tokens, bif's minibatch loss: both sample the same tempered posterior. The recorded losses are not scaled."""
    import torch
    from devinterp.slt.lm_loss import compute_per_token_loss

    def loss_fn(model, input_ids):
        real = input_ids[:, 1:] != pad_id  # (B, T-1)
        per = compute_per_token_loss(model, input_ids) * real
        if torch.is_grad_enabled():
            per = per * (real.numel() / real.sum().clamp(min=1))
        return per

    return loss_fn


def _stats(zarr_path: str, tok: dict, result) -> dict:
    """Fairness statistics from devinterp's own output, rows matched back to the fixture's order."""
    import numpy as np
    import xarray as xr

    ds = xr.open_datatree(zarr_path, engine="zarr", consolidated=False).dataset
    ids = np.asarray(ds["input_ids_scored"].values)  # (256, T): devinterp's fixed shuffle of the observed rows
    want = tok["observed"].numpy()
    order = [int(np.flatnonzero((want == row).all(1))[0]) for row in ids]  # devinterp row -> fixture row
    losses = np.asarray(ds["loss_scored"].values, dtype=np.float64)  # (C, D, 256, T-1)
    q = order.index(len(want) - 1)  # the query is the fixture's last observed row
    qmask = tok["query_mask"].numpy().astype(bool)  # (T-1,)
    train = np.delete(losses, q, axis=2)
    return {"sampling_loss_mean": float(np.asarray(ds["sampling_loss"].values, dtype=np.float64).mean()),
            "train_loss_per_draw": train.sum(-1).mean(2).tolist(),  # (C, D): mean over rows of summed losses
            "query_loss_per_draw": losses[:, :, q][..., qmask].sum(-1).tolist(),  # (C, D)
            "init_loss_mean": float(np.asarray(ds["init_loss"].values).mean()),  # over all positions (padding too)
            "influences_shape": list(result["influences"].shape)}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
