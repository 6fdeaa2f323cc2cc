"""The app under hostile or careless use: URL parameters that point outside the cache, text that is not ASCII or
that carries bidirectional controls, a damaged cached run. Errors are messages that say what to do."""

import html as htmllib
import re
import shutil

import pytest

import bif
from tests.test_app import app, fill_run_page, html, run_with_text

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "\u202eevil" shows as "live"
WORLD = "User: say héllo, שלום and 👋🏽\nBot: héllo " + RLO + "evil"


@pytest.fixture(autouse=True)
def cache_env(monkeypatch, tiny_run):
    monkeypatch.setenv("BIF_CACHE", str(tiny_run[0]))


@pytest.fixture(scope="module")
def world_run(tiny_lm, tmp_path_factory):
    """A run whose last training text and whose query hold accents, Hebrew, an emoji and an RTL override."""
    return run_with_text(tiny_lm, tmp_path_factory.mktemp("world"), WORLD,
                         bif.Query("User: say héllo " + RLO + "evil\nBot:", " héllo"))


@pytest.mark.parametrize("given", ["{dir}", "../../{key}", "{key}/../{key}", "{key} ", "KEY"])
def test_run_parameter_takes_only_a_run_key(tiny_run, given):
    cache, run = tiny_run
    at = app(cache, "views/influence.py", run=given.format(dir=run.dir.resolve(), key=run.key))
    assert at.error and "is not a run key" in at.error[0].value and "bif runs" in at.error[0].value
    assert not at.get("plotly_chart") and not at.get("html"), "nothing is opened from outside a key"


def test_tokens_are_whole_characters_and_bidi_controls_are_visible(world_run):
    root, run = world_run
    tokens = run.train_tokens[-1]
    assert "".join(tokens).startswith("User: say héllo, שלום and 👋🏽") and not any("\ufffd" in t for t in tokens)
    assert not any("\ufffd" in t for t in run.query_tokens(0))
    at = app(root, "views/influence.py", run=run.key, sample=run.train_ids[-1])
    body = html(at)
    shown = htmllib.unescape(re.sub(r"<[^>]+>", "", body.split("</style>")[-1]))
    assert "\ufffd" not in shown and "héllo" in shown and "שלום" in shown and "👋" in shown
    assert RLO not in body and "⟨U+202E⟩evil" in shown
    sidebar = "".join(m.value for m in at.sidebar.markdown)
    assert RLO not in sidebar and "⟨U\\+202E⟩evil" in sidebar  # md_escape escapes the +


def test_a_damaged_cached_run_offers_delete_and_recompute(tiny_run, tiny_lm, tiny_corpus, tmp_path, monkeypatch):
    from bif.service import jobs

    cache, run = tiny_run
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    chain = root / "runs" / run.key / "chain_000.safetensors"
    data = bytearray(chain.read_bytes())
    data[-3] ^= 0xFF
    chain.write_bytes(bytes(data))
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda spec, cache_root: started.append(spec) or "20260101-job")
    at = fill_run_page(app(root), tiny_lm, tiny_corpus)
    assert any("is damaged" in w.value and "chain_000.safetensors" in w.value for w in at.warning)
    assert not any("opens at once" in s.value for s in at.success)
    at.button(key="recompute").click().run()
    assert not at.exception and not (root / "runs" / run.key).exists()
    assert len(started) == 1 and started[0].kind == "run" and started[0].run.queries[0].completion == " 7"


def test_unexpected_errors_on_a_page_are_messages(tiny_run, monkeypatch):
    cache, run = tiny_run
    monkeypatch.setattr(bif.Run, "trace", lambda self, q: (_ for _ in ()).throw(RuntimeError("secret internals")))
    at = app(cache, "views/influence.py", run=run.key)
    text = " ".join(e.value for e in at.error)
    assert "Unexpected problem (RuntimeError)" in text and "secret" not in text and "Internal error" not in text
