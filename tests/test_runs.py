"""The run cache: round trip, reuse, corruption, interruption and resume, concurrency, replay, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bif
from bif.errors import CacheError, Cancelled, ConfigError, DataError, ModelNotFound, ReplayMismatch

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")
OTHER = bif.Query("User: what is 2 plus 2?\nBot:", " 4")


def request(tiny_lm, tiny_corpus, **cfg):
    return (bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None),
            [QUERY], bif.preset("smoke", **cfg))


def snapshot(cache: Path) -> dict:
    """mtime of every stored file, except VERIFIED (the record of which files were last found intact, which an
    open may update)."""
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*")
            if p.is_file() and p.name != "VERIFIED"}


def test_round_trip_and_reuse(tiny_run):
    cache, run = tiny_run
    assert run.train_losses.shape == (2, 10, 40, run.train_mask.shape[1])
    assert run.sampling_loss.shape == (2, 15)
    assert run.request["how_scored"] == "all 40 training samples"
    before = snapshot(cache)
    again = bif.compute_run(bif.ModelSpec(run.request["model"]["name_or_path"]),
                            bif.DataSpec(**run.request["data"]), [QUERY], run.config, cache_root=cache)
    assert again.key == run.key and snapshot(cache) == before, "a cached run must open, not recompute"
    np.testing.assert_array_equal(again.train_losses, run.train_losses)
    assert bif.find_run(bif.ModelSpec(run.request["model"]["name_or_path"]), bif.DataSpec(**run.request["data"]),
                        [QUERY], run.config, cache) == run.dir


def test_corruption_is_detected(tiny_lm, tiny_corpus, tmp_path):
    run = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path)
    chain = run.dir / "chain_001.safetensors"
    data = bytearray(chain.read_bytes())
    data[-5] ^= 0xFF
    chain.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="corrupt"):
        bif.open_run(run.dir)


def test_reopening_hashes_only_files_whose_size_or_mtime_changed(tiny_lm, tiny_corpus, tmp_path, monkeypatch):
    from bif.core import files

    run = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path)
    old = run.dir.stat().st_mtime - 60  # older than files.RACY_S, so a verified file's stamp may be recorded
    for p in run.dir.iterdir():
        os.utime(p, (old, old))
    hashed = []
    monkeypatch.setattr(files, "sha256", lambda p, real=files.sha256: hashed.append(Path(p).name) or real(p))
    bif.open_run(run.dir)
    assert "chain_000.safetensors" in hashed, "the first open after sealing checks every file"
    hashed.clear()
    bif.open_run(run.dir)
    assert hashed == [], "an unchanged run is not read again"
    def flip_a_byte(path):  # same size, new mtime
        data = bytearray(path.read_bytes())
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))

    flip_a_byte(run.dir / "chain_001.safetensors")
    with pytest.raises(CacheError, match="corrupt"):
        bif.open_run(run.dir)
    assert hashed == ["chain_001.safetensors"]
    hidden = run.dir / "chain_000.safetensors"
    flip_a_byte(hidden)
    os.utime(hidden, (old, old))  # an edit that hides itself: same size and mtime as the intact file
    with pytest.raises(CacheError, match=r"\['chain_001.safetensors'\]"):
        bif.open_run(run.dir)  # the stat check misses chain_000 ...
    with pytest.raises(CacheError, match="chain_000.safetensors', 'chain_001"):
        bif.open_run(run.dir, verify="full")  # ... hashing everything does not


def test_interrupted_run_resumes_chain_by_chain_and_equals_uninterrupted(tiny_lm, tiny_corpus, tmp_path):
    def cancel_in_second_chain(ev):
        if ev.get("chain") == 1:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path / "a", progress=cancel_in_second_chain)
    run_dir = next((tmp_path / "a" / "runs").iterdir())
    assert (run_dir / "chain_000.safetensors").exists() and not (run_dir / "chain_001.safetensors").exists()
    with pytest.raises(CacheError, match="not complete"):
        bif.open_run(run_dir)
    first_chain_mtime = (run_dir / "chain_000.safetensors").stat().st_mtime_ns
    chains_started = []
    resumed = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path / "a",
                              progress=lambda ev: "chain" in ev and chains_started.append(ev["chain"]))
    assert set(chains_started) == {1}, "only the missing chain is computed"
    assert (run_dir / "chain_000.safetensors").stat().st_mtime_ns == first_chain_mtime
    fresh = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path / "b")
    np.testing.assert_array_equal(resumed.train_losses, fresh.train_losses)


def test_two_processes_compute_the_same_run_once(tiny_lm, tiny_corpus, tmp_path):
    log = tmp_path / "chains.log"
    script = f"""
import torch; torch.set_num_threads(1)
import bif
def progress(ev, seen=set()):
    if "chain" in ev and ev["chain"] not in seen:
        seen.add(ev["chain"]); open({str(log)!r}, "a").write(f"{{ev['chain']}}\\n")
run = bif.compute_run(bif.ModelSpec({str(tiny_lm)!r}), bif.DataSpec({str(tiny_corpus)!r}, n_scored=None),
                      [bif.Query({QUERY.prompt!r}, {QUERY.completion!r})], bif.preset("smoke", draws=30),
                      cache_root={str(tmp_path)!r}, progress=progress)
