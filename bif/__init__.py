"""BIF Explorer's library: local Bayesian influence functions for language models (and any torch model).

Stages: load a model and data -> `compute_run` (localized SGLD + loss traces, cached) -> views in `influence`
(per sample, per token, token × token) with error bars -> `diagnose`. See README.md for examples and
docs/architecture.md for the packages: core (numerics), lm (models and text), store (runs on disk),
dist (several processes), service (background jobs). Importing `bif` changes no global state.
"""

from bif.core import influence
from bif.core.config import PRESETS, SamplerConfig, help_text, preset
from bif.core.diagnostics import Diagnosis, diagnose
from bif.core.estimators import Scores, covariance
from bif.core.examples import Examples, lm_token_loss, score_examples
from bif.core.sampler import sample
from bif.core.trace import LossTrace
from bif.errors import BIFError
from bif.lm.data import DataSpec, Query, load_texts, tokenize_queries, tokenize_texts
from bif.lm.models import ModelSpec, generate_completion, load_model
from bif.store.catalog import delete_run, find_run, list_runs
from bif.store.replay import add_queries, carry_queries
from bif.store.runs import Run, compute_run, open_run

__all__ = ["PRESETS", "SamplerConfig", "help_text", "preset", "DataSpec", "Query", "load_texts", "tokenize_queries",
           "tokenize_texts", "Diagnosis", "diagnose", "BIFError", "Scores", "covariance", "Examples", "lm_token_loss",
           "score_examples", "ModelSpec", "generate_completion", "load_model", "Run", "add_queries", "carry_queries",
           "compute_run", "delete_run", "find_run", "list_runs", "open_run", "sample", "LossTrace", "influence"]
