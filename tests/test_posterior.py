"""Posterior q(x_{t-1}|x_t,x_0) against Bayes computed independently, and the eps/x0 identities."""

import pytest
import torch

import ddpm_core as dc


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("t", [2, 10, 500, 1000])
def test_q_posterior_equals_bayes_product_of_gaussians(kind, t):
    # Independent algebra: q(x_{t-1}|x_t,x0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(ab_{t-1}) x0, 1-ab_{t-1}).
    # Precisions add; the mean is the precision-weighted combination of the two "observations" of x_{t-1}.
    s = getattr(dc.NoiseSchedule, kind)(1000)
    b_all = s.betas.double()  # recompute in float64: 1 - alpha_bar_1 = beta_1 loses digits in float32
    a, b = 1 - b_all[t], b_all[t]
    ab_prev = torch.cumprod(1 - b_all, 0)[t - 1]
    x0 = torch.tensor([[-0.7], [0.2], [1.0]], dtype=torch.float64)
    xt = torch.tensor([[0.3], [-1.2], [0.9]], dtype=torch.float64)
    prec_lik, mean_lik = a / b, xt / a.sqrt()  # x_t = sqrt(a) x_{t-1} + noise  =>  x_{t-1} "observed" as x_t/sqrt(a)
    prec_prior, mean_prior = 1 / (1 - ab_prev), ab_prev.sqrt() * x0
    var = 1 / (prec_lik + prec_prior)
    mean = var * (prec_lik * mean_lik + prec_prior * mean_prior)
    got_mean, got_var = dc.q_posterior(s, x0.float(), xt.float(), t)
    torch.testing.assert_close(got_mean.double(), mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_var.double().flatten(), var.expand(3), rtol=1e-4, atol=1e-9)


def test_q_posterior_by_numerical_bayes_on_a_grid():
    s = dc.NoiseSchedule.linear(100)
    t, x0, xt = 30, 0.4, -0.25
    grid = torch.linspace(-4, 4, 200_001, dtype=torch.float64)
    N = lambda x, m, v: torch.exp(-(x - m) ** 2 / (2 * v)) / (2 * torch.pi * v) ** 0.5  # noqa: E731
    w = N(xt, s.alphas[t].double().sqrt() * grid, s.betas[t].double()) * N(
        grid, s.alpha_bars[t - 1].double().sqrt() * x0, 1 - s.alpha_bars[t - 1].double())
    w = w / w.sum()
    m_num = (w * grid).sum()
    v_num = (w * (grid - m_num) ** 2).sum()
    mean, var = dc.q_posterior(s, torch.tensor([[x0]]), torch.tensor([[xt]]), t)
    assert mean.item() == pytest.approx(m_num.item(), abs=1e-5)
    assert var.item() == pytest.approx(v_num.item(), rel=1e-4)


def test_beta_tilde_at_most_beta():
    for s in (dc.NoiseSchedule.linear(), dc.NoiseSchedule.cosine()):
        assert (s.beta_tildes <= s.betas).all()


def test_x0_eps_roundtrip_and_mu_theta_with_true_eps():
    s = dc.NoiseSchedule.cosine(200)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([1, 2, 50, 150, 200])
    xt = dc.q_sample(s, x0, t, eps)
    torch.testing.assert_close(dc.x0_from_eps(s, xt, t, eps), x0, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(dc.eps_from_x0(s, xt, t, x0), eps, atol=1e-3, rtol=1e-3)
    # mu_theta from the true eps is the posterior mean with the true x0 [DDPM eq. 11 vs eq. 7]
    mean_p, var_p = dc.p_mean_variance(s, eps, xt, t)
    mean_q, _ = dc.q_posterior(s, x0, xt, t)
    torch.testing.assert_close(mean_p, mean_q, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(var_p.flatten(), s.reverse_variances("beta_tilde")[t])
    mean_clip, _ = dc.p_mean_variance(s, eps, xt, t, clip_x0=True)
    torch.testing.assert_close(mean_clip, mean_q, atol=2e-4, rtol=1e-4)  # x0 in [-1, 1]: clipping is a no-op


def test_bad_input():
    s = dc.NoiseSchedule.linear(10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="1..10"):
        dc.q_posterior(s, x, x, 0)
    with pytest.raises(ValueError, match="shape"):
        dc.q_posterior(s, x, torch.zeros(2, 4), 1)
    with pytest.raises(ValueError, match="variance"):
        dc.p_mean_variance(s, x, x, 3, variance="learned")
    with pytest.raises(ValueError, match="1..10"):
        dc.eps_from_x0(s, x, 0, x)
