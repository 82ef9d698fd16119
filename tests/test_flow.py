"""Chapter 10's flow matching on the linear path [FM; RF]: the conversions and their round trips, the error
identity that makes L_FM a weighting of the x0-error, the loss, and the samplers with the exact velocity of a
2-D mixture (convergence, Euler's and Heun's measured orders, network evaluations)."""

import math

import numpy as np
import pytest
import torch

import ddpm_core as dc
from ddpm_core.diffusion import flow as fl


def _pair(shape=(6, 1, 3, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


def _taus(x, values=(0.0, 0.001, 0.25, 0.5, 0.9, 0.999)):
    return torch.tensor(values, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


# -- the path and its conversions ---------------------------------------------------------------------------
def test_flow_tau_is_t_over_T_shaped_to_broadcast():
    like = torch.zeros(3, 2, 4, 4)
    tau = fl.flow_tau(torch.tensor([0, 250, 1000]), 1000, like)
    assert tau.shape == (3, 1, 1, 1) and tau.dtype == like.dtype
    torch.testing.assert_close(tau.flatten(), torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(fl.flow_tau(40, 50, like).flatten(), torch.full((3,), 0.8))
    with pytest.raises(ValueError, match=r"t must lie in 0..50"):
        fl.flow_tau(51, 50, like)


def test_interpolation_ends_and_velocity_round_trips():
    x0, eps = _pair()
    tau = _taus(x0)
    x_tau = fl.flow_interpolate(x0, eps, tau)
    torch.testing.assert_close(x_tau, (1 - tau) * x0 + tau * eps, rtol=0, atol=0)  # [FM eq. 22], σ_min = 0
    torch.testing.assert_close(fl.flow_interpolate(x0, eps, torch.zeros(())), x0)
    torch.testing.assert_close(fl.flow_interpolate(x0, eps, torch.ones(())), eps)
    u = eps - x0  # the velocity along one pair: d x_τ / dτ
    torch.testing.assert_close(fl.x0_from_velocity(x_tau, tau, u), x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fl.eps_from_velocity(x_tau, tau, u), eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fl.velocity_from_eps(x_tau, tau, eps), u, rtol=1e-9, atol=1e-9)  # τ < 1 here
    # and the round trip the other way, for any velocity
    u_hat = torch.randn_like(u)
    eps_hat = fl.eps_from_velocity(x_tau, tau, u_hat)
    torch.testing.assert_close(fl.velocity_from_eps(x_tau, tau, eps_hat), u_hat, rtol=1e-9, atol=1e-9)


def test_velocity_error_is_the_x0_error_over_tau_and_the_eps_error_over_one_minus_tau():
    x0, eps = _pair(seed=1)
    tau = _taus(x0, (0.01, 0.2, 0.5, 0.7, 0.95, 0.99))
    x_tau = fl.flow_interpolate(x0, eps, tau)
    u, u_hat = eps - x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x0_hat, eps_hat = fl.x0_from_velocity(x_tau, tau, u_hat), fl.eps_from_velocity(x_tau, tau, u_hat)
    torch.testing.assert_close(u - u_hat, -(x0 - x0_hat) / tau, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(u - u_hat, (eps - eps_hat) / (1 - tau), rtol=1e-9, atol=1e-9)
    # so L_FM weighs the x0-error by 1/τ², and x_τ is the prediction's own interpolation
    torch.testing.assert_close((u - u_hat).pow(2), (x0 - x0_hat).pow(2) / tau**2, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fl.flow_interpolate(x0_hat, eps_hat, tau), x_tau, rtol=1e-12, atol=1e-12)


def test_linear_path_rescaled_is_a_variance_preserving_x_t_with_the_same_snr():
    x0, eps = _pair(seed=3)
    tau = _taus(x0, (0.05, 0.3, 0.5, 0.6, 0.8, 0.95))
    scale = ((1 - tau) ** 2 + tau**2).sqrt()
    alpha_bar = (1 - tau) ** 2 / scale**2
    x_vp = fl.flow_interpolate(x0, eps, tau) / scale
    torch.testing.assert_close(x_vp, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fl.flow_snr(tau), alpha_bar / (1 - alpha_bar), rtol=1e-12, atol=0)


# -- the loss -------------------------------------------------------------------------------------------
def test_loss_is_zero_at_the_exact_velocity_and_the_mse_otherwise():
    T = 100
    x0, eps = _pair((5, 1, 4, 4), seed=4)
    t = torch.tensor([1, 10, 50, 99, 100])
    exact = lambda x_tau, t_: eps - x0  # noqa: E731  the conditional velocity of these pairs
    assert fl.loss_flow_matching(exact, x0, T, t, eps).item() == 0.0
    assert fl.loss_flow_matching(exact, x0, T, t, eps, reduction="none").shape == (5,)
    seen = {}

    def model(x_tau, t_):
        seen["x_tau"], seen["t"] = x_tau, t_
        return 0.5 * x_tau

    per_image = fl.loss_flow_matching(model, x0, T, t, eps, reduction="none")
    tau = (t.double() / T).view(-1, 1, 1, 1)
    x_tau = (1 - tau) * x0 + tau * eps
    torch.testing.assert_close(seen["x_tau"], x_tau)
    assert torch.equal(seen["t"], t)  # the model sees the integer t, τ = t/T
    torch.testing.assert_close(per_image, (eps - x0 - 0.5 * x_tau).pow(2).flatten(1).mean(1))
    torch.testing.assert_close(fl.loss_flow_matching(model, x0, T, t, eps), per_image.mean())
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731  t and ε drawn from the generator
    torch.testing.assert_close(fl.loss_flow_matching(model, x0, T, generator=g()),
                               fl.loss_flow_matching(model, x0, T, generator=g()), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"t must hold paper timesteps \(t=0 is clean data\) in 1..100"):
        fl.loss_flow_matching(model, x0, T, torch.tensor([0, 1, 2, 3, 4]), eps)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fl.loss_flow_matching(model, x0, T, t, eps, reduction="sum")


# -- sampling with the exact velocity of a mixture ---------------------------------------------------------
GM = dc.GaussianMixture2D([[-1.0, 0.5], [1.5, -0.5], [0.0, 1.5]], [0.3, 0.5, 0.2], [0.3, 0.5, 0.2])


def exact_velocity(num_steps):
    r"""u*(x, τ) = E[ε − x_0 | x_τ = x] of GM: x_τ/√((1−τ)² + τ²) is a VP x_t with ᾱ = (1−τ)²/((1−τ)² + τ²), so
    E[ε | x_τ] is GM's ε* there and u* = (ε* − x)/(1 − τ) (velocity_from_eps); at τ = 1, u* = x − E[x_0]."""
    mean = (GM.weights[:, None] * GM.means).sum(0)

    def model(x, t):
        tau = int(t[0]) / num_steps
        if tau == 1.0:
            return x - mean.to(x.dtype)
        scale = math.sqrt((1 - tau) ** 2 + tau**2)
        eps_star = GM.eps_star(x / scale, (1 - tau) ** 2 / scale**2)
        return fl.velocity_from_eps(x, tau, eps_star)

    return model


def _moments():
    w, mu = GM.weights, GM.means
    mean = (w[:, None] * mu).sum(0)
    return mean, (w[:, None, None] * (GM.covs + mu[:, :, None] * mu[:, None, :])).sum(0) - mean[:, None] * mean[None]


@pytest.mark.parametrize("t", [100, 400, 800, 1000])
def test_the_exact_velocity_is_the_regression_of_eps_minus_x0_on_x_tau(t):
    # u* = E[ε − x_0 | x_τ]: the residual (ε − x_0) − u*(x_τ) is orthogonal to every function of x_τ; checked
    # by Monte Carlo against 1, x_τ and x_τ² (z-scores), and a velocity for another τ fails the same check
    T, n = 1000, 200_000
    g = torch.Generator().manual_seed(6)
    x0 = GM.sample(n, g).double()
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x_tau = fl.flow_interpolate(x0, eps, torch.tensor(t / T, dtype=torch.float64))
    features = torch.cat([torch.ones(n, 1, dtype=torch.float64), x_tau, x_tau.pow(2)], 1)  # (n, 5)

    def max_z(t_model):
        residual = (eps - x0) - exact_velocity(T)(x_tau, torch.full((n,), t_model))  # (n, 2)
        products = residual[:, :, None] * features[:, None, :]  # (n, 2, 5)
        return (products.mean(0) / (products.std(0) / n**0.5)).abs().max().item()

    assert max_z(t) < 4.5  # measured ≈ 3 (the largest of 10 correlated z-scores)
    if t < T:
        assert max_z(t - 50) > 4.5  # the check can tell τ from τ − 0.05


@pytest.mark.parametrize("solver, S, tol", [("euler", 200, (0.06, 0.12)), ("heun", 20, (0.06, 0.12))])
def test_flow_sample_with_the_exact_velocity_samples_the_mixture(solver, S, tol):
    mean, cov = _moments()
    x = fl.flow_sample(exact_velocity(1000), (4000, 2), S, solver, generator=torch.Generator().manual_seed(0),
                       progress=False).double()
    assert (x.mean(0) - mean).abs().max() < tol[0] and (torch.cov(x.T) - cov).abs().max() < tol[1]
    coarse = fl.flow_sample(exact_velocity(1000), (4000, 2), 4, solver, generator=torch.Generator().manual_seed(0),
                            progress=False).double()
    assert (torch.cov(coarse.T) - cov).abs().max() > (torch.cov(x.T) - cov).abs().max()  # more steps, closer


ORDER_T = 3200  # a finer time grid than training's, so that the reference can take 3200 Heun steps
ORDER_STEPS = {"euler": (40, 80, 160, 320), "heun": (10, 20, 40, 80)}  # each in its asymptotic range
ORDER_RANGES = {"euler": (0.8, 1.3), "heun": (1.7, 2.6)}  # measured: 1.03, 2.03


@pytest.fixture(scope="module")
def flow_ode_problem():
    model = exact_velocity(ORDER_T)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = fl.flow_sample(model, None, ORDER_T, "heun", num_steps=ORDER_T, x_T=x_T, progress=False)
    return model, x_T, reference


@pytest.mark.parametrize("solver", fl.FLOW_SOLVERS)
def test_order_of_euler_and_heun_on_the_flow_ode(solver, flow_ode_problem):
    model, x_T, reference = flow_ode_problem
    steps = ORDER_STEPS[solver]
    errors = [(fl.flow_sample(model, None, n, solver, num_steps=ORDER_T, x_T=x_T, progress=False) - reference)
              .norm(dim=1).max().item() for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    low, high = ORDER_RANGES[solver]
    assert low < slope < high, f"{solver}: errors {errors}, slope {slope:.2f}"


class CountingModel:
    def __init__(self):
        self.calls, self.t = 0, []

    def __call__(self, x, t):
        self.calls += 1
        self.t.append(int(t[0]))
        return 0.3 * x


@pytest.mark.parametrize("S", [1, 2, 7, 50])
def test_heun_makes_2S_minus_1_calls_and_euler_S(S):
    for solver, expected in (("euler", S), ("heun", 2 * S - 1)):
        model = CountingModel()
        x, traj = fl.flow_sample(model, (3, 2), S, solver, num_steps=50, generator=torch.Generator().manual_seed(0),
                                 trajectory=True, progress=False)
        assert model.calls == expected, solver
        assert set(model.t) <= set(range(1, 51))
        assert traj.t == [*fl.flow_timesteps(50, S)[::-1], 0] and torch.equal(traj.xt[-1], x)


def test_euler_step_is_the_formula_and_heun_the_trapezoid():
    T, x_T = 10, torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = lambda x, t: torch.sin(x) + (t.double() / T).view(-1, 1)  # noqa: E731
    for solver in fl.FLOW_SOLVERS:
        x = x_T.clone()
        taus = [t / T for t in fl.flow_timesteps(T, 5)[::-1]] + [0.0]
        for tau, tau_prev in zip(taus, taus[1:]):
            u = model(x, torch.full((4,), round(tau * T)))
            x_next = x + (tau_prev - tau) * u
            if solver == "heun" and tau_prev > 0:
                x_next = x + (tau_prev - tau) * 0.5 * (u + model(x_next, torch.full((4,), round(tau_prev * T))))
            x = x_next
        got = fl.flow_sample(model, None, 5, solver, num_steps=T, x_T=x_T, progress=False)
        torch.testing.assert_close(got, x, rtol=1e-12, atol=1e-12)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="solver must be one of"):
        fl.flow_sample(lambda x, t: x, (2, 2), 5, "rk4", progress=False)
    with pytest.raises(ValueError, match="num_sample_steps must be an int in 1..10"):
        fl.flow_sample(lambda x, t: x, (2, 2), 11, num_steps=10, progress=False)
    with pytest.raises(ValueError, match="returned shape"):
        fl.flow_sample(lambda x, t: x[:, :1], (2, 2), 5, progress=False)
    with pytest.raises(ValueError, match=r"eps has shape \(2, 4\) but x0 has shape \(2, 3\)"):
        fl.flow_interpolate(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor(0.5))
