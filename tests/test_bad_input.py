"""Bad input through the CLI and the Python API: each gets one line that says what is wrong and what to do.

The table CASES is the specification: (where, what was given, how to reproduce it, a fragment the message must
contain). `test_bad_input_table` runs every case and checks docs/bad-input.md against the messages it collected,
so the document stays true; regenerate it with `BIF_WRITE_DOCS=1 python -m pytest tests/test_bad_input.py`.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

import bif
from bif import cli
from bif.errors import BIFError, user_message

DOC = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"
PROMPT = "User: what is 3 plus 4?\nBot:"


class Ctx:
    """What the cases need: the tiny model and corpus, a finished run, a scratch folder, the CLI."""

    def __init__(self, tiny_run, tiny_lm, tiny_corpus, tmp, capsys):
        self.cache, self.run = tiny_run
        self.lm, self.corpus, self.tmp, self.capsys = Path(tiny_lm), Path(tiny_corpus), tmp, capsys

    def cli(self, *argv) -> str:
        """The CLI's one-line error (stderr) for argv; fails the case if it exits 0 or prints a traceback."""
        self.capsys.readouterr()
        try:
            rc = cli.main(["--cache", str(self.cache), *argv])
        except SystemExit as e:  # argparse
            rc = e.code
        err = self.capsys.readouterr().err.strip()
        assert rc == 2 and "Traceback" not in err, (rc, err)
        return err.splitlines()[-1]

    def run_args(self, *extra, model=None, data=None):
        return ("run", "--model", str(model or self.lm), "--data", str(data or self.corpus), "--n-scored", "0",
                "--prompt", PROMPT, "--completion", " 7", "--preset", "smoke", "--procs", "1", *extra)

    def model_copy(self, name, edit) -> Path:
        d = self.tmp / name
        shutil.copytree(self.lm, d)
        edit(d)
        return d

    def file(self, name, text) -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p


def api(fn) -> str:
    """The message of the BIFError that fn raises (fails the case if it raises anything else or nothing)."""
    try:
        fn()
    except BIFError as e:
        return user_message(e)
    raise AssertionError("no error raised")


def _config_type(d: Path, model_type: str) -> None:
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": model_type}))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _plant_bin(d: Path) -> None:
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")  # a pickle that runs code


