"""How familiar a prompt is to a model: its loss per token at the trained weights next to the model's training
texts' (a QueryFit, bif.core.diagnostics). A prompt far harder than the training texts is likely outside what the
model learned; its completion is then a guess, and few training texts will stand out as its source."""

from __future__ import annotations

import random

import numpy as np
import torch

from bif.core.diagnostics import OUTSIDE_QUANTILE, QueryFit
from bif.core.examples import lm_token_loss


@torch.no_grad()
def _mean_loss(loaded, text: str) -> float | None:
    """Mean next-token loss (nats) of one text, cut to the model's context; None below 2 tokens."""
    device = next(loaded.model.parameters()).device
    ids = loaded.tokenizer(text, add_special_tokens=True, return_tensors="pt")["input_ids"][:, :loaded.max_length]
    if ids.shape[1] < 2:
        return None
    return float(lm_token_loss(loaded.model, {"input_ids": ids.to(device)}).mean())  # (1, T-1) -> scalar


def prompt_fit(loaded, prompt: str, texts: list[str], n: int = 32, seed: int = 0) -> QueryFit:
    """QueryFit of `prompt` against `n` training texts drawn with `seed` (n forward passes of one text each)."""
    sample = random.Random(seed).sample(list(texts), min(n, len(texts)))
    per_text = np.array([v for v in (_mean_loss(loaded, t) for t in sample) if v is not None])
    loss = _mean_loss(loaded, prompt)
    loss = float("nan") if loss is None else loss
    median = float(np.median(per_text)) if per_text.size else float("nan")
    high = float(np.quantile(per_text, OUTSIDE_QUANTILE)) if per_text.size else float("nan")
    return QueryFit(loss=loss, perplexity=float(np.exp(min(loss, 700.0))), train_median=median, train_high=high,
                    outside=bool(np.isfinite(loss) and loss > high))
