"""Chapter 10's stochastic sampler [EDM Alg. 2]: s_churn = 0 is the package's Heun, the churn levels and noise are
EDM's formulas on the integer grid, the whole sampler is Algorithm 2 written out here, it samples a 2-D mixture
with the exact ε, its network evaluations are counted, and bad arguments raise."""

import math

import pytest
import torch

import ddpm_core as dc
from ddpm_core.diffusion import churn as ch
from ddpm_core.diffusion import solvers as sv


def toy_model(xt, t):
    """A fixed smooth 'noise predictor' so that the samplers can be compared exactly."""
    return 0.2 * xt + 0.001 * t.view(-1, *([1] * (xt.dim() - 1))).to(xt.dtype)


class CountingModel:
    """toy_model, counting its calls and the timesteps it was asked about."""

    def __init__(self):
        self.calls, self.t = 0, []

    def __call__(self, xt, t):
        self.calls += 1
        self.t.extend(t.tolist())
        return toy_model(xt, t)


def _tables(s):
    """ᾱ, 1 − ᾱ and σ = √((1−ᾱ)/ᾱ) in float64 from the schedule's stored arrays."""
    ab, om = s.alpha_bars.double(), s.one_minus_alpha_bars.double()
    return ab, om, (om / ab).sqrt()


def _full(x, t):
    return torch.full((x.shape[0],), t, dtype=torch.long)


# -- no churn is Heun ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", sv.SPACINGS)
@pytest.mark.parametrize("clip_x0", [False, True])
def test_no_churn_is_the_package_heun_sampler_exactly(spacing, clip_x0):
    s = dc.NoiseSchedule.cosine(200)
    x_T = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    heun = sv.solver_sample(toy_model, s, None, 12, "heun", spacing, x_T=x_T, clip_x0=clip_x0)
    for kw in (dict(s_churn=0.0), dict(s_tmin=1e6, s_tmax=1e7)):  # no churn, or a band no σ_t lies in
        x = ch.churn_sample(toy_model, s, None, 12, spacing, x_T=x_T, clip_x0=clip_x0, progress=False,
                            generator=torch.Generator().manual_seed(2), **kw)
        torch.testing.assert_close(x, heun, rtol=0, atol=0)
    churned = ch.churn_sample(toy_model, s, None, 12, spacing, x_T=x_T, clip_x0=clip_x0, progress=False,
                              generator=torch.Generator().manual_seed(2), s_tmax=1e9)
    assert not torch.equal(churned, heun)


# -- EDM's formulas on the integer grid -------------------------------------------------------------------
@pytest.mark.parametrize("name, S, kw", [("linear", 20, {}), ("linear", 256, {}), ("cosine", 30, {}),
                                         ("linear", 50, dict(s_churn=5.0, s_tmin=0.5, s_tmax=5.0))])
def test_churn_levels_are_edm_gamma_rounded_to_the_nearest_trained_step(name, S, kw):
    s = dc.NoiseSchedule.linear() if name == "linear" else dc.NoiseSchedule.cosine()
    s_churn, s_tmin, s_tmax = kw.get("s_churn", 40.0), kw.get("s_tmin", 0.05), kw.get("s_tmax", 50.0)
    levels = ch.churn_levels(s, S, "karras", **kw)
    assert [t for t, _ in levels] == sv.solver_timesteps(s, S, "karras")[::-1]
    gamma = min(s_churn / S, math.sqrt(2) - 1)  # EDM Alg. 2, line 4
    _, _, sigma = _tables(s)
    log_sigma = sigma.log()
    churned = 0
    for t, t_hat in levels:
        assert isinstance(t_hat, int) and t <= t_hat <= s.num_steps
        if not s_tmin <= sigma[t] <= s_tmax or t == s.num_steps:
            assert t_hat == t
            continue
        target = math.log((1 + gamma) * sigma[t].item())  # log σ̂ = log((1 + γ) σ_t)
        best = (log_sigma[1:] - target).abs().argmin().item() + 1  # nearest of all trained t
        assert t_hat == best, (t, t_hat, best)
        churned += t_hat > t
    assert churned >= 5  # the band was exercised
    assert ch.churn_pairs(levels) == list(zip([th for _, th in levels], [th for _, th in levels[1:]] + [0]))


