"""A query: a prompt (context) and the completion whose tokens are explained. Its own module so that the built-in
registry's example queries (bif.lm.queries) and the data module (bif.lm.data) can both use it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bif.errors import DataError


@dataclass(frozen=True)
class Query:
    """A prompt (context) and the completion whose tokens are the observables."""

    prompt: str
    completion: str

    def __post_init__(self) -> None:
        for name in ("prompt", "completion"):
            if not isinstance(getattr(self, name), str):
                raise DataError(f"Query {name} must be text (got {getattr(self, name)!r}); e.g. "
                                "bif.Query('User: what is 3 plus 4?\\nBot:', ' 7').")

    def to_dict(self) -> dict:
        return asdict(self)
