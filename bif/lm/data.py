"""Training sets and queries -> `Examples` of token ids with loss masks.

Training files: .txt (one example per paragraph, or per line when there are no blank lines), .jsonl (a `text`
field, or `prompt` + `completion`), .csv and .parquet (the same columns). Every training token is observed;
a query observes only its completion (the prompt is context).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bif.errors import DataError
from bif.core.examples import Examples, tensor_fingerprint
from bif.lm import registry
from bif.lm.query import Query

FORMATS = (".txt", ".jsonl", ".csv", ".parquet")


@dataclass(frozen=True)
class DataSpec:
    """Which training data, how it is cut, and which of it is ranked (scored at every draw).

    `n_scored` is the number of training samples ranked (None = all). By default they are a seeded random subset,
    which does not depend on the query. `query_neighbours` = k lets the k samples sharing most words with each query
    take places in that subset: a convenience for exploring one completion (the app's demo uses it), never for
    judging retrieval, since a known source is then ranked because the query chose it.
    """

    source: str = registry.DEMO  # a built-in's name (bif.lm.registry) or a path to a .txt/.jsonl/.csv/.parquet file
    max_length: int = 64  # tokens per training example (longer ones are truncated)
    n_scored: int | None = 256  # training samples ranked (None = all); the others only drive SGLD
    subset_seed: int = 0  # which random subset is ranked
    query_neighbours: int = 0  # per query, this many samples sharing most words with it are among the ranked

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise DataError(f"source must be {registry.names(registry.DATA)} or a file path (text), got "
                            f"{self.source!r}.")
        for name in ("max_length", "subset_seed", "query_neighbours") + (("n_scored",) if self.n_scored is not None
                                                                          else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise DataError(f"{name} must be a whole number (got {v!r}).")
        if self.max_length < 2:
            raise DataError("max_length must be at least 2 tokens.")
        if self.n_scored is not None and self.n_scored < 2:
            raise DataError("n_scored must be at least 2 (or None for all samples).")
        if self.query_neighbours < 0:
            raise DataError("query_neighbours must be ≥ 0.")
        if self.n_scored is None:  # every sample is ranked: no place is left to choose, so the option means nothing
            object.__setattr__(self, "query_neighbours", 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        """From `to_dict()`; a request stored before the rename names `query_neighbours` 'nearest_per_query'."""
        d = dict(d)
        if "nearest_per_query" in d:
            d["query_neighbours"] = d.pop("nearest_per_query")
        return cls(**d)


def source_mtime(source: str) -> float:
    """When a training source last changed on disk (seconds since the epoch); 0.0 for a built-in or a missing file.
    A key for caching what is read from it."""
    path = Path(source).expanduser()
    return path.stat().st_mtime if registry.data(source) is None and path.exists() else 0.0


def load_texts(source: str) -> list[str]:
    """The training texts of a source (a built-in's name or a file path), in file order. DataError on any problem."""
    built_in = registry.data(source)
    if built_in:
        return built_in.texts()
    path = Path(source).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise DataError(f"Unknown training file format {path.suffix or '(none)'!r} for {path.name!r}. "
                        f"Use one of {', '.join(FORMATS)}.")
    if not path.is_file():
        raise DataError(f"Training file {str(path)!r} does not exist.")
    try:
        if path.suffix.lower() == ".txt":
            raw = path.read_text(encoding="utf-8").strip()
            parts = re.split(r"\n\s*\n", raw) if re.search(r"\n\s*\n", raw) else raw.splitlines()
            texts = [p.strip() for p in parts]
        elif path.suffix.lower() == ".jsonl":
            texts = [_record_text(_json_line(line, i + 1), f"line {i + 1}")
                     for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()) if line.strip()]
        else:
            import pandas as pd
            frame = (pd.read_csv(path, dtype=str, keep_default_na=False) if path.suffix.lower() == ".csv"
                     else pd.read_parquet(path))
            if not ({"text"} <= set(frame.columns) or {"prompt", "completion"} <= set(frame.columns)):
                raise DataError(f"{path.name!r} has no column 'text' (or 'prompt' and 'completion'); its columns are "
                                f"{[str(c) for c in frame.columns][:8]}. The first line must name the columns, "
                                "e.g. text.")
            # a CSV row is counted from the header line (row 1), as a spreadsheet shows it
            texts = [_record_text(r, f"row {i + 2}") for i, r in enumerate(frame.to_dict("records"))]
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(f"{path.name!r} is not UTF-8 text ({e.reason}). Save it as UTF-8.") from e
    except Exception as e:  # pandas/pyarrow raise many types for damaged files
        raise DataError(f"Could not read {path.name!r}: {e}") from e
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise DataError(f"{path.name!r} holds no non-empty training text.")
    return texts


def _json_line(line: str, number: int):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON on line {number}: {e.msg}. Write one JSON object per line.") from e


def _record_text(rec, where: str) -> str:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with 'text' or 'prompt'/'completion', got {type(rec).__name__}.")
    fields = ["text"] if "text" in rec else ["prompt", "completion"]
    missing = [f for f in fields if f not in rec]
    if missing:
        raise DataError(f"{where}: needs a field 'text', or 'prompt' and 'completion'. Found "
                        f"{sorted(map(str, rec))[:8]}.")
    for f in fields:
        v = rec[f]
        if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
            raise DataError(f"{where}: the {f!r} cell is empty. Fill it in or delete the row.")
        if not isinstance(v, str):
            raise DataError(f"{where}: {f!r} must be text, got {type(v).__name__} {str(v)[:40]}. Write it as a "
                            f"string, e.g. \"{f}\": \"{str(v)[:20]}\".")
    return rec["text"] if fields == ["text"] else rec["prompt"] + rec["completion"]


def _token_strings(tokenizer, ids: list[int]) -> list[str]:
    """Display text of each token: valid text, never a half character.

    A byte-level tokenizer may split one character (é, א, an emoji) over several tokens; decoded one id at a
    time each piece would show as "�". The pieces are decoded together: the token that completes the character
    shows it whole, the tokens before it show "" (drawn as a thin '·', their scores kept on their own positions).
    Joined, the strings are the decoded text.
    """
    out: list[str] = []
    start = 0  # first token not yet shown
    for i in range(len(ids)):
        text = tokenizer.decode(ids[start:i + 1])
        if text.endswith("\ufffd") and i + 1 < len(ids) and i - start < 3:  # a character's bytes continue
            out.append("")
            continue
        out.append(text)
        start = i + 1
    return out


def _pack(rows: list[list[int]], masks: list[list[bool]], pad_id: int, texts: list[str], tokenizer,
          ids: list[int] | None = None) -> Examples:
    T = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attention = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T - 1, dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        input_ids[i, : len(r)] = torch.tensor(r)
        attention[i, : len(r)] = 1
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    return Examples(inputs={"input_ids": input_ids, "attention_mask": attention}, mask=mask,
                    lengths=attention.sum(1), texts=texts, tokens=[_token_strings(tokenizer, r) for r in rows], ids=ids,
                    fingerprint=tensor_fingerprint([input_ids, mask]))


CHARS_PER_TOKEN = 32  # a text is cut to max_length x this many characters before tokenizing (a bound on memory)


def tokenize_texts(tokenizer, texts: list[str], max_length: int, ids: list[int] | None = None) -> Examples:
    """Training texts -> Examples (n, T) with every next-token position observed. EOS is appended when known.

    A text longer than max_length tokens is cut to its first max_length tokens; it is cut to max_length x
    CHARS_PER_TOKEN characters first, so that a huge line costs no more than a long one. `Examples.cut` counts
    the texts that were cut (said in the run's `how_scored`)."""
    rows, cut = [], 0
    for t in texts:
        bound = max_length * CHARS_PER_TOKEN
        r = tokenizer(t[:bound], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            r = r + [tokenizer.eos_token_id]
        cut += len(t) > bound or len(r) > max_length
        rows.append(r[:max_length])
    short = [i for i, r in enumerate(rows) if len(r) < 2]
    if short:
        raise DataError(f"{len(short)} training text(s) give fewer than 2 tokens (first: #{short[0]}).")
    ex = _pack(rows, [[True] * (len(r) - 1) for r in rows], tokenizer.pad_token_id, list(texts), tokenizer, ids)
    ex.cut = cut
    return ex


def tokenize_queries(tokenizer, queries: list[Query], max_length: int) -> Examples:
    """Queries -> Examples where only positions predicting completion tokens are observed."""
    if not queries:
        raise DataError("Give at least one query (a prompt and a completion).")
    rows, masks = [], []
    for i, q in enumerate(queries):
        if not q.completion.strip():
            raise DataError(f"Query {i + 1} has an empty completion. Type one, or generate it with the model.")
        p = tokenizer(q.prompt, add_special_tokens=True)["input_ids"] if q.prompt else []
        c = tokenizer(q.completion, add_special_tokens=False)["input_ids"]
        if not p:
            p, c = c[:1], c[1:]  # without a prompt the first token has no context to be predicted from
            if not c:
                raise DataError(f"Query {i + 1}: a completion without a prompt needs at least 2 tokens.")
        if len(p) + len(c) > max_length:
            raise DataError(f"Query {i + 1} is {len(p) + len(c)} tokens long; the model's context is {max_length}. "
                            "Shorten the prompt or the completion.")
        rows.append(p + c)
        masks.append([k + 1 >= len(p) for k in range(len(p) + len(c) - 1)])
    return _pack(rows, masks, tokenizer.pad_token_id, [q.prompt + q.completion for q in queries], tokenizer)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def scored_indices(texts: list[str], spec: DataSpec, queries: list[Query]) -> tuple[list[int], str]:
    """Which training samples are ranked (exactly `spec.n_scored`, or all), and a sentence saying how they were
    chosen (shown in every view and by `bif top`)."""
    n = len(texts)
    if spec.n_scored is None or spec.n_scored >= n:
        return list(range(n)), f"all {n} training samples"
    near = set()
    if spec.query_neighbours:
        words = [_words(t) for t in texts]
        for q in queries:
            qw = _words(q.prompt + " " + q.completion)
            overlap = [len(qw & w) / (len(qw | w) or 1) for w in words]
            near |= set(sorted(range(n), key=lambda i: -overlap[i])[: spec.query_neighbours])
    if len(near) > spec.n_scored:
        raise DataError(f"query_neighbours={spec.query_neighbours} for {len(queries)} queries asks for {len(near)} "
                        f"ranked samples, more than n_scored={spec.n_scored}: raise n_scored or lower query_neighbours.")
    g = torch.Generator().manual_seed(spec.subset_seed)
    order = [i for i in torch.randperm(n, generator=g).tolist() if i not in near]
    idx = sorted(near | set(order[: spec.n_scored - len(near)]))
    how = f"{len(idx)} of {n} training samples: {len(idx) - len(near)} at random (seed {spec.subset_seed})"
    if near:
        how += (f" and {len(near)} chosen because they share most words with the "
                f"{'query' if len(queries) == 1 else 'queries'} (query_neighbours={spec.query_neighbours}; such a "
                "set depends on the query, so where a known source ranks in it is no retrieval measure)")
    return idx, how + ". The other samples drive the sampler but are not ranked (an approximation)."
