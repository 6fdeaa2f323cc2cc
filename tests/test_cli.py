"""The command line on the tiny model: run, top, export (CSV and JSON), runs, verify, delete, and a clear error."""

import csv
import json
import os
import subprocess
import sys

PROMPT = "User: what is 3 plus 4?\nBot:"


def cli(*args, cache):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bif", "--cache", str(cache), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_run_top_export_delete(tiny_lm, tiny_corpus, tmp_path):
    r = cli("run", "--model", str(tiny_lm), "--data", str(tiny_corpus), "--n-scored", "0", "--prompt", PROMPT,
            "--completion", " 7", "--preset", "smoke", "--set", "draws=12", "-k", "2", "--procs", "1",
            cache=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "most supporting" in r.stdout and "most opposing" in r.stdout and "±" in r.stdout
    key = r.stdout.split("run ", 1)[1].split()[0]
    top = cli("top", key, cache=tmp_path).stdout
    assert "most supporting" in top and "≥ 4 chains" in top, "a 2-chain run says why it has no findings"
    assert "No findings are possible in this run: it has 2 chains" in top and "Null check: not applicable" in top
    out = tmp_path / "s.csv"
    assert cli("export", key, "--format", "csv", "--out", str(out), cache=tmp_path).returncode == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 40 and {"support", "support_se", "bif", "stands_out", "text"} <= set(rows[0])
    assert rows[0]["run_key"] == key and rows[0]["prompt"] == PROMPT and rows[0]["completion"] == " 7"
    j = json.loads(cli("export", key, "--format", "json", cache=tmp_path).stdout)
    assert j["context"]["settings"]["draws"] == 12 and len(j["rows"]) == 40
    assert key in cli("runs", cache=tmp_path).stdout
    v = cli("verify", cache=tmp_path)
    assert v.returncode == 0 and f"{key}  intact" in v.stdout
    chain = tmp_path / "runs" / key / "chain_000.safetensors"
    data = bytearray(chain.read_bytes())
    data[-3] ^= 0xFF
    chain.write_bytes(bytes(data))
    v = cli("verify", key, cache=tmp_path)
    assert v.returncode == 1 and "CORRUPT: chain_000.safetensors" in v.stdout
    assert cli("delete", key, cache=tmp_path).returncode == 0
    assert key not in cli("runs", cache=tmp_path).stdout


def test_user_errors_print_a_message_not_a_traceback(tmp_path):
    r = cli("run", "--model", str(tmp_path / "missing"), "--prompt", "hi", "--completion", " there", cache=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", "--model", str(tmp_path), "--prompt", "hi", "--completion", " x", "--set", "gamma=0",
            cache=tmp_path)
    assert r.returncode == 2 and "gamma" in r.stderr and "Traceback" not in r.stderr


def test_two_processes_give_the_same_run_and_clean_errors(tiny_lm, tiny_corpus, tmp_path):
    args = ("run", "--model", str(tiny_lm), "--data", str(tiny_corpus), "--n-scored", "0", "--prompt", PROMPT,
            "--completion", " 7", "--preset", "smoke", "-k", "2")
    one = cli(*args, "--procs", "1", cache=tmp_path / "one")
    two = cli(*args, "--procs", "2", cache=tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert "distributed: 2 processes" in two.stdout
    tops = [r.stdout[r.stdout.index("most supporting"):] for r in (one, two)]
    assert tops[0] == tops[1], "the same scores whatever the number of processes"
    bad = cli(*args, "--procs", "2", "--set", "nbeta=1e8", "--set", "step_size=0.01", cache=tmp_path / "bad")
    assert bad.returncode == 2 and bad.stderr.startswith("error: Chain") and "Traceback" not in bad.stderr


def test_a_sampling_process_keeps_freed_memory_for_reuse():
    import sys

    import pytest

    from bif.core.allocator import keep_freed_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt only")
    assert keep_freed_memory()  # glibc took both thresholds