# (where, input, reproduce(ctx) -> message, fragment the message must contain)
CASES = [
    ("CLI", "`--procs abc`", lambda c: c.cli(*c.run_args("--procs", "abc")), "give a number of processes"),
    ("CLI", "`--procs 99` (more than the cores)", lambda c: c.cli(*c.run_args("--procs", "99")),
     "CPU cores; use 1 to"),
    ("CLI", "`--set draws=`", lambda c: c.cli(*c.run_args("--set", "draws=")), "give a value after '='"),
    ("CLI", "`--set draws=1e`", lambda c: c.cli(*c.run_args("--set", "draws=1e")), "'1e' is not a number"),
    ("CLI", "`--set draws=12.5`", lambda c: c.cli(*c.run_args("--set", "draws=12.5")), "must be a whole number"),
    ("CLI", "`--set gamma=0`", lambda c: c.cli(*c.run_args("--set", "gamma=0")), "gamma=0 must be > 0"),
    ("CLI", "`--set colour=red`", lambda c: c.cli(*c.run_args("--set", "colour=red")), "unknown setting"),
    ("CLI", "`-k -3`", lambda c: c.cli(*c.run_args("-k", "-3")), "too small: use 1 or more"),
    ("CLI", "`--max-length 1`", lambda c: c.cli(*c.run_args("--max-length", "1")), "too small: use 2 or more"),
    ("CLI", "`--cache` pointing at a file",
     lambda c: c.cli("--cache", str(c.corpus), "runs"), "is a file, not a folder"),
    ("CLI", "`run --prompt \"\"` without `--completion`",
     lambda c: c.cli("run", "--model", str(c.lm), "--data", str(c.corpus), "--prompt", "", "--procs", "1"),
     "An empty --prompt"),
    ("CLI", "`top KEY --query 99`", lambda c: c.cli("top", c.run.key, "--query", "99"), "this run has 1 query"),
    ("CLI", "`top KEY --token 999`", lambda c: c.cli("top", c.run.key, "--token", "999"),
     "not a completion position"),
    ("CLI", "`top KEY --token -1`", lambda c: c.cli("top", c.run.key, "--token", "-1"), "too small: use 0 or more"),
    ("CLI", "`top` with an unknown run key", lambda c: c.cli("top", "0123456789abcdef"),
     "`bif runs` lists them"),
    ("CLI", "`top nope` (neither a run key nor a run folder)", lambda c: c.cli("top", "nope"), "is not a run key"),
    ("CLI", "`top /etc` (a folder that is not a run)", lambda c: c.cli("top", "/etc"), "is not complete"),
    ("CLI", "`delete` with an unknown run key", lambda c: c.cli("delete", "0123456789abcdef"),
     "`bif runs` lists them"),
    ("CLI", "`export --out` into a missing folder",
     lambda c: c.cli("export", c.run.key, "--out", str(c.tmp / "no" / "such" / "x.csv")), "does not exist"),
    ("CLI", "`export --out` a folder", lambda c: c.cli("export", c.run.key, "--out", str(c.tmp)), "is a folder"),
    ("CLI", "`export --out /proc/x.csv`", lambda c: c.cli("export", c.run.key, "--out", "/proc/x.csv"),
     "a system path"),
    ("CLI", "`--model` a missing folder", lambda c: c.cli(*c.run_args(model=c.tmp / "missing")), "does not exist"),
    ("CLI", "`--model` a file (config.json)", lambda c: c.cli(*c.run_args(model=c.lm / "config.json")),
     "is a file; give the model's folder"),
    ("CLI", "`--model` whose config.json says `model_type: bert`",
     lambda c: c.cli(*c.run_args(model=c.model_copy("bert", lambda d: _config_type(d, "bert")))),
     "do not match its config"),
    ("CLI", "`--model` of a model that is not a causal LM (`t5`)",
     lambda c: c.cli(*c.run_args(model=c.model_copy("t5", lambda d: _config_type(d, "t5")))),
     "not a causal (next-token) language model"),
    ("CLI", "`--model` with a truncated model.safetensors",
     lambda c: c.cli(*c.run_args(model=c.model_copy("trunc", lambda d: _truncate(d / "model.safetensors")))),
     "are damaged or incomplete"),
    ("CLI", "`--model` with only a planted pytorch_model.bin",
     lambda c: c.cli(*c.run_args(model=c.model_copy("pickle", _plant_bin))), "pickle weight files are refused"),
    ("CLI", "`--data` a CSV with an empty cell",
     lambda c: c.cli(*c.run_args(data=c.file("e.csv", "text\nhello there\n\"\"\nbye now\n"))),
     "row 3: the 'text' cell is empty"),
    ("CLI", "`--data` a jsonl with `\"text\": 5`",
     lambda c: c.cli(*c.run_args(data=c.file("n.jsonl", '{"text": "hi there"}\n{"text": 5}\n'))),
     "line 2: 'text' must be text, got int 5"),
    ("CLI", "`--data` a CSV of numbers (no header)",
     lambda c: c.cli(*c.run_args(data=c.file("num.csv", "1,2\n3,4\n"))), "has no column 'text'"),
    ("CLI", "`--data` an unknown format", lambda c: c.cli(*c.run_args(data=c.file("x.docx", "hi"))),
     "Unknown training file format"),
    ("API", "`SamplerConfig(device=5)`", lambda c: api(lambda: bif.SamplerConfig(device=5)), "device must be text"),
    ("API", "`preset('smoke', foo=1)`", lambda c: api(lambda: bif.preset("smoke", foo=1)),
     "Unknown sampler settings: ['foo']"),
    ("API", "`preset('fast')`", lambda c: api(lambda: bif.preset("fast")), "Unknown preset 'fast'"),
    ("API", "`DataSpec('demo', max_length='abc')`", lambda c: api(lambda: bif.DataSpec("demo", max_length="abc")),
     "max_length must be a whole number"),
    ("API", "`Query(None, ' 7')`", lambda c: api(lambda: bif.Query(None, " 7")), "Query prompt must be text"),
    ("API", "`compute_run(..., config={'draws': 10})` (a dict)",
     lambda c: api(lambda: bif.compute_run(bif.ModelSpec(str(c.lm)), bif.DataSpec(str(c.corpus)),
                                           [bif.Query(PROMPT, " 7")], {"draws": 10}, c.tmp)),
     "must be a bif.SamplerConfig (got dict)"),
    ("API", "`compute_run(..., queries=Query(...))` (not a list)",
     lambda c: api(lambda: bif.compute_run(bif.ModelSpec(str(c.lm)), bif.DataSpec(str(c.corpus)),
                                           bif.Query(PROMPT, " 7"), bif.preset("smoke"), c.tmp)),
     "write [query]"),
    ("API", "`run.trace(5)` on a run with 1 query", lambda c: api(lambda: c.run.trace(5)), "out of range"),
    ("API", "`influence.samples(trace, 0, token=999)`",
     lambda c: api(lambda: bif.influence.samples(c.run.trace(0)[0], 0, token=999)), "[999] of query 0 are not"),
    ("API", "`influence.train_tokens(trace, sample=-1, query=0)`",
     lambda c: api(lambda: bif.influence.train_tokens(c.run.trace(0)[0], -1, 0)), "training sample -1 is out of"),
    ("API", "`scores.top(5, sign='bogus')`",
     lambda c: api(lambda: bif.influence.samples(c.run.trace(0)[0], 0).top(5, sign="bogus")),
     "sign must be 'support' or 'oppose'"),
    ("API", "`open_run` of a folder that is not a finished run", lambda c: api(lambda: bif.open_run(c.tmp / "notarun")),
     "is not complete"),
    ("API", "`delete_run('../..')`", lambda c: api(lambda: bif.delete_run("../..", c.cache)), "is not a run key"),
]


