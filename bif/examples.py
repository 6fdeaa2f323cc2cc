"""Examples: a fixed set of inputs whose per-position losses are recorded at every draw.

The training set, the scored subset of it and the queries are all `Examples`. For a language model the inputs
are `input_ids`/`attention_mask` of shape (n, T) and the loss positions are the T-1 next-token predictions:
position p holds the loss of predicting token p+1 (attach it to token p+1 when displaying). For any other torch
model the inputs are whatever its loss function takes, and positions can be just one (P = 1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import torch

# (model, inputs: dict of (B, ...) tensors) -> per-position losses (B, P); masked positions may hold anything.
LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


@dataclass
class Examples:
    """n examples: `inputs` (each tensor (n, ...)), `mask` (n, P) bool marking the observed loss positions.

    `lengths` (n,), when given, is the number of valid entries along dim 1 of each input: batches are then cut at
    their longest row (right padding assumed). `texts` and `tokens` are for display only; `ids` are the examples'
    indices in their source data set.
    """

    inputs: dict[str, torch.Tensor]
    mask: torch.Tensor  # (n, P) bool
    lengths: torch.Tensor | None = None  # (n,)
    texts: list[str] | None = None
    tokens: list[list[str]] | None = None  # per example, the display strings of its input tokens
    ids: list[int] | None = None
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        n = self.mask.shape[0]
        for k, v in self.inputs.items():
            if v.shape[0] != n:
                raise ValueError(f"input {k!r} has {v.shape[0]} rows, mask has {n}")
        self.mask = self.mask.bool()
        if not self.fingerprint:
            self.fingerprint = tensor_fingerprint([self.mask, *[self.inputs[k] for k in sorted(self.inputs)]])
        if self.ids is None:
            self.ids = list(range(n))

    def __len__(self) -> int:
        return self.mask.shape[0]

    @property
    def positions(self) -> int:
        return self.mask.shape[1]

    def batch(self, idx: torch.Tensor | list[int], device: torch.device | str = "cpu") -> tuple[dict, torch.Tensor]:
        """Rows `idx` as (inputs on device, mask (B, P) on device), cut to the longest row when lengths are known."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        inputs = {k: v[idx] for k, v in self.inputs.items()}
        mask = self.mask[idx]
        if self.lengths is not None:
            L = int(self.lengths[idx].max())
            inputs = {k: (v[:, :L] if v.dim() >= 2 else v) for k, v in inputs.items()}
            offset = self.inputs_width - self.positions  # 1 for next-token losses
            mask = mask[:, : max(L - offset, 1)]
        return {k: v.to(device) for k, v in inputs.items()}, mask.to(device)

    @property
    def inputs_width(self) -> int:
        return next(iter(self.inputs.values())).shape[1] if self.inputs else 0

    def subset(self, idx: list[int]) -> "Examples":
        t = torch.as_tensor(idx, dtype=torch.long)
        return Examples(
            inputs={k: v[t] for k, v in self.inputs.items()},
            mask=self.mask[t],
            lengths=None if self.lengths is None else self.lengths[t],
            texts=None if self.texts is None else [self.texts[i] for i in idx],
            tokens=None if self.tokens is None else [self.tokens[i] for i in idx],
            ids=[self.ids[i] for i in idx],
        )


def tensor_fingerprint(tensors: list[torch.Tensor], extra: str = "") -> str:
    """sha256 (first 16 hex digits) over the tensors' shapes, dtypes and bytes."""
    h = hashlib.sha256(extra.encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def lm_token_loss(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    """Next-token cross-entropy of a causal LM: inputs (B, T) -> losses (B, T-1), float32.

    Position p is the loss of predicting token p+1 from tokens ≤ p.
    """
    ids = inputs["input_ids"]  # (B, T)
    logits = model(input_ids=ids, attention_mask=inputs.get("attention_mask")).logits  # (B, T, V)
    logits = logits[:, :-1].float()  # (B, T-1, V)
    B, T1, V = logits.shape
    loss = torch.nn.functional.cross_entropy(logits.reshape(B * T1, V), ids[:, 1:].reshape(-1), reduction="none")
    return loss.view(B, T1)


@torch.no_grad()
def score_examples(model: torch.nn.Module, loss_fn: LossFn, examples: Examples, batch_size: int,
                   device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-position losses of all examples at the model's current weights: (n, P) float32, 0 where masked.

    Rows are scored in batches sorted by length (each cut at its longest row) and put back in order.
    """
    n, P = examples.mask.shape
    out = torch.zeros(n, P, dtype=torch.float32, device=device)
    order = torch.argsort(examples.lengths, descending=True) if examples.lengths is not None else torch.arange(n)
    device = torch.device(device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        inputs, mask = examples.batch(idx, device)
        with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = loss_fn(model, inputs)  # (B, P')
        Pb = mask.shape[1]
        out[idx.to(device), :Pb] = torch.where(mask, loss[:, :Pb].float(), 0.0)
    return out
