"""Chapter 10's solvers: each step against its paper's formula written out here, their measured orders
on a mixture with the exact score, their network evaluations, the spacings, and the argument errors."""

import math

import numpy as np
import pytest
import torch

import ddpm_core as dc
from ddpm_core.diffusion import solvers as sv


def toy_model(xt, t):
    """A fixed smooth 'noise predictor' so that the solvers can be compared exactly."""
    return 0.2 * xt + 0.001 * t.view(-1, *([1] * (xt.dim() - 1))).to(xt.dtype)


class CountingModel:
    """toy_model, counting its calls and the timesteps it was asked about."""

    def __init__(self):
        self.calls, self.t = 0, []

    def __call__(self, xt, t):
        self.calls += 1
        self.t.append(int(t[0]))
        return toy_model(xt, t)


def _tables(s):
    """ᾱ, 1 − ᾱ in float64 from the schedule's stored arrays (as the package reads them)."""
    return s.alpha_bars.double(), s.one_minus_alpha_bars.double()


def _full(x, t):
    return torch.full((x.shape[0],), t, dtype=torch.long)


# -- each step is its paper's formula -------------------------------------------------------------
@pytest.mark.parametrize("clip_x0", [False, True])
def test_euler_step_is_ddim_eta0_and_an_euler_step_in_sigma(clip_x0):
    s = dc.NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(0)
    for t, t_prev in [(100, 80), (50, 49), (7, 0)]:
        xt, eps = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
        x_prev, x0_hat = sv.euler_step(s, eps, xt, t, t_prev, clip_x0=clip_x0)
        ddim = dc.ddim_step(s, eps, xt, t, t_prev, eta=0.0, clip_x0=clip_x0, return_x0_hat=True)
        torch.testing.assert_close(x_prev, ddim[0], rtol=0, atol=0)
        torch.testing.assert_close(x0_hat, ddim[1], rtol=0, atol=0)
        if not clip_x0:  # x̄' = x̄ + (σ' − σ) ε, in float64 from scratch
            ab, om = _tables(s)
            sigma = (om / ab).sqrt()
            x_bar = xt.double() / ab[t].sqrt() + (sigma[t_prev] - sigma[t]) * eps.double()
            torch.testing.assert_close(x_prev.double(), ab[t_prev].sqrt() * x_bar, rtol=1e-5, atol=1e-5)


def heun_from_scratch(model, s, x_T, pairs, clip=False):
    """EDM Algorithm 1 without churn, in x̄ = x/√ᾱ and σ = √((1−ᾱ)/ᾱ), with the denoiser D = x̂_0 and the
    slope d = (x̄ − D)/σ; Euler on the step to σ = 0. ``clip`` clips D to [-1, 1]."""
    ab, om = _tables(s)
    sigma, x = (om / ab).sqrt(), x_T

    def slope(x_bar, t):
        x = ab[t].sqrt() * x_bar
        D = (x - om[t].sqrt() * model(x, _full(x, t))) / ab[t].sqrt()
        return (x_bar - (D.clamp(-1, 1) if clip else D)) / sigma[t]

    for t, t_prev in pairs:
        x_bar = x / ab[t].sqrt()
        d = slope(x_bar, t)
        x_bar_next = x_bar + (sigma[t_prev] - sigma[t]) * d
        if t_prev > 0:
            x_bar_next = x_bar + (sigma[t_prev] - sigma[t]) * 0.5 * (d + slope(x_bar_next, t_prev))
        x = ab[t_prev].sqrt() * x_bar_next
    return x


def dpmpp_2m_from_scratch(model, s, x_T, pairs, clip=False):
    """DPM-Solver++ Algorithm 2 with α = √ᾱ, σ = √(1−ᾱ), λ = log(α/σ); first order at the ends.
    ``clip`` clips each data prediction x_θ to [-1, 1]."""
    ab, om = _tables(s)
    alpha, sig = ab.sqrt(), om.sqrt()
    lam = (alpha / sig).log()  # λ_0 = +inf
    x, last = x_T, None
    for t, t_prev in pairs:
        x0 = (x - sig[t] * model(x, _full(x, t))) / alpha[t]
        x0 = x0.clamp(-1, 1) if clip else x0
        h = lam[t_prev] - lam[t]
        D = x0
        if last is not None and t_prev > 0:
            r = (lam[t] - lam[last[1]]) / h
            D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * last[0]
        x = sig[t_prev] / sig[t] * x - alpha[t_prev] * (torch.exp(-h) - 1) * D
        last = (x0, t)
    return x


@pytest.mark.parametrize("solver, from_scratch", [("heun", heun_from_scratch), ("dpmpp_2m", dpmpp_2m_from_scratch)])
@pytest.mark.parametrize("spacing, t_end, clip_x0", [("uniform", 0, False), ("karras", 0, False),
                                                     ("quadratic", 20, False), ("uniform", 0, True)])