@pytest.mark.parametrize("t, t_hat", [(20, 31), (400, 520), (7, 7)])
def test_churn_noise_is_edm_line_6_in_sigma_space_and_the_forward_process(t, t_hat):
    s = dc.NoiseSchedule.linear()
    ab, _, sigma = _tables(s)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = ch.churn_noise(s, x, t, t_hat, 1.003, generator=torch.Generator().manual_seed(1))
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) if t_hat > t else 0.0
    x_bar_hat = x / ab[t].sqrt() + 1.003 * (sigma[t_hat] ** 2 - sigma[t] ** 2).sqrt() * z  # in x̄ = x/√ᾱ
    torch.testing.assert_close(got, ab[t_hat].sqrt() * x_bar_hat, rtol=1e-6, atol=1e-9)
    if t_hat == t:
        assert got is x
        return
    # with S_noise = 1, x_t ~ q(x_t) of a mixture goes to x_t̂ ~ q(x_t̂): means and covariances of the diffused mixture
    gm, n = dc.GaussianMixture2D.ring(4, 1.5, 0.3), 20_000
    x0 = gm.sample(n, torch.Generator().manual_seed(2)).double()
    xt = dc.q_sample(s, x0, t, torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    x_hat = ch.churn_noise(s, xt, t, t_hat, 1.0, generator=torch.Generator().manual_seed(4))
    a = ab[t_hat].item()
    expected_cov = a * (gm.covs + gm.means[:, :, None] * gm.means[:, None, :]).mean(0) + (1 - a) * torch.eye(2)
    torch.testing.assert_close(x_hat.mean(0), torch.zeros(2, dtype=torch.float64), rtol=0, atol=0.04)
    torch.testing.assert_close(torch.cov(x_hat.T), expected_cov.double(), rtol=0, atol=0.05)


def edm_algorithm_2(model, s, x_T, levels, s_noise, generator, clip=False):
    """EDM Algorithm 2 in x̄ = x/√ᾱ and σ, with D = x̂_0 and d = (x̄ − D)/σ, on the given (t_i, t̂_i); the
    churn's z drawn from ``generator`` in the order the sampler draws them."""
    ab, om, sigma = _tables(s)

    def slope(x_bar, t):
        x = ab[t].sqrt() * x_bar
        D = (x - om[t].sqrt() * model(x, _full(x, t))) / ab[t].sqrt()
        return (x_bar - (D.clamp(-1, 1) if clip else D)) / sigma[t]

    x_bar, ts = x_T / ab[levels[0][0]].sqrt(), [t for t, _ in levels] + [0]
    for i, (t, t_hat) in enumerate(levels):
        t_next = ts[i + 1]
        if t_hat > t:  # lines 5-6: raise σ_t to σ_t̂
            z = torch.randn(x_T.shape, generator=generator, dtype=x_T.dtype)
            x_bar = x_bar + s_noise * (sigma[t_hat] ** 2 - sigma[t] ** 2).sqrt() * z
        d = slope(x_bar, t_hat)  # line 7
        x_next = x_bar + (sigma[t_next] - sigma[t_hat]) * d  # line 8
        if t_next > 0:  # lines 9-11
            x_next = x_bar + (sigma[t_next] - sigma[t_hat]) * 0.5 * (d + slope(x_next, t_next))
        x_bar = x_next
    return x_bar  # ᾱ_0 = 1


@pytest.mark.parametrize("name, spacing, clip_x0", [("cosine", "karras", False), ("linear", "uniform", False),
                                                    ("linear", "karras", True)])
def test_churn_sample_is_edm_algorithm_2(name, spacing, clip_x0):
    s = dc.NoiseSchedule.linear(300) if name == "linear" else dc.NoiseSchedule.cosine(300)
    x_T = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = dict(s_churn=30.0, s_tmin=0.02, s_tmax=20.0)
    levels = ch.churn_levels(s, 15, spacing, **kw)
    assert sum(th > t for t, th in levels) >= 4  # the churn was exercised
    x, traj = ch.churn_sample(toy_model, s, None, 15, spacing, x_T=x_T, s_noise=1.007, clip_x0=clip_x0,
                              generator=torch.Generator().manual_seed(7), trajectory=True, progress=False, **kw)
    expected = edm_algorithm_2(toy_model, s, x_T, levels, 1.007, torch.Generator().manual_seed(7), clip_x0)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)  # the package forms some coefficients in float32
    assert traj.t == [th for _, th in levels] + [0] and torch.equal(traj.xt[-1], x)  # the churned states
    assert (traj.x0_hat[:-1].abs().max() > 1.0) != clip_x0


