"""RunRequest: what a run is asked to compute, typed, built once where the choice is made (Run page, CLI, API).

It travels as this object to the job (bif.service.jobs.JobSpec), the worker (serialized once with `to_json`,
parsed once with `from_json`), the cache (`settings_key`, `key`) and the engine (bif.store.runs.compute), whose
sampler gets `config` as is. A run folder stores it in request.json with what the run found out (fingerprints,
scored ids, labels): `from_json` reads the request part of either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from bif.core.config import SamplerConfig
from bif.core.scale import ScaleOptions
from bif.errors import ConfigError
from bif.lm.data import DataSpec, Query
from bif.lm.models import ModelSpec

SCHEMA = 2  # of the cache keys; a new schema gives every run a new key (2: packed SGLD minibatches, bif.core.packing)


def digest(obj) -> str:
    """sha256 (16 hex digits) of obj as sorted JSON: the cache's keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunRequest:
    """A model, its training data, the queries to explain and how to sample. Validated when built."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    queries: tuple[Query, ...] = ()
    config: SamplerConfig = field(default_factory=SamplerConfig)
    scale: ScaleOptions = field(default_factory=ScaleOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))

    def settings_key(self) -> dict:
        """What, besides the files' contents, makes two requests the same run: the settings that shape the
        chains, the storage precisions and the non-default scale options (so older runs keep their keys)."""
        key = {"sampling": self.config.sampling_key(), "storage": [self.config.score_dtype, self.config.trace_dtype]}
        if self.scale.key():
            key["scale"] = self.scale.key()
            # bfloat16 weights pack their SGLD minibatches since the packing check allows for bfloat16 rounding
            # (bif.core.modelcheck); before, they ran padded. A different trajectory: a new key.
            key["packs_low_precision"] = True
        return key

    def key_parts(self, fingerprints: dict) -> dict:
        """The parts of the run's cache key: schema, the fingerprints of model, data and queries, the settings."""
        return {"schema": SCHEMA, "fingerprints": fingerprints, **self.settings_key()}

    def key(self, fingerprints: dict) -> str:
        """The run's cache key (its folder name under runs/)."""
        return digest(self.key_parts(fingerprints))

    def with_queries(self, queries) -> "RunRequest":
        return replace(self, queries=tuple(queries))

    def to_json(self) -> dict:
        out = {"model": self.model.to_dict(), "data": self.data.to_dict(),
               "queries": [q.to_dict() for q in self.queries], "config": self.config.to_dict()}
        if self.scale.key():
            out["scale"] = self.scale.key()
        return out

    @classmethod
    def from_json(cls, d: dict) -> "RunRequest":
        """The request in a dict written by `to_json` (or a run's request.json); ConfigError if malformed."""
        try:
            return cls(model=ModelSpec(**(d.get("model") or {})), data=DataSpec.from_dict(d.get("data") or {}),
                       queries=tuple(Query(**q) for q in d.get("queries") or []),
                       config=SamplerConfig.from_dict(d.get("config") or {}),
                       scale=ScaleOptions(**(d.get("scale") or {})))
        except (TypeError, AttributeError) as e:
            raise ConfigError(f"Not a run request ({e}).") from e