def test_heun_and_dpmpp_2m_are_their_papers_algorithms(solver, from_scratch, spacing, t_end, clip_x0):
    s = dc.NoiseSchedule.cosine(200)
    x_T = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, traj = sv.solver_sample(toy_model, s, None, 8, solver, spacing, t_end=t_end, x_T=x_T, clip_x0=clip_x0,
                               trajectory=True)
    expected = from_scratch(toy_model, s, x_T, sv.solver_pairs(s, 8, spacing, t_end), clip=clip_x0)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-7)
    assert (traj.x0_hat[:-1].abs().max() > 1.0) != clip_x0  # the clipping was exercised


def test_dpmpp_2m_first_step_is_euler_and_a_reused_step_starts_afresh():
    s = dc.NoiseSchedule.linear(100)
    xt = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    eps = toy_model(xt, _full(xt, 100))
    step = sv.DPMSolverPP2MStep()
    first, _ = step(s, eps, xt, 100, 60)
    torch.testing.assert_close(first, sv.euler_step(s, eps, xt, 100, 60)[0], rtol=1e-5, atol=1e-6)
    second, _ = step(s, toy_model(first, _full(xt, 60)), first, 60, 30)  # uses the history
    torch.testing.assert_close(step(s, eps, xt, 100, 60)[0], first)  # a new run: first order again
    assert not torch.allclose(second, sv.euler_step(s, toy_model(first, _full(xt, 60)), first, 60, 30)[0])


# -- the order of each solver, measured --------------------------------------------------------------
ORDER_T_END = 160  # σ_160 ≈ 0.56 for DDPM's linear schedule: away from the singular end σ = 0
ORDER_STEPS = (20, 40, 80, 160)
ORDER_RANGES = {"euler": (0.8, 1.3), "heun": (1.7, 2.6), "dpmpp_2m": (1.7, 2.6)}  # measured: 1.02, 2.06, 1.98


@pytest.fixture(scope="module")
def pf_ode_problem():
    """The 8-Gaussian ring, ε* = −√(1−ᾱ) ∇log p_t, one fixed float64 x_T, and Heun with a step at every t."""
    s, gm = dc.NoiseSchedule.linear(), dc.GaussianMixture2D.ring()

    def eps_exact(xt, t):
        a = s.alpha_bars[int(t[0])].item()
        return -math.sqrt(1 - a) * gm.score_t(xt, a)

    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = sv.solver_sample(eps_exact, s, None, s.num_steps - ORDER_T_END, "heun", t_end=ORDER_T_END, x_T=x_T)
    return s, eps_exact, x_T, reference


@pytest.mark.parametrize("solver", sv.SOLVERS)
def test_order_of_each_solver_on_the_pf_ode_with_the_exact_score(solver, pf_ode_problem):
    s, eps_exact, x_T, reference = pf_ode_problem
    errors = [(sv.solver_sample(eps_exact, s, None, n, solver, t_end=ORDER_T_END, x_T=x_T) - reference)
              .norm(dim=1).max().item() for n in ORDER_STEPS]
    slope = -np.polyfit(np.log(ORDER_STEPS), np.log(errors), 1)[0]
    low, high = ORDER_RANGES[solver]
    assert low < slope < high, f"{solver}: errors {errors}, slope {slope:.2f}"


# -- network evaluations --------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", sv.SOLVERS)
@pytest.mark.parametrize("t_end", [0, 10])
def test_nfe_matches_a_model_that_counts_its_calls(solver, t_end):
    s = dc.NoiseSchedule.linear(50)
    model = CountingModel()
    sv.solver_sample(model, s, (2, 3), 6, solver, "karras", t_end=t_end, generator=torch.Generator().manual_seed(0))
    assert model.calls == sv.solver_nfe(solver, 6, t_end)
    assert model.calls == {"euler": 6, "dpmpp_2m": 6, "heun": 12 if t_end else 11}[solver]
    assert set(model.t) <= set(range(max(t_end, 1), 51))  # only the t the network was trained on


# -- spacings -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", sv.SPACINGS)
@pytest.mark.parametrize("T, S, t_end", [(1000, 10, 0), (1000, 200, 0), (1000, 37, 160), (50, 50, 0), (50, 1, 0),
                                         (20, 15, 4)])
