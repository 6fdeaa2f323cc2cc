"""`bif run` loads its model once, with the same result; `bif bench --peer devinterp` is optional and says how to
install the peer when it is missing (bench/peer.py; the measurement itself is in the README, not a test)."""

import os
import subprocess
import sys

import numpy as np

import bif
from bif.core.scale import ScaleOptions
from bif.store import prepare, runs
from bif.store.request import RunRequest

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


def test_a_run_given_the_loaded_model_does_not_load_it_again_and_equals_one_that_loads_it(
        tiny_lm, tiny_corpus, tmp_path, monkeypatch):
    spec, data = bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None)
    request = RunRequest(spec, data, (QUERY,), bif.preset("smoke"), ScaleOptions())
    loaded_itself = runs.compute(request, tmp_path / "a")
    loaded = bif.load_model(spec, tmp_path / "b")
    calls = []
    monkeypatch.setattr(prepare, "load_model", lambda *a, **k: calls.append(a))
    given = runs.compute(request, tmp_path / "b", loaded=loaded)
    assert calls == [], "the model the caller loaded is used, not loaded again"
    assert given.key == loaded_itself.key
    for name in ("train_losses", "train_init", "sampling_loss"):
        np.testing.assert_array_equal(getattr(given, name), getattr(loaded_itself, name))  # bitwise
    np.testing.assert_array_equal(given.query_sets[0].losses, loaded_itself.query_sets[0].losses)


def test_the_peer_benchmark_without_devinterp_says_how_to_install_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bif", "--cache", str(tmp_path), "bench", "--peer", "devinterp",
                        "--peer-python", str(tmp_path / "no-such-python")], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "devinterp is not importable" in lines[0]
    assert "pip install torch==2.13.0 devinterp==2.0.1 -r requirements.txt" in lines[0]
