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


def test_n_scored_is_the_number_ranked_and_query_neighbours_are_a_named_option():
    texts = [f"sample {i} about topic {i % 7}" for i in range(100)] + ["the capital of france is paris"]
    query = [bif.Query("What is the capital of France?", " Paris")]
    plain, how = scored_indices(texts, bif.DataSpec(n_scored=10, subset_seed=3), query)
    assert len(plain) == 10 and "10 of 101 training samples: 10 at random (seed 3)" in how and "share" not in how
    assert plain == scored_indices(texts, bif.DataSpec(n_scored=10, subset_seed=3), [])[0], "query-independent"
    spec = bif.DataSpec(n_scored=10, subset_seed=3, query_neighbours=1)
    idx, how = scored_indices(texts, spec, query)
    assert 100 in idx and len(idx) == 10, "the neighbour takes one of the 10 places"
    assert "9 at random (seed 3) and 1 chosen because they share most words with the query" in how
    assert "query_neighbours=1" in how and idx == scored_indices(texts, spec, query)[0]
    assert bif.DataSpec(n_scored=None, query_neighbours=8) == bif.DataSpec(n_scored=None), "all ranked: no choice"
    all_idx, how_all = scored_indices(texts, bif.DataSpec(n_scored=None), [])
    assert all_idx == list(range(101)) and how_all == "all 101 training samples"
    with pytest.raises(DataError, match="raise n_scored or lower query_neighbours"):
        scored_indices(texts, bif.DataSpec(n_scored=2, query_neighbours=3), query)


def test_a_request_stored_before_the_rename_still_reads():
    old = {"source": "demo", "max_length": 64, "n_scored": 256, "subset_seed": 0, "nearest_per_query": 8}
    assert bif.DataSpec.from_dict(old) == bif.DataSpec(query_neighbours=8)
    assert bif.DataSpec.from_dict(bif.DataSpec().to_dict()) == bif.DataSpec()
