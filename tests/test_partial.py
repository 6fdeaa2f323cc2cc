"""Anytime results: a computing run read as far as it has sampled. The provisional run of a finished run is the
finished run; while sampling, every provisional run holds exactly the first draws of the final one; draws past a
chain's `written` counter are never read."""

import os
import shutil

import numpy as np
import pytest

import bif
from bif.core import influence
from bif.core.trace import open_chain
from bif.store.partial import open_partial, pick_chains

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


@pytest.mark.parametrize("written,expected", [
    ([100, 100, 10, 8], ([0, 1], 100)),  # two finished chains beat four short ones
    ([30, 28, 0, 0], ([0, 1], 28)),
    ([10, 9, 9, 9], ([0, 1, 2, 3], 9)),
    ([3, 3], ([0, 1], 3)),  # the first view: right after burn-in, wide error bars
    ([1, 1, 1, 1], ([], 0)),  # one draw per chain: too few for error bars
    ([50, 0], ([], 0)),  # one chain alone: no stability check, no provisional view
])
def test_pick_chains_maximizes_the_pooled_draws(written, expected):
    assert pick_chains(written) == expected


def test_anytime_result_of_a_finished_run_is_the_final_result(tiny_run):
    _, run = tiny_run
    live = open_partial(run.dir)
    assert live.partial.draws == run.config.draws and live.partial.chains == (0, 1)
    np.testing.assert_array_equal(live.train_losses, run.train_losses)
    for token in (None, int(np.flatnonzero(run.query_sets[0].mask[0])[0])):
        a, b = influence.samples(*live.trace(0), token), influence.samples(*run.trace(0), token)
        for f in ("bif", "bif_se", "support", "support_se", "p", "q"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_a_growing_chain_is_read_up_to_its_counter_only(tiny_run, tmp_path):
    _, run = tiny_run
    d = shutil.copytree(run.dir, tmp_path / run.key)
    (d / "COMPLETE").unlink()
    chain = d / "chain_001.safetensors"
    m = open_chain(chain)
    written, train = m["written"], m["losses.train"]
    with open(chain, "r+b") as f:  # as if chain 1 were at draw 6 and half-way through draw 7
        os.pwrite(f.fileno(), np.array([6], dtype=np.int64).tobytes(), written.offset)
        per = train[0].nbytes
        os.pwrite(f.fileno(), np.full(train.shape[1:], np.nan, train.dtype).tobytes(), train.offset + 6 * per)
    chain.rename(d / "chain_001.partial")
    live = open_partial(d)
    assert live.partial.chains == (0, 1) and live.partial.draws == 6 and live.partial.target == 10
    np.testing.assert_array_equal(live.train_losses, run.train_losses[:, :6])
    assert np.isfinite(live.train_losses).all()


def test_provisional_runs_while_sampling_hold_the_final_runs_first_draws(tiny_lm, tiny_corpus, tmp_path):
    seen = []

    def progress(ev):
        if ev.get("stage") == "sample":
            for d in (tmp_path / "runs").glob("*"):
                live = open_partial(d)
                if live is not None and (not seen or seen[-1].partial != live.partial):
                    seen.append(live)

    run = bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY],
                          bif.preset("smoke"), cache_root=tmp_path, progress=progress)
    assert len(seen) >= 2 and seen[0].partial.draws < run.config.draws, "provisional results came before the end"
    for live in seen:
        p = live.partial
        np.testing.assert_array_equal(live.train_losses, run.train_losses[list(p.chains), :p.draws])
        np.testing.assert_array_equal(live.query_sets[0].losses, run.query_sets[0].losses[list(p.chains), :p.draws])
