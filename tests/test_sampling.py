"""DDPM and DDIM samplers: the last step, determinism, DDIM(eta=1, S=T) = DDPM, pinned numbers."""

import pytest
import torch

import ddpm_core as dc


def toy_model(xt, t):
    """A fixed smooth 'noise predictor' so that samplers can be compared exactly."""
    return 0.2 * xt + 0.001 * t.view(-1, *([1] * (xt.dim() - 1))).float()


def test_ddpm_step_adds_no_noise_at_t1():
    s = dc.NoiseSchedule.linear(100)
    xt, eps = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    a = dc.ddpm_step(s, eps, xt, 1, generator=torch.Generator().manual_seed(0))
    b = dc.ddpm_step(s, eps, xt, 1, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    mean, _ = dc.p_mean_variance(s, eps, xt, 1)
    torch.testing.assert_close(a, mean, rtol=0, atol=0)
    # at t > 1 the generator matters
    c = dc.ddpm_step(s, eps, xt, 2, generator=torch.Generator().manual_seed(0))
    d = dc.ddpm_step(s, eps, xt, 2, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(c, d)


def test_ddpm_step_variance_by_monte_carlo():
    s = dc.NoiseSchedule.linear(100)
    N = 40_000
    xt, eps = torch.zeros(N, 1), torch.zeros(N, 1)
    for variance in ("beta", "beta_tilde"):
        x = dc.ddpm_step(s, eps, xt, 50, generator=torch.Generator().manual_seed(0), variance=variance)
        target = s.reverse_variances(variance)[50].item()
        assert x.var().item() == pytest.approx(target, rel=5 * (2 / N) ** 0.5)


def test_ddpm_sample_reproducible_and_trajectory():
    s = dc.NoiseSchedule.linear(30)
    x1 = dc.ddpm_sample(toy_model, s, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0), progress=False)
    x2, traj = dc.ddpm_sample(toy_model, s, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0),
                              progress=False, trajectory=True)
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)
    assert traj.t == list(range(30, -1, -1))
    assert traj.xt.shape == (31, 2, 1, 4, 4) and traj.x0_hat.shape == (31, 2, 1, 4, 4)
    torch.testing.assert_close(traj.xt[-1], x1)
    # trajectory x0_hat is x0_from_eps at each step
    t = torch.full((2,), 30)
    torch.testing.assert_close(traj.x0_hat[0], dc.x0_from_eps(s, traj.xt[0], t, toy_model(traj.xt[0], t)))


def test_ddim_eta0_is_deterministic_given_xT():
    s = dc.NoiseSchedule.cosine(100)
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    a = dc.ddim_sample(toy_model, s, None, 10, 0.0, x_T=x_T, generator=torch.Generator().manual_seed(1), progress=False)
    b = dc.ddim_sample(toy_model, s, None, 10, 0.0, x_T=x_T, generator=torch.Generator().manual_seed(2), progress=False)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = dc.ddim_sample(toy_model, s, None, 10, 0.5, x_T=x_T, generator=torch.Generator().manual_seed(1), progress=False)
    d = dc.ddim_sample(toy_model, s, None, 10, 0.5, x_T=x_T, generator=torch.Generator().manual_seed(2), progress=False)
    assert not torch.equal(c, d)


