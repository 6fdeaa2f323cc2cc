"""bench/interactive.py measures what it says, on the tiny model: a job's first provisional result comes before its
end, a new question is answered from stored draws, the rest of the training set is ranked, disk adds up."""

import bif
from bench import interactive
from tests.tiny import job_spec

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


def test_interactive_measurements_on_a_tiny_run(tiny_lm, tiny_corpus, tmp_path):
    data = bif.DataSpec(str(tiny_corpus), n_scored=10)
    request = job_spec("run", bif.ModelSpec(str(tiny_lm)).to_dict(), data.to_dict(), [QUERY.to_dict()],
                       bif.preset("smoke", draws=20).to_dict(), tmp_path)
    r = interactive.first_provisional(str(tmp_path), request, poll_s=0.05)
    assert r["first_provisional_s"] is not None and 0 < r["first_provisional_s"] <= r["actual_s"]
    run = bif.open_run(tmp_path / "runs" / r["run_key"])
    a = interactive.ask_latency(run, str(tmp_path), asked=("what is 1 plus 2?", "what is 2 plus 5?", ""), answer=" 3")
    assert a["draws_warm_s"] > 0 and a["draws_cold_s"] > 0 and a["replay_estimate_s"] > 0
    k = interactive.rank_time(bif.open_run(run.dir), str(tmp_path))
    assert k["rows"] == 40 - len(run.train_ids) > 0 and k["ranked"] == 40
    d = interactive.disk(run.dir)
    assert d["draws"] > 0 and d["chains"] > 0 and d["states"] > 0
    assert abs(d["total"] - sum(v for key, v in d.items() if key != "total")) < 1e-9


def test_frontier_steps_that_are_not_numbers_get_a_message():
    import argparse

    import pytest

    from bif.errors import ConfigError

    args = argparse.Namespace(quick=False, frontier_steps="100,lots", cache="cache", preset="demo-cpu")
    with pytest.raises(ConfigError, match="give draws per chain"):
        interactive.print_frontier(args)


def test_frontier_seeds_are_one_or_two_different_whole_numbers():
    import argparse

    import pytest

    from bench.trust import parse_seeds
    from bif.errors import ConfigError

    assert parse_seeds(None) == (0, 1) and parse_seeds("1") == (1,) and parse_seeds("3,7") == (3, 7)
    for bad, says in (("0,0", "two different"), ("a", "whole numbers"), ("0,1,2", "two different")):
        args = argparse.Namespace(quick=False, frontier_steps="100", cache="cache", preset="demo-cpu", seeds=bad)
        with pytest.raises(ConfigError, match=says):
            interactive.print_frontier(args)


def test_frontier_computes_on_one_torch_thread(monkeypatch, capsys):
    """Two seed processes side by side on 2 cores: with torch's default 2 threads each they fight (a draw cost 3x)."""
    import argparse

    import torch

    seen = []
    monkeypatch.setattr(interactive, "frontier", lambda *a, **k: seen.append(torch.get_num_threads()) or [])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        interactive.print_frontier(argparse.Namespace(quick=False, frontier_steps="100", cache="cache",
                                                      preset="demo-cpu", seeds="0"))
    finally:
        torch.set_num_threads(before)
    assert seen == [1] and "one torch thread" in capsys.readouterr().out