def normalize(text: str, ctx: Ctx) -> str:
    """A message with this machine's paths and core count replaced, so the table is the same everywhere."""
    out = text.replace(str(ctx.tmp), "<tmp>").replace(str(Path(ctx.cache).resolve()), "<cache>")
    out = out.replace(str(ctx.cache), "<cache>").replace(str(ctx.corpus), "<corpus>").replace(str(ctx.lm), "<model>")
    out = out.replace(ctx.run.key, "KEY")
    return re.sub(r"this machine has \d+ CPU cores; use 1 to \d+", "this machine has N CPU cores; use 1 to N", out)


def render(rows: list[tuple[str, str, str]]) -> str:
    lines = ["# Bad input and what BIF says", "",
             "Generated by tests/test_bad_input.py from the messages the code prints today (the test fails when "
             "this file", "is out of date; regenerate it with `BIF_WRITE_DOCS=1 python -m pytest "
             "tests/test_bad_input.py`). `<tmp>`, `<model>`,", "`<corpus>`, `<cache>` and KEY stand for the paths "
             "and run key of the test. Every error is one line (no traceback):", "the CLI prints it after "
             "`error:` and exits with status 2; the API raises a `bif.BIFError` subclass with this message.", "",
             "| where | input | message |", "|---|---|---|"]
    for where, given, message in rows:
        cell = message.replace("|", "\\|")
        lines.append(f"| {where} | {given} | {cell} |")
    return "\n".join(lines) + "\n"