def test_spacings_are_increasing_distinct_and_inside_the_trained_steps(spacing, T, S, t_end):
    s = dc.NoiseSchedule.linear(T)
    taus = sv.solver_timesteps(s, S, spacing, t_end)
    assert len(taus) == S and taus[-1] == T and taus[0] > t_end
    assert all(a < b for a, b in zip(taus, taus[1:])) and all(isinstance(t, int) for t in taus)
    pairs = sv.solver_pairs(s, S, spacing, t_end)
    assert pairs[0][0] == T and pairs[-1] == (taus[0], t_end) and len(pairs) == S
    if S == T - t_end:
        assert taus == list(range(t_end + 1, T + 1))


def test_uniform_is_ddim_quadratic_is_pinned_and_karras_is_denser_at_small_t():
    s = dc.NoiseSchedule.linear()
    assert sv.solver_timesteps(s, 10, "uniform") == dc.ddim_timesteps(1000, 10) == list(range(100, 1001, 100))
    assert sv.solver_timesteps(s, 10, "quadratic") == [10, 40, 90, 160, 250, 360, 490, 640, 810, 1000]
    uniform, karras = sv.solver_timesteps(s, 20, "uniform"), sv.solver_timesteps(s, 20, "karras")
    assert karras[0] == 1 and sum(t <= 100 for t in karras) > 2 * sum(t <= 100 for t in uniform)
    ab = s.alpha_bars.double()
    log_sigma = 0.5 * (s.one_minus_alpha_bars.double().log() - ab.log())
    levels = log_sigma[torch.tensor(karras)]  # EDM eq. 5: σ^(1/ρ) evenly spaced, up to the rounding to t
    root = (levels / sv.KARRAS_RHO).exp()
    gaps = root.diff()
    assert (gaps - gaps.mean()).abs().max() < 0.1 * gaps.mean()


# -- the sampler ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip_x0", [False, True])
def test_euler_with_uniform_spacing_is_ddim_sample(clip_x0):
    s = dc.NoiseSchedule.cosine(100)
    kw = dict(generator=torch.Generator().manual_seed(3), progress=False, clip_x0=clip_x0)
    ddim = dc.ddim_sample(lambda xt, t: 3.0 * toy_model(xt, t), s, (2, 1, 4, 4), 10, 0.0, **kw)
    kw["generator"] = torch.Generator().manual_seed(3)
    x = sv.solver_sample(lambda xt, t: 3.0 * toy_model(xt, t), s, (2, 1, 4, 4), 10, "euler", "uniform", **kw)
    torch.testing.assert_close(x, ddim, rtol=0, atol=0)


@pytest.mark.parametrize("solver", sv.SOLVERS)
def test_trajectory_ends_at_t_end_and_clip_x0_bounds_every_prediction(solver):
    s = dc.NoiseSchedule.linear(60)
    model = lambda xt, t: -2.0 * xt  # noqa: E731  x̂_0 far outside [-1, 1]
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(4))
    x, traj = sv.solver_sample(model, s, None, 5, solver, t_end=12, x_T=x_T, trajectory=True, clip_x0=True)
    assert traj.t == [60, 50, 41, 31, 22, 12] and torch.equal(traj.xt[-1], x)
    assert traj.x0_hat[:-1].abs().max() <= 1.0
    _, free = sv.solver_sample(model, s, None, 5, solver, t_end=12, x_T=x_T, trajectory=True)
    assert free.x0_hat[:-1].abs().max() > 1.0


def test_bad_arguments_raise_clear_errors():
    s = dc.NoiseSchedule.linear(50)
    with pytest.raises(ValueError, match="solver must be one of"):
        sv.solver_sample(toy_model, s, (2, 3), 5, "rk4")
    with pytest.raises(ValueError, match="solver must be one of"):
        sv.solver_nfe("dpm_3m", 5)
    with pytest.raises(ValueError, match="spacing must be one of"):
        sv.solver_sample(toy_model, s, (2, 3), 5, "heun", "cosine")
    for S in (0, 51):
        with pytest.raises(ValueError, match=r"num_sample_steps \(S\) must lie in 1..T - t_end = 50"):
            sv.solver_timesteps(s, S)
    with pytest.raises(ValueError, match="1..T - t_end = 40"):
        sv.solver_sample(toy_model, s, (2, 3), 41, t_end=10)
    with pytest.raises(TypeError, match="num_sample_steps must be an int"):
        sv.solver_timesteps(s, 5.0)
    with pytest.raises(ValueError, match="t_end must be an int in 0..49"):
        sv.solver_timesteps(s, 5, t_end=50)
    with pytest.raises(ValueError, match="t_prev must be an int in 0..19"):
        sv.HeunStep(toy_model)(s, torch.zeros(2, 3), torch.zeros(2, 3), 20, 20)
    with pytest.raises(ValueError, match="t_last must be an int in 21..50"):
        sv.dpmpp_2m_update(s, torch.zeros(2, 3), torch.zeros(2, 3), 20, 10, torch.zeros(2, 3), 15)
