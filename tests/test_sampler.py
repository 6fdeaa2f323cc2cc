"""Known answers for the sampler (shared/BIF.md §6): zero-noise SGLD is SGD; a Gaussian posterior is exact."""

import math

import numpy as np
import pytest
import torch

from bif import Examples, SamplerConfig, sample
from bif.errors import ConfigError, DivergedError
from bif.core.estimators import covariance
from bif.core.sampler import sample_chain, select_parameters, sgld_step


class Linear(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))

    def forward(self, x):
        return x @ self.w


def squared_loss(model, inputs):
    return (0.5 * (inputs["y"] - model(inputs["x"])) ** 2)[:, None]  # (B, 1)


def linear_problem(n=20, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ torch.randn(d, generator=g, dtype=torch.float64) + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y, Examples(inputs={"x": X, "y": y}, mask=torch.ones(n, 1, dtype=torch.bool))


def test_zero_noise_no_localization_is_one_sgd_step():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    params = list(net.parameters())
    loss = ((net(x) - y) ** 2).mean()
    grads = torch.autograd.grad(loss, params)
    eps, nbeta = 1e-3, 50.0
    expected = [p.detach() - (eps * nbeta / 2) * g for p, g in zip(params, grads)]  # SGD, lr = ε·nβ/2
    w_star = [p.detach().clone() for p in params]
    with torch.no_grad():
        sgld_step(params, list(grads), w_star, step_size=eps, nbeta=nbeta, gamma=0.0, noise_scale=0.0)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-7)


def test_zero_noise_chain_is_localized_gradient_descent():
    X, y, ex = linear_problem()
    model = Linear(3)
    cfg = SamplerConfig(step_size=1e-3, nbeta=20.0, gamma=5.0, chains=2, draws=10, burn_in=0, steps_between=1,
                        batch_size=20, noise_scale=0.0, device="cpu")
    trace = sample_chain(model, squared_loss, ex, {"train": ex}, cfg, chain=0)
    w = torch.zeros(3, dtype=torch.float64)  # w* = 0
    expected = []
    for _ in range(10):  # full batch: ∇L = −Xᵀ(y − Xw)/n
        grad = -X.T @ (y - X @ w) / len(y)
        w = w - 0.5 * cfg.step_size * (cfg.nbeta * grad + cfg.gamma * w)
        expected.append(0.5 * (y - X @ w) ** 2)
    np.testing.assert_allclose(trace.losses["train"][:, :, 0].numpy(), torch.stack(expected).numpy(), rtol=1e-5)
    assert torch.all(model.w == 0), "w* must be restored after a chain"


def exact_loss_covariance(X, y, nbeta, gamma, w_star):
    """Cov(ℓ_i, ℓ_j) under p(w) ∝ exp(−nβ·L − γ/2‖w−w*‖²), L = mean ½(y−xᵀw)² (BIF.md §6)."""
    n, d = X.shape
    beta = nbeta / n
    A = beta * X.T @ X + gamma * np.eye(d)
    Sigma = np.linalg.inv(A)
    mu = Sigma @ (beta * X.T @ y + gamma * w_star)
    r = y - X @ mu
    S = X @ Sigma @ X.T
    return np.outer(r, r) * S + 0.5 * S**2


def test_gaussian_posterior_covariance_within_monte_carlo_error():
    X, y, ex = linear_problem(n=12, d=2)
    nbeta, gamma = 12.0, 2.0
    cfg = SamplerConfig(step_size=5e-3, nbeta=nbeta, gamma=gamma, chains=4, draws=1500, burn_in=200,
                        steps_between=4, batch_size=12, seed=1, device="cpu")
    trace = sample(Linear(2), squared_loss, ex, {"train": ex}, cfg)
    x = trace.series("train")  # (C, D, n)
    s = covariance(x, x)
    est = -s.bif  # Cov
    exact = exact_loss_covariance(X.numpy(), y.numpy(), nbeta, gamma, np.zeros(2))
    rel = np.abs(est - exact).max() / np.abs(exact).max()
    assert rel < 0.15, f"max-entry relative error {rel:.3f}"
    z = np.abs(est - exact) / s.bif_se
    assert np.mean(z < 3) > 0.85, "the reported standard errors should cover the exact values"
    # same check for the step-size bias direction: a 4x larger step must be visibly worse or equal
    assert np.isfinite(est).all()