print(run.key)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0]
    assert sorted(log.read_text().split()) == ["0", "1"], "each chain is sampled by exactly one process"


def test_new_query_by_replay_equals_computing_it_with_the_run(tiny_lm, tiny_corpus, tmp_path):
    model, data, _, cfg = request(tiny_lm, tiny_corpus)
    run = bif.compute_run(model, data, [QUERY], cfg, cache_root=tmp_path)
    extended = bif.add_queries(run, [OTHER], cache_root=tmp_path, method="replay")
    assert [q.prompt for q in extended.queries] == [QUERY.prompt, OTHER.prompt]
    both = bif.compute_run(model, data, [QUERY, OTHER], cfg, cache_root=tmp_path / "both")
    trace, row = extended.trace(1)
    np.testing.assert_allclose(trace.losses["query"][:, :, row], both.query_sets[0].losses[:, :, 1], rtol=1e-6)
    np.testing.assert_array_equal(trace.losses["train"], both.train_losses)
    assert bif.open_run(run.dir).queries == extended.queries, "the added query set is stored with the run"
    qchain = next(run.dir.glob("queries/*/chain_000.safetensors"))
    data = bytearray(qchain.read_bytes())
    data[-5] ^= 0xFF
    qchain.write_bytes(bytes(data))
    reopened = bif.open_run(run.dir)  # the damaged added set is set aside; the run and its own query still open
    assert reopened.queries == [QUERY] and len(reopened.quarantined) == 1 and "damaged" in reopened.quarantined[0]
    np.testing.assert_array_equal(reopened.trace(0)[0].losses["query"], run.trace(0)[0].losses["query"])
    assert not list(run.dir.glob("queries/*/COMPLETE")) and len(list(run.dir.glob("quarantine/*"))) == 1


def test_replay_that_does_not_reproduce_fails_loudly(tiny_lm, tiny_corpus, tmp_path):
    run = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path)
    run.sampling_loss = run.sampling_loss * 1.01  # as if the chains had been computed elsewhere
    with pytest.raises(ReplayMismatch, match="did not reproduce"):
        bif.add_queries(run, [OTHER], cache_root=tmp_path, method="replay")


def test_list_and_delete(tiny_lm, tiny_corpus, tmp_path):
    run = bif.compute_run(*request(tiny_lm, tiny_corpus), cache_root=tmp_path)
    [row] = bif.list_runs(tmp_path)
    assert row["key"] == run.key and row["complete"] and row["n_queries"] == 1
    full = bif.diagnose(run.trace(0)[0], run.config.nbeta, run.config.burn_in)
    assert row["verdict"] == full.verdict, "the list's cheap verdict is the Diagnostics page's"
    with pytest.raises(ConfigError):
        bif.delete_run("../..", tmp_path)
    bif.delete_run(run.key, tmp_path)
    assert bif.list_runs(tmp_path) == []


@pytest.mark.parametrize("case", ["missing model", "empty data", "unreadable data", "unknown format",
                                  "empty completion", "query too long", "absurd config"])
def test_bad_input_gives_a_clear_error_and_leaves_the_cache_intact(case, tiny_run, tiny_lm, tiny_corpus, tmp_path):
    cache, run = tiny_run
    before = snapshot(cache)
    model, data, queries, cfg = request(tiny_lm, tiny_corpus)
    expected = {"missing model": (ModelNotFound, "does not exist"), "empty data": (DataError, "no non-empty"),
                "unreadable data": (DataError, "UTF-8"), "unknown format": (DataError, "Unknown training file"),
                "empty completion": (DataError, "empty completion"), "query too long": (DataError, "context is"),
                "absurd config": (ConfigError, "step_size")}[case]
    with pytest.raises(expected[0], match=expected[1]):
        if case == "missing model":
            model = bif.ModelSpec(str(tmp_path / "nope"))
        elif case == "empty data":
            (tmp_path / "empty.txt").write_text("\n \n")
            data = bif.DataSpec(str(tmp_path / "empty.txt"))
        elif case == "unreadable data":
            (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
            data = bif.DataSpec(str(tmp_path / "bad.txt"))
        elif case == "unknown format":
            (tmp_path / "x.docx").write_text("hello")
            data = bif.DataSpec(str(tmp_path / "x.docx"))
        elif case == "empty completion":
            queries = [bif.Query("User: hi\nBot:", "  ")]
        elif case == "query too long":
            queries = [bif.Query("User: " + "what is 3 plus 4? " * 40, " 7")]
        else:
            cfg = cfg.replace(step_size=5.0)
        bif.compute_run(model, data, queries, cfg, cache_root=cache)
    assert snapshot(cache) == before
    bif.open_run(run.dir)


def test_request_json_records_everything_needed_to_reproduce(tiny_run):
    _, run = tiny_run
    req = json.loads((run.dir / "request.json").read_text())
    assert {"schema", "model", "data", "queries", "config", "fingerprints", "scored_ids", "device"} <= set(req)
    assert bif.SamplerConfig.from_dict(req["config"]) == bif.preset("smoke")