def test_same_generator_same_sample_and_the_step_object_restarts():
    s = dc.NoiseSchedule.linear(100)
    run = lambda seed: ch.churn_sample(toy_model, s, (3, 2), 10, s_tmax=1e9, progress=False,  # noqa: E731
                                       generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(run(0), run(0), rtol=0, atol=0)
    assert not torch.equal(run(0), run(1))
    levels = ch.churn_levels(s, 10, s_tmax=1e9)
    step = ch.ChurnStep(toy_model, levels, generator=torch.Generator().manual_seed(0))
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(5))
    walk = lambda: list(dc.reverse_loop(toy_model, s, None, ch.churn_pairs(levels), step, x_T=x_T,  # noqa: E731
                                        progress=False))[-1][1]
    first = walk()
    step.generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(walk(), first, rtol=0, atol=0)  # a second walk starts at step 0 again


# -- it samples the data distribution -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixture_problem():
    """An asymmetric 3-component mixture, its exact ε* for DDPM's linear schedule, and its exact moments."""
    s = dc.NoiseSchedule.linear()
    gm = dc.GaussianMixture2D([[-1.0, 0.5], [1.5, -0.5], [0.0, 1.5]], [0.3, 0.5, 0.2], [0.3, 0.5, 0.2])

    def eps_exact(xt, t):
        return gm.eps_star(xt, s.alpha_bars[int(t[0])].item())

    w, mu = gm.weights, gm.means
    mean = (w[:, None] * mu).sum(0)
    cov = (w[:, None, None] * (gm.covs + mu[:, :, None] * mu[:, None, :])).sum(0) - mean[:, None] * mean[None]
    log_p = gm.log_prob(gm.sample(100_000, torch.Generator().manual_seed(9)).double()).mean().item()  # E log p
    return s, gm, eps_exact, mean, cov, log_p


def _moment_errors(gm, x, mean, cov, log_p):
    x = x.double()
    return ((x.mean(0) - mean).abs().max().item(), (torch.cov(x.T) - cov).abs().max().item(),
            abs(gm.log_prob(x).mean().item() - log_p))


MIXTURE_N, MIXTURE_S = 4000, 40  # S = 40 < S_churn/(√2 − 1): γ at its cap
MIXTURE_TOLERANCES = (0.08, 0.15, 0.15)  # mean, covariance (≈ 4 standard errors), E log p (nats)
# measured (seed 0): 0.020, 0.042, 0.094 with EDM's settings; S_noise = 1.2: 0.022, 0.19, 0.49; 1.5: 0.05, 0.46, 1.24