def test_ddim_eta1_full_steps_equals_ddpm():
    # DDIM eq. 16: eta = 1 and tau = 1..T give sigma_t^2 = beta_tilde_t and the DDPM mean.
    s = dc.NoiseSchedule.linear(50)
    xt, eps = torch.randn(5, 1, 3, 3), torch.randn(5, 1, 3, 3)
    t = torch.tensor([2, 10, 25, 40, 50])
    mean, var = dc.p_mean_variance(s, eps, xt, t, variance="beta_tilde")
    det = dc.ddim_step(s, eps, xt, t, t - 1, eta=0.0)
    torch.testing.assert_close(dc.ddim_step(s, eps, xt, t, t - 1, eta=1.0, generator=torch.Generator().manual_seed(0))
                               - dc.ddim_step(s, eps, xt, t, t - 1, eta=1.0, generator=torch.Generator().manual_seed(0)),
                               torch.zeros_like(xt))
    # the eta=1 step is mean + sqrt(beta_tilde) z, with the same z as a DDPM step drawing from the same generator
    ddim = dc.ddim_step(s, eps, xt, t, t - 1, eta=1.0, generator=torch.Generator().manual_seed(3))
    ddpm = dc.ddpm_step(s, eps, xt, t, generator=torch.Generator().manual_seed(3), variance="beta_tilde")
    torch.testing.assert_close(ddim, ddpm, atol=1e-5, rtol=1e-5)
    # and the whole sampler: S = T, eta = 1 reproduces ddpm_sample from the same generator
    g = lambda: torch.Generator().manual_seed(11)  # noqa: E731
    x_ddim = dc.ddim_sample(toy_model, s, (2, 1, 3, 3), 50, 1.0, generator=g(), progress=False)
    x_ddpm = dc.ddpm_sample(toy_model, s, (2, 1, 3, 3), generator=g(), progress=False)
    torch.testing.assert_close(x_ddim, x_ddpm, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(det, mean + var.sqrt())  # eta=0 differs from the stochastic step


def test_ddim_timesteps():
    assert dc.ddim_timesteps(1000, 1000) == list(range(1, 1001))
    assert dc.ddim_timesteps(1000, 1) == [1000]
    taus = dc.ddim_timesteps(1000, 50)
    assert len(taus) == 50 and taus[0] == 20 and taus[-1] == 1000 and taus == sorted(set(taus))
    assert len(set(dc.ddim_timesteps(1000, 999))) == 999


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(num_sample_steps=0), ValueError, "num_sample_steps"),
    (dict(num_sample_steps=101), ValueError, "num_sample_steps"),
    (dict(num_sample_steps=2.5), TypeError, "num_sample_steps"),
    (dict(eta=-0.1), ValueError, "eta"),
    (dict(eta=1.5), ValueError, "eta"),
])
def test_ddim_rejects_bad_input(kwargs, err, match):
    s = dc.NoiseSchedule.linear(100)
    with pytest.raises(err, match=match):
        dc.ddim_sample(toy_model, s, (1, 1, 2, 2), progress=False, **{"num_sample_steps": 10, **kwargs})


def test_samplers_reject_bad_shapes_and_steps():
    s = dc.NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="shape"):
        dc.ddpm_sample(toy_model, s, (0, 1, 2, 2), progress=False)
    with pytest.raises(ValueError, match="x_T"):
        dc.ddpm_sample(toy_model, s, (2, 1, 2, 2), x_T=torch.zeros(3, 1, 2, 2), progress=False)
    with pytest.raises(ValueError, match="t_prev"):
        dc.ddim_step(s, torch.zeros(1, 2), torch.zeros(1, 2), 3, 3)
    with pytest.raises(ValueError, match="1..10"):
        dc.ddpm_step(s, torch.zeros(1, 2), torch.zeros(1, 2), 11)
    with pytest.raises(ValueError, match="variance"):
        dc.ddpm_sample(toy_model, s, (1, 2), variance="fixedlarge", progress=False)


def test_pinned_numbers_from_a_seeded_run():
    # diffusers-style: exact numbers from one seeded run, so any silent change of the math fails.
    s = dc.NoiseSchedule.linear(40)
    x = dc.ddpm_sample(toy_model, s, (1, 1, 2, 2), generator=torch.Generator().manual_seed(0), progress=False)
    y = dc.ddim_sample(toy_model, s, (1, 1, 2, 2), 8, 0.0, generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(x.flatten(), torch.tensor(PINNED_DDPM), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y.flatten(), torch.tensor(PINNED_DDIM), rtol=1e-4, atol=1e-5)


PINNED_DDPM = [0.870466, 0.962841, -2.865243, -0.020507]
PINNED_DDIM = [1.639718, -0.330639, -2.355706, 0.595086]


@pytest.mark.parametrize("t, t_prev", [(2, 1), (3, 1), (10, 9), (20, 2), (100, 99), (500, 450), (999, 998),
                                       (1000, 999), (1000, 950), (50, 0)])
def test_ddim_sigma_is_accurate_at_every_t(t, t_prev):
    # x_t = 0 and eps_theta = 0 leave x_{t'} = sigma z: sigma^2 against DDIM eq. 16 in float64, at the
    # ends of the schedule where 1 - ᾱ_t/ᾱ_t' or (1-ᾱ_t) - (1-ᾱ_t') would lose digits in float32.
    s = dc.NoiseSchedule.linear()
    ab = torch.cat([torch.ones(1, dtype=torch.float64),
                    torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)])
    sigma2 = (1 - ab[t_prev]) / (1 - ab[t]) * (1 - ab[t] / ab[t_prev])
    zeros = torch.zeros(4096, 1)
    x_prev = dc.ddim_step(s, zeros, zeros, t, t_prev, eta=1.0, generator=torch.Generator().manual_seed(0))
    z = torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    if t_prev == 0:
        assert torch.equal(x_prev, zeros)  # the last step adds no noise
    else:
        torch.testing.assert_close((x_prev / z).pow(2).double(), sigma2.expand(4096, 1), rtol=1e-5, atol=0)