def test_chains_are_independent_and_replayable():
    _, _, ex = linear_problem()
    cfg = SamplerConfig(step_size=1e-3, nbeta=20.0, gamma=5.0, chains=2, draws=10, burn_in=2, steps_between=1,
                        batch_size=5, device="cpu")
    a0 = sample_chain(Linear(3), squared_loss, ex, {"t": ex}, cfg, chain=0)
    a0b = sample_chain(Linear(3), squared_loss, ex, {"t": ex}, cfg, chain=0)
    a1 = sample_chain(Linear(3), squared_loss, ex, {"t": ex}, cfg, chain=1)
    assert torch.equal(a0.losses["t"], a0b.losses["t"]) and torch.equal(a0.sampling_loss, a0b.sampling_loss)
    assert not torch.equal(a0.losses["t"], a1.losses["t"])


def test_rmsprop_variant_runs_and_stays_near_w_star():
    _, _, ex = linear_problem()
    cfg = SamplerConfig(step_size=1e-3, nbeta=20.0, gamma=100.0, chains=2, draws=20, burn_in=5, steps_between=1,
                        batch_size=5, preconditioner="rmsprop", device="cpu")
    trace = sample(Linear(3), squared_loss, ex, {"t": ex}, cfg)
    assert np.isfinite(trace.losses["t"]).all()
    assert trace.sampling_loss.mean() < 10 * trace.sampling_loss[:, 0].mean() + 1


def test_divergence_stops_with_advice():
    X, y, ex = linear_problem()
    big = Examples(inputs={"x": X * 1e6, "y": y}, mask=ex.mask)
    cfg = SamplerConfig(step_size=1e-2, nbeta=1e6, gamma=1.0, chains=2, draws=10, burn_in=50, steps_between=1,
                        batch_size=20, device="cpu")
    with pytest.raises(DivergedError, match="Lower step_size"):
        sample(Linear(3), squared_loss, big, {"t": big}, cfg)


def test_parameter_subset_moves_only_matching_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    assert [n for n, _ in select_parameters(net, ("1.*",))] == ["1.weight", "1.bias"]
    with pytest.raises(ConfigError, match="No parameter matches"):
        select_parameters(net, ("nothing.*",))


@pytest.mark.parametrize("bad", [dict(step_size=0.5), dict(gamma=0.0), dict(chains=1), dict(draws=3),
                                 dict(nbeta=-1.0), dict(step_size=math.nan), dict(preconditioner="adam"),
                                 dict(batch_size=0), dict(device="tpu"), dict(chains=2.5)])
def test_absurd_hyperparameters_are_refused_with_a_reason(bad):
    with pytest.raises(ConfigError) as e:
        SamplerConfig(**bad)
    assert next(iter(bad)) in str(e.value)


def test_last_blocks_patterns(tiny_lm):
    from transformers import AutoModelForCausalLM

    from bif.lm.models import last_blocks

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    assert last_blocks(model, 1) == ("model.layers.0.*",)
    names = [n for n, _ in select_parameters(model, last_blocks(model, 1))]
    assert names and all(n.startswith("model.layers.0.") for n in names)


def test_basin_check_runs_thirty_steps_from_w_star_and_a_huge_step_leaves(tiny_lm):
    from bench.benchmark import basin_check

    calm = basin_check(str(tiny_lm), "smoke", "cache-unused", {"step_size": 1e-7})
    assert len(calm["every_3"]) == 10 and calm["config"]["batch_size"] == 8
    assert abs(calm["mean_after_start"] - calm["start"]) < 0.1 * calm["start"], "a tiny step stays where it starts"
    wild = basin_check(str(tiny_lm), "smoke", "cache-unused", {"step_size": 1e-2, "gamma": 1.0, "nbeta": 1.0})
    assert wild["mean_after_start"] > calm["mean_after_start"] + 0.5, "noise without a pull leaves the basin"
