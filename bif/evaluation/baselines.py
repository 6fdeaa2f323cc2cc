"""Baselines on the benchmark model, in the evaluation's one convention: Δ (Q, n) = predicted change in the query
loss when training sample i is included (negative = supports). Each returns (Δ, info) where info says what was
computed (parameters tracked, approximations).

- gradient dot:  Δ = −∇φ·∇ℓ_i (one SGD step on z_i changes φ by −η ∇φ·∇ℓ_i)
- gradient cosine: Δ = −cos(∇φ, ∇ℓ_i)
- TracIn (checkpoints):  Δ = −Σ_k η_k ∇φ(w_k)·∇ℓ_i(w_k) over checkpoints saved during training
- EK-FAC (kronfluence):  Δ = −∇φᵀ(G + λI)⁻¹∇ℓ_i; kronfluence's own score is positive = helpful, so it is negated
- word overlap: Δ = −Jaccard(words of the query, words of the sample), a lexical reference, not an attribution
- random: Δ ~ N(0, 1), the chance level

ℓ_i is the summed next-token loss of training sample i and φ the summed loss of the query's completion tokens,
the same quantities BIF uses.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from bif.core.examples import Examples, lm_token_loss


def _params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(model: torch.nn.Module, ex: Examples, i: int) -> torch.Tensor:
    """∇ of the summed observed-token loss of example i w.r.t. every trainable parameter, flattened: (D,)."""
    inputs, mask = ex.batch([i])
    loss = (lm_token_loss(model, inputs) * mask).sum()
    grads = torch.autograd.grad(loss, _params(model))
    return torch.cat([g.reshape(-1) for g in grads])


def gradient_products(model: torch.nn.Module, train: Examples, queries: Examples) -> tuple[np.ndarray, np.ndarray,
                                                                                            np.ndarray]:
    """(dots (Q, n), query norms (Q,), train norms (n,)) of per-sample gradients at the model's weights."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    gq = torch.stack([flat_grad(model, queries, q) for q in range(len(queries))])  # (Q, D)
    dots, norms = np.zeros((len(queries), len(train))), np.zeros(len(train))
    for i in range(len(train)):
        g = flat_grad(model, train, i)  # (D,)
        dots[:, i] = (gq @ g).double().numpy()
        norms[i] = float(g.norm())
    return dots, gq.norm(dim=1).double().numpy(), norms


def gradient_similarity(model, train: Examples, queries: Examples) -> dict[str, np.ndarray]:
    """{"grad_dot": Δ, "grad_cos": Δ} (Q, n) at the trained weights, from one pass of per-sample gradients."""
    dots, qn, tn = gradient_products(model, train, queries)
    cos = dots / np.maximum(np.outer(qn, tn), 1e-30)
    return {"grad_dot": -dots, "grad_cos": -cos}


def tracin(model_factory, checkpoints: list[dict], train: Examples, queries: Examples) -> np.ndarray:
    """TracIn-CP: Δ = −Σ_k η_k ∇φ(w_k)·∇ℓ_i(w_k) (Q, n) over checkpoints {"state", "lr"}."""
    total = np.zeros((len(queries), len(train)))
    for c in checkpoints:
        model = model_factory()
        model.load_state_dict(c["state"], strict=False)  # the tied lm_head follows the embedding
        dots, _, _ = gradient_products(model, train, queries)
        total += c["lr"] * dots
    return -total


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def word_overlap(train_texts: list[str], query_texts: list[str]) -> np.ndarray:
    """Δ = −Jaccard of word sets (Q, n): a lexical reference point."""
    tw = [_words(t) for t in train_texts]
    out = np.zeros((len(query_texts), len(train_texts)))
    for q, text in enumerate(query_texts):
        qw = _words(text)
        out[q] = [len(qw & w) / max(len(qw | w), 1) for w in tw]
    return -out


def random_scores(q: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((q, n))


# ------------------------------------------------------------------------------------------------ EK-FAC


def _label_rows(ex: Examples) -> list[dict]:
    """Examples -> kronfluence items: input_ids, attention_mask, labels (−100 where the position is not observed)."""
    ids, att = ex.inputs["input_ids"], ex.inputs["attention_mask"]
    labels = torch.full_like(ids, -100)
    labels[:, 1:] = torch.where(ex.mask, ids[:, 1:], torch.full_like(ids[:, 1:], -100))
    return [{"input_ids": ids[i], "attention_mask": att[i], "labels": labels[i]} for i in range(len(ex))]


def _lm_task(tracked: list[str]):
    from kronfluence.task import Task

    class LMTask(Task):
        """Summed next-token loss of the observed positions; the measurement is the same for a query."""

        def compute_train_loss(self, batch, model, sample=False):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # (B·(T-1), V)
            labels = batch["labels"][:, 1:].reshape(-1)
            if sample:  # true Fisher: labels drawn from the model
                with torch.no_grad():
                    drawn = torch.multinomial(torch.softmax(logits.detach(), -1), 1).flatten()
                    labels = torch.where(labels == -100, labels, drawn)
            return torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")

        def compute_measurement(self, batch, model):
            return self.compute_train_loss(batch, model, sample=False)

        def get_influence_tracked_modules(self):
            return tracked

        def get_attention_mask(self, batch):
            return batch["attention_mask"]

    return LMTask()


def _fit_and_score(analyzer, train_ds, query_ds, batch_size: int, damping: float | None) -> None:
    from kronfluence.arguments import FactorArguments, ScoreArguments

    analyzer.fit_all_factors(factors_name="ekfac", dataset=train_ds, per_device_batch_size=batch_size,
                             factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)
    analyzer.compute_pairwise_scores(scores_name="pairwise", factors_name="ekfac", query_dataset=query_ds,
                                     train_dataset=train_ds, per_device_query_batch_size=len(query_ds),
                                     per_device_train_batch_size=batch_size,
                                     score_args=ScoreArguments(damping_factor=damping), overwrite_output_dir=True)


def ekfac(model: torch.nn.Module, train: Examples, queries: Examples, workdir: Path,
          damping: float | None = None, batch_size: int = 16, seed: int = 0) -> tuple[np.ndarray, dict]:
    """EK-FAC influence with kronfluence 1.0 on every nn.Linear of the decoder layers (lm_head excluded: it is tied
    to the embedding, which kronfluence does not track). Returns (Δ (Q, n), info)."""
    from kronfluence.analyzer import Analyzer, prepare_model

    model = copy.deepcopy(model).eval()
    tracked = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"
               and not n.endswith("lm_head")]
    task = _lm_task(tracked)
    model = prepare_model(model, task)
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    analyzer = Analyzer(analysis_name="bench", model=model, task=task, cpu=True, disable_tqdm=True,
                        output_dir=str(workdir), log_level=40)
    train_ds, query_ds = _label_rows(train), _label_rows(queries)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the true-Fisher labels are drawn with torch's global generator
        _fit_and_score(analyzer, train_ds, query_ds, batch_size, damping)
    scores = analyzer.load_pairwise_scores("pairwise")["all_modules"].double().numpy()  # (Q, n), + = helpful
    n_params = sum(m.original_module.weight.numel() + (m.original_module.bias.numel()
                   if m.original_module.bias is not None else 0)
                   for _, m in model.named_modules() if hasattr(m, "original_module"))
    shutil.rmtree(workdir, ignore_errors=True)
    return -scores, {"tracked_modules": len(tracked), "tracked_parameters": int(n_params),
                     "damping": "kronfluence heuristic (0.1 × mean eigenvalue)" if damping is None else damping,
                     "note": "all nn.Linear of the decoder layers; the tied embedding / LM head is not tracked"}
