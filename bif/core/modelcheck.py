"""Numerical checks of a model's behaviour, made once per model object and remembered.

Fast paths (the LM head applied to the flattened hidden states, packed SGLD minibatches) are taken only for
models that have been seen to compute the same thing through them. `once_per_model` turns such a check,
`check(model) -> bool`, into one that runs the check the first time a model is seen, without gradients, and
answers from memory after that. A check that raises (a model without the attributes it reads) says False.
The memory is keyed weakly by the model object, not stored on it: a deleted model is forgotten.

`same_up_to_rounding` is the comparison such checks use: equal to 1e-4, or, for a model in bfloat16 or float16,
to a few units of that type's rounding (4·eps·max|want|: 0.22 on the demo's bfloat16 hidden states of size 7,
where packed rows differ from unpacked ones by 0.06 and a mask that leaks across sequences by 9.5).
"""

from __future__ import annotations

import functools
import weakref
from typing import Callable

import torch

ModelCheck = Callable[[torch.nn.Module], bool]


def once_per_model(check: ModelCheck) -> ModelCheck:
    """`check`, run once per model (under torch.no_grad; an AttributeError, TypeError, RuntimeError or ValueError
    means False) and remembered in `.verdicts` (a WeakKeyDictionary model -> bool)."""
    verdicts: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()

    @functools.wraps(check)
    def checked(model: torch.nn.Module) -> bool:
        verdict = verdicts.get(model)
        if verdict is None:
            try:
                with torch.no_grad():
                    verdict = bool(check(model))
            except (AttributeError, TypeError, RuntimeError, ValueError):
                verdict = False
            verdicts[model] = verdict
        return verdict

    checked.verdicts = verdicts
    return checked


def same_up_to_rounding(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> bool:
    """got ≈ want (same shape), to 1e-4 or to 4 rounding units of `dtype` at want's scale, whichever is looser."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    atol = max(1e-4, 4 * eps * want.abs().max().item()) if want.numel() else 1e-4
    return bool(torch.allclose(got.float(), want.float(), rtol=1e-4, atol=atol))