def test_bad_input_table(tiny_run, tiny_lm, tiny_corpus, tmp_path, capsys):
    ctx = Ctx(tiny_run, tiny_lm, tiny_corpus, tmp_path, capsys)
    rows, wrong = [], []
    for where, given, reproduce, fragment in CASES:
        try:
            message = reproduce(ctx)
        except AssertionError as e:
            wrong.append(f"{given}: {e}")
            continue
        if fragment not in message or "\n" in message:
            wrong.append(f"{given}: {message!r} lacks {fragment!r}")
        rows.append((where, given, normalize(message.removeprefix("error: "), ctx)))
    assert not wrong, "\n".join(wrong)
    text = render(rows)
    if os.environ.get("BIF_WRITE_DOCS"):
        DOC.write_text(text)
    assert DOC.read_text() == text, "docs/bad-input.md is out of date: BIF_WRITE_DOCS=1 python -m pytest " \
                                    "tests/test_bad_input.py"


@pytest.mark.parametrize("item,value", [("step_size=.0001", 1e-4), ("step_size=1e-4", 1e-4), ("draws=2e2", 200),
                                        ("draws= 200", 200), ("nbeta=300", 300.0)])
def test_set_accepts_every_way_of_writing_a_number(item, value):
    from bif.core.config import parse_settings

    key = item.split("=")[0]
    got = parse_settings([item])[key]
    assert got == value and type(got) is type(value)
    bif.preset("smoke", **parse_settings([item]))  # and the preset takes it


def test_divergence_advice_never_asks_for_gamma_beyond_its_maximum():
    from bif.core.config import GAMMA_MAX

    assert "raise gamma" in bif.preset("smoke").stabilize_advice()
    at_max = bif.preset("smoke", gamma=GAMMA_MAX).stabilize_advice()
    assert "raise gamma" not in at_max and "maximum" in at_max


def test_a_huge_line_is_cut_before_tokenizing_and_the_cut_is_said(tiny_lm, tmp_path):
    from bif.lm import data

    loaded = bif.load_model(bif.ModelSpec(str(tiny_lm)))
    seen = []
    tok = loaded.tokenizer

    class Spy:  # the tokenizer, recording how much text it was given
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, text, **kw):
            seen.append(len(text))
            return tok(text, **kw)

    huge = "User: what is 1 plus 1? " * 2_000_000  # a 48 MB single line
    ex = data.tokenize_texts(Spy(), ["short one", huge], max_length=16)
    assert max(seen) <= 16 * data.CHARS_PER_TOKEN and ex.cut == 1 and ex.inputs["input_ids"].shape[1] == 16
    path = tmp_path / "big.txt"
    path.write_text("User: what is 3 plus 4?\nBot: 7\n\n" + huge[:100_000])
    from bif.store.request import RunRequest
    from bif.store.runs import prepare

    prep = prepare(RunRequest(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(path), n_scored=None, max_length=16),
                              (bif.Query(PROMPT, " 7"),), bif.preset("smoke")), tmp_path, None, "cpu")
    assert "1 of 2 training texts were longer than 16 tokens and were cut" in prep.how_scored


def test_export_to_a_read_only_place_is_a_message(tiny_run, capsys, monkeypatch, tmp_path):
    import builtins
    import errno

    real = builtins.open

    def read_only(path, mode="r", *a, **k):
        if "w" in mode and str(path).startswith(str(tmp_path)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", read_only)
    rc = cli.main(["--cache", str(tiny_run[0]), "export", tiny_run[1].key, "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write there (Read-only file system)" in err and "Traceback" not in err


def test_unexpected_errors_are_one_line_without_internals():
    message = user_message(RuntimeError("secret internals\nline two"), log="job.log")
    assert "\n" not in message and "secret" not in message and "job.log" in message and "resumes" in message
    assert user_message(PermissionError(13, "Permission denied", "/x")).startswith("No permission to use '/x'")