def test_churn_with_the_exact_eps_samples_the_mixture(mixture_problem):
    s, gm, eps_exact, mean, cov, log_p = mixture_problem
    kw = dict(generator=torch.Generator().manual_seed(0), progress=False)
    x = ch.churn_sample(eps_exact, s, (MIXTURE_N, 2), MIXTURE_S, **kw)
    assert torch.isfinite(x).all()
    errors = _moment_errors(gm, x, mean, cov, log_p)
    assert all(e < tol for e, tol in zip(errors, MIXTURE_TOLERANCES)), errors
    # the check can tell: 50 % too much churn noise fails it
    kw["generator"] = torch.Generator().manual_seed(0)
    too_noisy = _moment_errors(gm, ch.churn_sample(eps_exact, s, (MIXTURE_N, 2), MIXTURE_S, s_noise=1.5, **kw),
                               mean, cov, log_p)
    assert any(e > tol for e, tol in zip(too_noisy, MIXTURE_TOLERANCES)), too_noisy


# -- network evaluations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("S, spacing, kw", [(1, "karras", {}), (2, "uniform", {}), (8, "karras", dict(s_tmax=1e9)),
                                            (12, "quadratic", dict(s_churn=0.0)), (50, "karras", dict(s_tmin=0.0))])
def test_nfe_matches_a_model_that_counts_its_calls(S, spacing, kw):
    s = dc.NoiseSchedule.linear(50)
    model = CountingModel()
    ch.churn_sample(model, s, (2, 3), S, spacing, generator=torch.Generator().manual_seed(0), progress=False, **kw)
    assert model.calls == ch.churn_nfe(S) == 2 * S - 1 == sv.solver_nfe("heun", S)
    assert set(model.t) <= set(range(1, 51))  # only the integer t the network was trained on
    levels = ch.churn_levels(s, S, spacing, **kw)
    assert {th for _, th in levels} <= set(model.t)  # the first evaluation of each step is at its raised level


# -- bad arguments ----------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    s = dc.NoiseSchedule.linear(50)
    x = torch.zeros(2, 3)
    cases = [
        (ValueError, "s_churn must lie in", dict(s_churn=-1.0)),
        (TypeError, "s_churn must be a number", dict(s_churn="40")),
        (ValueError, "s_tmin must lie in", dict(s_tmin=-0.1)),
        (ValueError, r"s_tmax must lie in \[0.5, inf\)", dict(s_tmin=0.5, s_tmax=0.1)),
        (ValueError, r"s_noise must lie in \(0, inf\)", dict(s_noise=0.0)),
        (ValueError, "spacing must be one of", dict(spacing="cosine")),
    ]
    for error, message, kw in cases:
        with pytest.raises(error, match=message):
            ch.churn_sample(toy_model, s, (2, 3), kw.pop("S", 5), progress=False, **kw)
    for S in (0, 51):
        with pytest.raises(ValueError, match=r"num_sample_steps \(S\) must lie in 1..T - t_end = 50"):
            ch.churn_sample(toy_model, s, (2, 3), S, progress=False)
    with pytest.raises(TypeError, match="num_sample_steps must be an int"):
        ch.churn_nfe(5.0)
    with pytest.raises(ValueError, match="num_sample_steps must be an int >= 1"):
        ch.churn_nfe(0)
    with pytest.raises(ValueError, match="t_hat must be an int in 20..50"):
        ch.churn_noise(s, x, 20, 10)
    with pytest.raises(ValueError, match="t must be an int in 1..50"):
        ch.churn_noise(s, x, 0, 10)
    with pytest.raises(ValueError, match="levels must hold at least one"):
        ch.ChurnStep(toy_model, [])
    step = ch.ChurnStep(toy_model, ch.churn_levels(s, 5, s_tmax=1e9))
    with pytest.raises(ValueError, match="ChurnStep: step 0 should go from t_hat=50"):
        step(s, x, x, 40, 30)
    with pytest.raises(ValueError, match=r"returned shape \(2, 1\) for xt of shape \(2, 3\)"):
        ch.churn_sample(lambda xt, t: xt[:, :1], s, (2, 3), 5, progress=False)
