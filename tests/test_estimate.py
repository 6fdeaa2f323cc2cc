"""Estimates from this run's own speed: SGLD steps and scored draws priced apart (a burn-in step scores nothing),
a draw priced by the scoring pass at w* until the first one is measured; the pre-start estimate scales with the
machine's load."""

import bif
from bif.service import cost, jobs
from bif.store.chains import Clock

QUERY = bif.Query("User: what is 3 plus 4?\nBot:", " 7")


def test_eta_prices_steps_and_draws_apart():
    clock = Clock(prior_s=0.5)
    assert clock.eta(elapsed=10.0, steps_done=10, remaining_steps=100, remaining_draws=50) == 100 * 1.0 + 50 * 0.5
    clock.start_chain()
    for _ in range(8):
        clock.scored(0.25)  # 2 s of the 20 s went to scoring 8 draws
    assert clock.eta(elapsed=20.0, steps_done=20, remaining_steps=10, remaining_draws=4) == 10 * 0.9 + 4 * 0.25
    assert Clock().eta(elapsed=5.0, steps_done=5, remaining_steps=3, remaining_draws=3) == 3.0


def test_a_runs_eta_is_measured_and_reaches_zero(tiny_lm, tiny_corpus, tmp_path):
    etas = []
    bif.compute_run(bif.ModelSpec(str(tiny_lm)), bif.DataSpec(str(tiny_corpus), n_scored=None), [QUERY],
                    bif.preset("smoke"), cache_root=tmp_path,
                    progress=lambda ev: ev["stage"] == "sample" and etas.append(ev["eta_s"]))
    assert etas and all(e >= 0 for e in etas) and etas[-1] == 0.0
    assert etas[0] > etas[-1]


def test_pre_start_estimate_scales_with_the_machines_load(monkeypatch):
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (6.0, 6.0, 6.0))
    monkeypatch.setattr(cost.os, "cpu_count", lambda: 2)
    assert cost.load_slowdown(2) == 4.0
    monkeypatch.setattr(cost.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert cost.load_slowdown(2) == 1.0
