"""The evaluation harness: LDS against hand-computed cases, retrieval ranks, sign conventions, the whole pipeline on
a tiny benchmark (seconds), resume from cache, and the app page on stored results."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bif.evaluation import baselines
from bif.evaluation.benchmark import BenchmarkSpec, build_benchmark, query_losses, quick_spec
from bif.evaluation.lds import bootstrap_ci, half_subsets, lds, lds_per_query, predicted_losses, spearman
from bif.evaluation.retrieval import retrieval_metrics, source_ranks

PAGE = Path(__file__).resolve().parents[1] / "views" / "evidence.py"


# ------------------------------------------------------------------------------------------ hand-computed


def test_predicted_losses_sum_scores_of_members():
    subsets = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=bool)
    delta = np.array([[1.0, 2.0, 4.0], [-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(predicted_losses(delta, subsets), [[5, 0], [6, 1], [3, -1]])


def test_lds_matches_hand_computed_spearman():
    # query 0: ranks (1,2,3,4) vs (1,3,2,4): Σd² = 2, ρ = 1 − 6·2 / (4·(16 − 1)) = 0.8
    # query 1: predictions reversed against the losses: ρ = −1
    pred = np.array([[1.0, 4.0], [2.0, 3.0], [3.0, 2.0], [4.0, 1.0]])
    actual = np.array([[10.0, 1.0], [30.0, 2.0], [20.0, 3.0], [40.0, 4.0]])
    np.testing.assert_allclose(lds_per_query(pred, actual), [0.8, -1.0])
    assert lds(pred, actual) == pytest.approx(-0.1)


def test_spearman_ties_and_constant_inputs():
    assert spearman(np.array([1, 1, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(0.9486832980505138)
    assert np.isnan(spearman(np.zeros(5), np.arange(5)))
    pred = np.c_[np.arange(6.0), np.zeros(6)]  # second query: a method with no opinion counts as 0, not skipped
    assert lds(pred, np.c_[np.arange(6.0), np.arange(6.0)]) == pytest.approx(0.5)


def test_bootstrap_interval_brackets_estimate():
    rng = np.random.default_rng(0)
    actual = rng.standard_normal((40, 3))
    pred = actual + 0.8 * rng.standard_normal((40, 3))
    lo, hi = bootstrap_ci(pred, actual, n_boot=300)
    assert lo < lds(pred, actual) < hi
    assert bootstrap_ci(actual, actual, n_boot=50) == (pytest.approx(1.0), pytest.approx(1.0))


def test_half_subsets_are_halves_seeded_and_distinct():
    a = half_subsets(10, 32, seed=3)
    assert a.shape == (32, 10) and (a.sum(1) == 5).all()
    assert (a == half_subsets(10, 32, seed=3)).all()
    assert len({r.tobytes() for r in a}) == 32
    assert (half_subsets(4, 8).sum(1) == 2).all()  # only 6 distinct halves exist: repeats, no endless loop


def test_source_ranks_are_pessimistic_about_ties():
    delta = np.array([[-3.0, -1.0, -2.0], [0.0, 0.0, 0.0], [1.0, -5.0, 0.0]])
    assert source_ranks(delta, [2, 1, 1]).tolist() == [2, 3, 1]
    m = retrieval_metrics(delta, [2, 1, 1], ks=(1, 2))
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@2"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------- tiny benchmark


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """(cache, out, results) of one quick evaluation: tiny benchmark, 6 subsets, smoke sampler."""
    from bif.evaluation.__main__ import main

    cache, out = tmp_path_factory.mktemp("evalcache"), tmp_path_factory.mktemp("results")
    assert main(["--quick", "--out", str(out), "--cache", str(cache)]) == 0
    return cache, out, json.loads((out / "evaluation.json").read_text())


def test_quick_evaluation_writes_every_method(quick):
    cache, out, res = quick
    from bif.evaluation.evaluate import METHODS

    assert [r["method"] for r in res["methods"]] == list(METHODS)
    md = (out / "evaluation.md").read_text()
    assert "| method | LDS |" in md and "Sign convention" in md
    M, Q = res["lds_setup"]["subsets"], res["benchmark"]["n_queries"]
    assert np.array(res["actual"]).shape == (M, Q)
    for r in res["methods"]:
        assert np.array(r["predicted"]).shape == (M, Q)
        lo, hi = r["lds_ci"]
        assert lo <= hi and 0 < r["mrr"] <= 1 and len(r["ranks"]) == Q
    byname = {r["method"]: r for r in res["methods"]}
    assert byname["source_only"]["mrr"] == 1.0
    # The sign convention against real retraining: including the source lowers the query loss, so the
    # oracle's predicted loss (−1 when the source is in) must rank-correlate positively with the actual loss.
    assert byname["source_only"]["lds"] > 0


def test_quick_evaluation_resumes_without_retraining(quick, capsys):
    from bif.evaluation.__main__ import main

    cache, out, res = quick
    assert main(["--quick", "--out", str(out), "--cache", str(cache)]) == 0
    log = capsys.readouterr().out
    assert "retrain 1/" not in log and "benchmark: training" not in log
    again = json.loads((out / "evaluation.json").read_text())
    assert [r["lds"] for r in again["methods"]] == pytest.approx([r["lds"] for r in res["methods"]], nan_ok=True)
    assert [r["seconds"] for r in again["methods"]] == [r["seconds"] for r in res["methods"]]


@pytest.fixture(scope="module")
def bench(quick):
    cache, _, _ = quick
    return build_benchmark(quick_spec(), cache)


def test_gradient_dot_predicts_one_sgd_step(bench):
    """Δ_dot = −∇φ·∇ℓ_i: one SGD step of size η on z_i changes the query loss by ≈ η·Δ (first order)."""
    from bif.lm.data import tokenize_texts

    train = tokenize_texts(bench.tokenizer, bench.texts, bench.spec.max_len)
    qex = bench.query_examples()
    delta = baselines.gradient_similarity(bench.model, train, qex)["grad_dot"]
    model = bench.fresh_model()
    model.load_state_dict(bench.model.state_dict())
    before = query_losses(model, qex)
    g = baselines.flat_grad(model, train, 3)
    eta = 1e-4
    with torch.no_grad():
        offset = 0
        for p in [p for p in model.parameters() if p.requires_grad]:
            p -= eta * g[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
    change = (query_losses(model, qex) - before).numpy()
    np.testing.assert_allclose(change, eta * delta[:, 3], rtol=0.05, atol=1e-4)


def test_ekfac_agrees_in_sign_with_gradient_dot(quick):
    _, _, res = quick
    byname = {r["method"]: r for r in res["methods"]}
    ek = np.array(byname["ekfac"]["predicted"])
    gd = np.array(byname["grad_dot"]["predicted"])
    assert np.mean([spearman(ek[:, q], gd[:, q]) for q in range(ek.shape[1])]) > 0


def test_sweep_quick_grid(quick):
    from bif.core.config import preset
    from bif.evaluation.evaluate import EvalConfig
    from bif.evaluation.report import sweep_markdown
    from bif.evaluation.sweep import sweep

    cache, _, _ = quick
    cfg = EvalConfig(subsets=6, bif=preset("smoke"))
    res = sweep(quick_spec(), cfg.bif, cfg, cache, grid=[("base", {}, (0, 1))], draws=(10,), chains=(2,),
                log=lambda s: None)
    (row,) = res["rows"]
    assert row["draws"] == 10 and row["chains"] == 2 and len(row["mrr"]) == 2
    assert row["jaccard"] is None or 0 <= row["jaccard"] <= 1
    assert "| base | 2 × 10 |" in sweep_markdown(res)


def test_spec_validation():
    with pytest.raises(ValueError):
        BenchmarkSpec(n_train=5, n_queries=10)
    with pytest.raises(ValueError):
        from bif.evaluation.evaluate import EvalConfig
        EvalConfig(methods=("nope",))


# ------------------------------------------------------------------------------------------------- page


def test_evidence_page_renders_stored_results(quick, monkeypatch):
    from streamlit.testing.v1 import AppTest

    _, out, _ = quick
    monkeypatch.setenv("BIF_RESULTS", str(out))
    at = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert not at.exception
    assert any("LDS" in h.value for h in at.subheader) or any("LDS" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 2


def test_evidence_page_without_results_says_how_to_make_them(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BIF_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert not at.exception
    assert any("python -m bif.evaluation" in i.value for i in at.info) or \
        any("python -m bif.evaluation" in c.value for c in at.code)


def test_new_queries_reuse_stored_retrains(quick, bench):
    import dataclasses

    from bif.evaluation.lds import retrain_losses

    _, _, res = quick
    subsets = half_subsets(len(bench.texts), res["lds_setup"]["subsets"], 0)
    logs = []
    fewer = dataclasses.replace(bench, queries=bench.queries[:2])
    losses, _ = retrain_losses(fewer, subsets, [0], log=logs.append)
    assert logs == []  # weights were stored: no retraining
    np.testing.assert_allclose(losses[:, 0], np.array(res["actual"])[:, :2], rtol=1e-4)


@pytest.mark.slow
def test_full_evaluation_on_the_demo_benchmark(tmp_path):
    """The real benchmark (128 conversations, 32 retrains, demo-cpu BIF): tens of minutes on a CPU, less when
    cache/evaluation/ already holds the retrains."""
    from bif.evaluation.__main__ import main

    assert main(["--out", str(tmp_path), "--cache", "cache"]) == 0
    res = json.loads((tmp_path / "evaluation.json").read_text())
    byname = {r["method"]: r for r in res["methods"]}
    assert byname["source_only"]["lds"] > 0.3  # retraining responds to the source: the benchmark can discriminate
    assert abs(byname["random"]["lds"]) < 0.3


def test_common_mode_removal_keeps_the_specific_covariance():
    """Every loss rides on one shared fluctuation; the query also shares sample 2's own noise. Plain −Cov is large
    for every sample; after removing the common mode only sample 2 stands out."""
    from bif.evaluation.evaluate import common_mode_removed
    from bif.core.influence import samples
    from bif.core.trace import LossTrace

    rng = np.random.default_rng(0)
    C, D, n = 4, 400, 20
    common = rng.standard_normal((C, D, 1))
    own = rng.standard_normal((C, D, n))
    train = 3.0 * common + own  # (C, D, n)
    query = 3.0 * common[..., 0] + own[..., 2]  # (C, D)
    trace = LossTrace(losses={"train": train[..., None], "query": query[:, :, None, None]},
                      masks={"train": np.ones((n, 1), bool), "query": np.ones((1, 1), bool)},
                      init={"train": np.zeros((n, 1)), "query": np.zeros((1, 1))}, sampling_loss=np.zeros((C, 1)))
    plain, cm = samples(trace, 0), common_mode_removed(trace, 0)
    assert (plain.bif < -5).all()  # shared drift: everything looks supportive
    assert np.argmin(cm.bif) == 2 and cm.bif[2] < -0.5
    assert np.abs(np.delete(cm.bif, 2)).max() < 0.3


def test_evidence_page_shows_the_small_budget_comparison_as_text(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    (tmp_path / "fast").mkdir()
    (tmp_path / "fast" / "bif-2x10-seed0.md").write_text("| method | LDS |\n|---|---|\n| BIF | 0.15 |\n")
    monkeypatch.setenv("BIF_RESULTS", str(tmp_path))
    at = AppTest.from_file(str(PAGE), default_timeout=30).run()
    assert not at.exception
    assert any("EK-FAC's cost" in h.value for h in at.subheader)
    assert any("0.15" in m.value for m in at.markdown)


def test_evidence_takeaway_says_only_what_the_numbers_support():
    from bif.evaluation.report import takeaway

    def row(method, lds, ci, r1, kind="method"):
        return {"method": method, "label": method.upper(), "kind": kind, "lds": lds, "lds_ci": ci, "recall@1": r1}

    res = {"methods": [row("bif", 0.30, [0.2, 0.4], 0.5), row("tracin", 0.60, [0.5, 0.7], 0.9),
                       row("ekfac", 0.10, [0.0, 0.2], 0.2), row("word_overlap", 0.35, [0.3, 0.45], 1.0, "reference")],
           "benchmark": {"train_loss": 0.17, "n_train": 128, "recipe_full": {"steps": 320, "batch_size": 16}}}
    text = takeaway(res)
    assert "LDS 0.30, below TRACIN (0.60)" in text  # intervals apart
    assert "level with (95 % intervals overlap) WORD_OVERLAP (0.35)" in text
    assert "above all 1 other methods that, like BIF, see only the final weights (EKFAC 0.10)" in text
    assert "50% of queries by BIF, 90% by TRACIN, 100% by WORD_OVERLAP" in text
    assert "checkpoints" in text and "loss 0.17 per token after 40 epochs" in text
    res["methods"] = [m for m in res["methods"] if m["method"] != "tracin"]
    assert "checkpoints" not in takeaway(res)


def test_evaluation_set_reads_settings_as_the_cli_does():
    import argparse

    from bif.evaluation.__main__ import _configs

    args = argparse.Namespace(quick=False, n_train=None, cmd="run", preset="demo-cpu", subsets=None, seeds=[0],
                              methods=None, ekfac_damping=None,
                              set=["param_patterns=model.layers.1.*,lm_head.*", "draws=20", "step_size=1e-4"])
    _, cfg = _configs(args)
    assert cfg.bif.param_patterns == ("model.layers.1.*", "lm_head.*")  # was split into single characters
    assert cfg.bif.draws == 20 and cfg.bif.step_size == 1e-4
