"""Which parameters SGLD moves (SamplerConfig.param_patterns), for the sampler, the memory estimate and the
stored draws alike."""

from __future__ import annotations

import fnmatch

import torch

from bif.errors import ConfigError


def select_parameters(model: torch.nn.Module, patterns: tuple[str, ...]) -> list[tuple[str, torch.nn.Parameter]]:
    """The (name, parameter) pairs that SGLD moves: all trainable ones, or those matching a glob pattern."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if patterns:
        named = [(n, p) for n, p in named if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
        if not named:
            sample = ", ".join(n for n, _ in list(model.named_parameters())[:6])
            raise ConfigError(f"No parameter matches {list(patterns)}. Names look like: {sample}, ...")
    return named
