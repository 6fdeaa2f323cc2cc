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

from bif.core import packing
from bif.core.modelcheck import once_per_model

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
    cut: int = 0  # texts that were longer than the maximum length and were cut (bif.lm.data.tokenize_texts)

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


HEAD_CHUNK = 256  # rows per LM-head chunk when scoring: 256 x vocab 2048 logits fit in cache (12 % faster here)


def lm_token_loss(model: torch.nn.Module, inputs: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy of a causal LM: inputs (B, T) -> losses (B, T-1), float32.

    Position p is the loss of predicting token p+1 from tokens ≤ p. With `mask` (B, T-1), only masked-in
    positions go through the LM head (others are 0): for a model whose logits are just `lm_head(hidden)`, which
    is checked numerically once per model, this costs about one bare forward pass. With gradients on (an SGLD
    step) and a mask, the rows are packed when that saves work (bif.core.packing): equal to the padded batch up
    to float rounding.
    """
    ids = inputs["input_ids"]  # (B, T)
    B, T = ids.shape
    if mask is not None and _head_is_plain(model):
        packed = packing.worth_packing(model, inputs, mask) if torch.is_grad_enabled() else None
        if packed is not None:  # an SGLD minibatch, rows in random order: no work on padding (bif.core.packing)
            picked = packing.packed_hidden(model, packed)[packed.where[:, :-1][mask]]  # (N, H)
        else:
            hidden = model.base_model(input_ids=ids, attention_mask=inputs.get("attention_mask")).last_hidden_state
            picked = hidden[:, :-1][mask]  # (N, H)
        target = ids[:, 1:][mask]  # (N,)
        head = model.get_output_embeddings()
        # without gradients, rows go through the head in chunks whose logits stay in cache for the log-softmax
        step = HEAD_CHUNK if not torch.is_grad_enabled() else max(1, picked.shape[0])
        per = [torch.nn.functional.cross_entropy(head(picked[s:s + step]).float(), target[s:s + step], reduction="none")
               for s in range(0, picked.shape[0], step)]  # (chunk,) each
        loss = torch.zeros(B, T - 1, dtype=torch.float32, device=ids.device)
        loss[mask] = torch.cat(per) if per else loss[mask]
        return loss
    logits = model(input_ids=ids, attention_mask=inputs.get("attention_mask")).logits[:, :-1]  # (B, T-1, V)
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none")
    return loss.view(B, T - 1)


lm_token_loss.uses_mask = True  # callers pass the loss mask as a third argument


@once_per_model
def _head_is_plain(model: torch.nn.Module) -> bool:
    """True when model(...).logits == get_output_embeddings()(base_model(...).last_hidden_state) (checked once)."""
    head, base = model.get_output_embeddings(), getattr(model, "base_model", None)
    if head is None or base is None or base is model:
        return False
    ids = torch.arange(1, 9, device=next(model.parameters()).device)[None] % model.config.vocab_size  # (1, 8)
    full = model(input_ids=ids).logits.float()
    ours = head(base(input_ids=ids).last_hidden_state).float()
    return bool(torch.allclose(full, ours, rtol=1e-4, atol=1e-4))


def call_loss(loss_fn: LossFn, model: torch.nn.Module, inputs: dict, mask: torch.Tensor) -> torch.Tensor:
    """loss_fn(model, inputs), passing the mask too when the function can use it."""
    return loss_fn(model, inputs, mask) if getattr(loss_fn, "uses_mask", False) else loss_fn(model, inputs)


def scoring_batches(examples: Examples, batch_size: int) -> list[torch.Tensor]:
    """The scoring order, used everywhere rows are scored: row indices sorted by length (longest first; file
    order when lengths are unknown), cut into batches of batch_size. One process and the shards of a distributed
    run (bif.dist) score the same batches, so their numbers are bitwise equal."""
    n = len(examples)
    order = torch.argsort(examples.lengths, descending=True) if examples.lengths is not None else torch.arange(n)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


@torch.no_grad()
def score_batches(model: torch.nn.Module, loss_fn: LossFn, examples: Examples, batches: list[torch.Tensor],
                  device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-position losses (Σ|batch|, P) float32 of the given row batches, in batch order, 0 where masked; each
    batch is cut at its longest row."""
    device = torch.device(device)
    out = torch.zeros(sum(len(b) for b in batches), examples.positions, dtype=torch.float32, device=device)
    at = 0
    for idx in batches:
        inputs, mask = examples.batch(idx, device)
        with torch.autocast(device_type=device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = call_loss(loss_fn, model, inputs, mask)  # (B, P')
        Pb = mask.shape[1]
        out[at:at + len(idx), :Pb] = torch.where(mask, loss[:, :Pb].float(), 0.0)
        at += len(idx)
    return out


@torch.no_grad()
def score_examples(model: torch.nn.Module, loss_fn: LossFn, examples: Examples, batch_size: int,
                   device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-position losses of all examples at the model's current weights: (n, P) float32, 0 where masked.

    Rows are scored in the batches of `scoring_batches` and put back in order.
    """
    batches = scoring_batches(examples, batch_size)
    out = torch.zeros(len(examples), examples.positions, dtype=torch.float32, device=torch.device(device))
    if batches:
        out[torch.cat(batches).to(out.device)] = score_batches(model, loss_fn, examples, batches, device,
                                                               autocast_dtype)
    return out
