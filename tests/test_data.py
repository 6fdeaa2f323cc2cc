"""Training files in every format, tokenization masks, scored-subset selection."""

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

import bif
from bif.lm.data import scored_indices
from bif.errors import DataError

RECORDS = [{"prompt": "User: hi\nBot:", "completion": " hello"}, {"prompt": "User: bye\nBot:", "completion": " ciao"}]
EXPECTED = ["User: hi\nBot: hello", "User: bye\nBot: ciao"]


def test_every_format_reads_the_same_texts(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in EXPECTED))
    pd.DataFrame(RECORDS).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"text": EXPECTED}).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "e.txt").write_text("\n\n".join(EXPECTED) + "\n")
    for name in ("a.jsonl", "b.jsonl", "c.csv", "d.parquet", "e.txt"):
        assert bif.load_texts(str(tmp_path / name)) == EXPECTED, name
    (tmp_path / "f.txt").write_text("one\ntwo\n\n")  # no blank line between examples: one per line
    assert bif.load_texts(str(tmp_path / "f.txt")) == ["one", "two"]


@pytest.mark.parametrize("content,match", [('{"text": "ok"}\n{"oops"', "invalid JSON on line 2"),
                                           ('{"title": "x"}', "needs a field 'text'"),
                                           ('[1, 2]', "expected an object")])
def test_bad_jsonl_says_where_and_what(tmp_path, content, match):
    (tmp_path / "x.jsonl").write_text(content)
    with pytest.raises(DataError, match=match):
        bif.load_texts(str(tmp_path / "x.jsonl"))


def test_missing_file_and_missing_columns(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        bif.load_texts(str(tmp_path / "none.csv"))
    pd.DataFrame({"body": ["x"]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DataError, match="no column .text.*columns are ..body.."):
        bif.load_texts(str(tmp_path / "x.csv"))


def test_query_mask_covers_the_completion_only(tiny_lm):
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    ex = bif.tokenize_queries(tok, [bif.Query("User: what is 1 plus 2?\nBot:", " 3")], max_length=64)
    n_prompt = len(tok("User: what is 1 plus 2?\nBot:")["input_ids"])
    mask = ex.mask[0].tolist()
    assert mask == [k + 1 >= n_prompt for k in range(len(mask))]
    assert "".join(ex.tokens[0][n_prompt:]) == " 3"


def test_training_texts_are_truncated_and_padded(tiny_lm):
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    ex = bif.tokenize_texts(tok, ["User: what is 1 plus 2?\nBot: 3", "Bot: 1"], max_length=6)
    assert ex.inputs["input_ids"].shape[1] <= 6
    assert ex.mask.sum(1).tolist() == [int(n) - 1 for n in ex.lengths]


def test_scored_subset_is_seeded_and_includes_the_queries_nearest_samples():
    texts = [f"sample {i} about topic {i % 7}" for i in range(100)] + ["the capital of france is paris"]
    spec = bif.DataSpec(n_scored=10, subset_seed=3, nearest_per_query=1)
    idx, how = scored_indices(texts, spec, [bif.Query("What is the capital of France?", " Paris")])
    assert 100 in idx and len(idx) in (10, 11) and "at random (seed 3)" in how
    assert idx == scored_indices(texts, spec, [bif.Query("What is the capital of France?", " Paris")])[0]
    all_idx, how_all = scored_indices(texts, bif.DataSpec(n_scored=None), [])
    assert all_idx == list(range(101)) and how_all == "all 101 training samples"
