"""BIF Explorer's library: local Bayesian influence functions for language models (and any torch model).

Stages: load a model and data -> `compute_run` (localized SGLD + loss traces, cached) -> views in `influence`
(per sample, per token, token × token) with error bars -> `diagnose`. See README.md for examples.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from . import influence  # noqa: E402
from .config import PRESETS, SamplerConfig, help_text, preset  # noqa: E402
from .data import DataSpec, Query, load_texts, tokenize_queries, tokenize_texts  # noqa: E402
from .diagnostics import Diagnosis, diagnose  # noqa: E402
from .errors import BIFError  # noqa: E402
from .estimators import Scores, covariance  # noqa: E402
from .examples import Examples, lm_token_loss, score_examples  # noqa: E402
from .models import ModelSpec, generate_completion, load_model  # noqa: E402
from .catalog import delete_run, find_run, list_runs  # noqa: E402
from .replay import add_queries  # noqa: E402
from .runs import Run, compute_run, open_run  # noqa: E402
from .sampler import sample  # noqa: E402
from .trace import LossTrace  # noqa: E402

__all__ = ["PRESETS", "SamplerConfig", "help_text", "preset", "DataSpec", "Query", "load_texts", "tokenize_queries",
           "tokenize_texts", "Diagnosis", "diagnose", "BIFError", "Scores", "covariance", "Examples", "lm_token_loss",
           "score_examples", "ModelSpec", "generate_completion", "load_model", "Run", "add_queries", "compute_run",
           "delete_run", "find_run", "list_runs", "open_run", "sample", "LossTrace", "influence"]
