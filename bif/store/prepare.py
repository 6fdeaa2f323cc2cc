"""What a run is made of, before it is computed: `prepare` loads the model and the data of a RunRequest, tokenizes
them, picks the scored samples and works out the run's key and the request.json it stores (`Prepared`);
`check_request` refuses arguments of compute_run that are not its typed objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bif.core.config import SamplerConfig
from bif.core.examples import Examples
from bif.core.sampler import Progress
from bif.core.scale import apply_weights_dtype
from bif.lm.data import DataSpec, Query, load_texts, scored_indices, tokenize_queries, tokenize_texts
from bif.lm.models import LoadedModel, ModelSpec, load_model
from bif.lm.registry import DEMO
from bif.store import grow
from bif.store.request import RunRequest


@dataclass
class Prepared:
    """A request made concrete: the loaded model, the tokenized sampling set, scored samples and queries, the key
    and the request.json the run stores."""

    loaded: LoadedModel
    texts: list[str]
    train_all: Examples  # the sampling set (all training texts)
    scored: Examples
    queries: Examples
    how_scored: str
    key: str
    request: dict


def prepare(request: RunRequest, cache_root: Path, progress: Progress | None, device,
            loaded: LoadedModel | None = None) -> Prepared:
    """Load the model and data of a request, tokenize, and work out the run's key (loads the model, unless
    `loaded` is the request's model already loaded on `device` by the caller, e.g. `bif run` checking its inputs)."""
    model, data, queries, config, scale = request.model, request.data, list(request.queries), request.config, \
        request.scale
    if loaded is None or next(loaded.model.parameters()).device != torch.device(device):
        loaded = load_model(model, cache_root, device=device, progress=progress)
    apply_weights_dtype(loaded.model, scale)
    if progress:
        progress({"stage": "data"})
    texts = load_texts(data.source)
    max_len = min(data.max_length, loaded.max_length)
    train_all = tokenize_texts(loaded.tokenizer, texts, max_len)
    idx, how = scored_indices(texts, data, queries)
    if train_all.cut:
        how += (f" {train_all.cut} of {len(texts)} training texts were longer than {max_len} tokens and were cut "
                "to their first tokens (max_length).")
    scored = train_all.subset(idx)
    qex = tokenize_queries(loaded.tokenizer, queries, loaded.max_length)
    fingerprints = {"model": loaded.fingerprint, "train": train_all.fingerprint, "scored": scored.fingerprint,
                    "queries": qex.fingerprint}
    key_parts = request.key_parts(fingerprints)
    stored = {"schema": key_parts["schema"], **request.to_json(), "fingerprints": fingerprints,
              "scored_ids": idx, "how_scored": how, "model_label": loaded.label,
              "n_train": len(texts), "approximate": config.is_approximate, "lineage": grow.lineage(key_parts)}
    return Prepared(loaded, texts, train_all, scored, qex, how, request.key(fingerprints), stored)


def check_request(model, data, queries, config) -> None:
    """ConfigError when the arguments of compute_run are not the typed objects it takes (a dict, a string...)."""
    from bif.errors import ConfigError

    for value, cls, how in ((model, ModelSpec, f"bif.ModelSpec({DEMO!r})"),
                            (data, DataSpec, f"bif.DataSpec({DEMO!r})")):
        if not isinstance(value, cls):
            raise ConfigError(f"expected a {cls.__name__} (got {type(value).__name__}): use {how}.")
    if isinstance(queries, Query):
        raise ConfigError("queries must be a list of bif.Query: write [query].")
    if not isinstance(queries, (list, tuple)) or not all(isinstance(q, Query) for q in queries):
        raise ConfigError(f"queries must be a list of bif.Query(prompt, completion) (got {queries!r:.80}).")
    SamplerConfig.coerce(config)


def texts_json(prep: Prepared) -> dict:
    """texts.json: the scored samples' texts and display tokens, and the queries' tokens."""
    return {"train": prep.scored.texts, "train_tokens": prep.scored.tokens, "query_tokens": prep.queries.tokens}
