"""A new question on a finished run, from the CLI (`bif ask`) and the Influence page's ask box."""

import shutil

import bif
from bif.cli import main
from tests.test_app import app, html

OTHER = bif.Query("User: what is 2 plus 2?\nBot:", " 4")


def _copy(tiny_run, tmp_path):
    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    return root, run


def test_cli_ask_uses_stored_draws_and_prints_the_top_samples(tiny_run, tmp_path, capsys):
    root, run = _copy(tiny_run, tmp_path)
    assert main(["--cache", str(root), "ask", run.key, "--prompt", OTHER.prompt, "--completion", OTHER.completion,
                 "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "answered from stored draws" in out and " s\n" in out
    assert "most supporting:" in out and "±" in out
    reopened = bif.open_run(root / "runs" / run.key)
    assert reopened.queries[1] == OTHER and reopened.answered_by(1) == "draws"


def test_cli_ask_without_stored_draws_says_it_replays(tiny_lm, tiny_corpus, tmp_path, capsys):
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
                          [bif.Query("User: what is 3 plus 4?\nBot:", " 7")], bif.preset("smoke", keep_draws="off"),
                          cache_root=tmp_path)
    assert main(["--cache", str(tmp_path), "ask", run.key, "--prompt", OTHER.prompt, "--completion", " 4"]) == 0
    out = capsys.readouterr().out
    assert "no stored draws (keep_draws=off): replaying every SGLD step, about" in out
    assert "answered from replay of every SGLD step" in out
    assert main(["--cache", str(tmp_path), "ask", run.key, "--prompt", "x", "--completion", "y",
                 "--method", "draws"]) == 2
    assert "has no stored draws" in capsys.readouterr().err


def test_influence_page_answers_another_completion_on_the_same_page(tiny_run, tmp_path):
    root, run = _copy(tiny_run, tmp_path)
    at = app(root, "views/influence.py", run=run.key)
    assert "stored its draws" in " ".join(c.value for c in at.caption)
    at.text_area(key="ask_prompt").input(OTHER.prompt)
    at.text_input(key="ask_completion").input(OTHER.completion)
    at.button(key="FormSubmitter:ask-Ask").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="query_pick").value == 1, "the page switched to the new query"
    assert any("Answered from stored draws" in s.value for s in at.success)
    assert "4" in html(at).split("bif-legend")[0], "the new completion is drawn"
    at.text_input(key="ask_completion").input("   ")
    at.button(key="FormSubmitter:ask-Ask").click().run()
    assert any("Type both a prompt and the completion" in e.value for e in at.error)


def test_ask_box_without_stored_draws_offers_a_replay_with_its_estimate(tiny_lm, tiny_corpus, tmp_path):
    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
                          [bif.Query("User: what is 3 plus 4?\nBot:", " 7")], bif.preset("smoke", keep_draws="off"),
                          cache_root=tmp_path)
    at = app(tmp_path, "views/influence.py", run=run.key)
    caption = " ".join(c.value for c in at.caption)
    assert "no stored draws (keep\\_draws=off)" in caption or "no stored draws (keep_draws=off)" in caption
    assert "replaying every SGLD step, about" in caption
    assert at.button(key="FormSubmitter:ask-Start the replay")
