"""Learned reverse variances [IDDPM eq. 15-16]: the interpolation against improved-diffusion's numbers, the bound's
terms against the fixed-variance ones at the two ends, and L_hybrid against a by-hand computation."""

import math

import numpy as np
import pytest
import torch
from scipy.special import log_ndtr, ndtr

import ddpm_core as dc
from ddpm_core.diffusion.learned_variance import (HYBRID_LAMBDA, learned_log_variance, loss_hybrid,
                                                  split_learned_output, vlb_terms_learned)


def grid_images(shape, g):
    """Random images on the 8-bit grid of [-1, 1], with both edge levels present."""
    x = torch.randint(0, 256, shape, generator=g).float() / 127.5 - 1
    x.view(-1)[:2] = torch.tensor([-1.0, 1.0])
    return x


def iddpm_arrays(name, T):
    """improved-diffusion's float64 arrays (index i is paper t = i + 1), rebuilt from its formulas."""
    if name == "linear":
        betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    else:  # betas_for_alpha_bar with the cosine alpha_bar and max_beta = 0.999
        ab = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - ab((i + 1) / T) / ab(i / T), 0.999) for i in range(T)])
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
    return dict(betas=betas, alphas_cumprod=alphas_cumprod, alphas_cumprod_prev=alphas_cumprod_prev,
                posterior_variance=posterior_variance, log_var_clipped=posterior_log_variance_clipped)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_learned_log_variance_reproduces_improved_diffusion_learned_range(name):
    # improved-diffusion, p_mean_variance with LEARNED_RANGE: frac = (r + 1) / 2,
    # log var = frac * log(betas) + (1 - frac) * posterior_log_variance_clipped, at index t - 1.
    T = 1000
    s = dc.NoiseSchedule.linear(T) if name == "linear" else dc.NoiseSchedule.cosine(T)
    ref = iddpm_arrays(name, T)
    t = np.array([1, 2, 3, 10, 500, 999, 1000])
    raw = np.array([[-1.0], [-0.3], [0.0], [0.5], [1.0], [1.7], [-2.0]]) * np.ones((1, 3))  # (7, 3), any real
    frac = (raw + 1) / 2
    expect = frac * np.log(ref["betas"][t - 1])[:, None] + (1 - frac) * ref["log_var_clipped"][t - 1][:, None]
    got = learned_log_variance(s, torch.tensor(frac, dtype=torch.float32), torch.tensor(t))
    assert got.shape == (7, 3) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), expect, rtol=1e-6, atol=2e-6)
    # the raw output goes through split_learned_output to the same numbers
    out = torch.cat([torch.zeros(7, 3), torch.tensor(raw, dtype=torch.float32)], 1)[:, :, None]  # (7, 6, 1)
    _, v = split_learned_output(out, torch.zeros(7, 3, 1))
    np.testing.assert_allclose(learned_log_variance(s, v, torch.tensor(t))[..., 0].double().numpy(), expect,
                               rtol=1e-6, atol=2e-6)


def test_learned_variance_ends_are_the_fixed_variances_and_t1_is_clipped():
    s = dc.NoiseSchedule.linear(100)
    t = torch.tensor([1, 2, 50, 100])
    ones = torch.ones(4, 2)
    torch.testing.assert_close(learned_log_variance(s, 0 * ones, t).exp(), s.beta_tildes[[2, 2, 50, 100], None] * ones)
    torch.testing.assert_close(learned_log_variance(s, ones, t).exp(), s.betas[t, None] * ones)
    geo = (s.betas[t] * s.reverse_variances("beta_tilde")[t]).sqrt()[:, None] * ones  # v = 1/2: geometric mean
    torch.testing.assert_close(learned_log_variance(s, 0.5 * ones, t).exp(), geo)
    assert torch.isfinite(learned_log_variance(s, -ones, 1)).all()  # int t, and log beta_tilde_1 = -inf never used


@pytest.mark.parametrize("v, variance", [(0.0, "beta_tilde"), (1.0, "beta")])
def test_vlb_terms_learned_at_the_ends_equal_the_fixed_variance_terms(v, variance):
    s = dc.NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x0 = grid_images((5, 2, 4, 4), g)
    t = torch.tensor([1, 1, 2, 400, 1000])  # t = 1 (the decoder) with two different images
    eps, eps_theta = torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g)
    xt = dc.q_sample(s, x0, t, eps)
    got = vlb_terms_learned(s, eps_theta, torch.full_like(x0, v), x0, xt, t)
    expect = dc.vlb_term_bpd(s, x0, xt, t, eps_theta, variance)
    assert got.shape == (5,)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)
    # and the two ends differ, so the variance really enters each term (at large t, beta_tilde_t ~ beta_t)
    other = dc.vlb_term_bpd(s, x0, xt, t, eps_theta, "beta" if variance == "beta_tilde" else "beta_tilde")
    assert ((got - other).abs()[:3] > 0.1).all()


def by_hand_hybrid(x0, eps, t, out, lam, T):
    """L_hybrid per image from the formulas, in float64 numpy [IDDPM eq. 15-16, DDPM eq. 5, 11, 13]."""
    x0, eps, out = (a.double().numpy() for a in (x0, eps, out))
    C = x0.shape[1]
    a = iddpm_arrays("linear", T)
    b, ab, ab_prev = (a[k][t - 1].reshape(-1, 1, 1, 1) for k in ("betas", "alphas_cumprod", "alphas_cumprod_prev"))
    bt = a["posterior_variance"][t - 1].reshape(-1, 1, 1, 1)
    xt = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps
    eps_theta, v = out[:, :C], (out[:, C:] + 1) / 2
    mse = ((eps - eps_theta) ** 2).mean((1, 2, 3))
    mu_tilde = np.sqrt(ab_prev) * b / (1 - ab) * x0 + np.sqrt(1 - b) * (1 - ab_prev) / (1 - ab) * xt
    mu = (xt - b / np.sqrt(1 - ab) * eps_theta) / np.sqrt(1 - b)
    log_var = v * np.log(b) + (1 - v) * a["log_var_clipped"][t - 1].reshape(-1, 1, 1, 1)
    kl = 0.5 * (-1 + log_var - np.log(np.where(t.reshape(-1, 1, 1, 1) == 1, 1.0, bt))
                + np.exp(-log_var) * (bt + (mu_tilde - mu) ** 2))
    sd, h = np.exp(0.5 * log_var), 1 / 255
    z_hi, z_lo = (x0 + h - mu) / sd, (x0 - h - mu) / sd
    with np.errstate(divide="ignore"):  # the inner-bin formula is not used at the edge levels
        inner = np.log(ndtr(z_hi) - ndtr(z_lo))
    log_p = np.where(x0 == -1, log_ndtr(z_hi), np.where(x0 == 1, log_ndtr(-z_lo), inner))
    term = np.where(t.reshape(-1, 1, 1, 1) == 1, -log_p, kl).mean((1, 2, 3)) / math.log(2)  # bits/dim
    return mse + lam * T * term


@pytest.mark.parametrize("lam", [HYBRID_LAMBDA, 0.37])
def test_loss_hybrid_equals_the_formulas_by_hand(lam):
    T = 1000
    s = dc.NoiseSchedule.linear(T)
    g = torch.Generator().manual_seed(1)
    x0 = grid_images((4, 2, 3, 3), g)
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([1, 2, 300, 1000])
    seen = {}

    def model(xt, t_in):  # a toy model: eps_theta near the truth, a raw variance output in (-1.5, 1.5)
        out = torch.cat([eps + 0.1 * torch.sin(3 * xt), 1.5 * torch.tanh(2 * xt + 0.3)], 1)  # (B, 2C, H, W)
        seen["out"] = out
        return out

    got = loss_hybrid(model, s, x0, t, eps, lam=lam, reduction="none")
    expect = by_hand_hybrid(x0, eps, t.numpy(), seen["out"], lam, T)
    assert got.shape == (4,)
    # atol: a KL between near-equal Gaussians (t = T) is ~1e-7 nats of float32 rounding, times lam T
    np.testing.assert_allclose(got.double().numpy(), expect, rtol=2e-4, atol=lam * T * 2e-7)
    assert loss_hybrid(model, s, x0, t, eps, lam=lam).item() == pytest.approx(expect.mean(), rel=2e-4)


def test_loss_hybrid_with_lambda_zero_is_loss_simple_on_the_eps_channels():
    s = dc.NoiseSchedule.cosine(200)
    g = torch.Generator().manual_seed(2)
    x0 = grid_images((6, 1, 4, 4), g)
    w = torch.randn(2, 1, generator=g)
    model = lambda xt, t: torch.cat([w[0] * xt, w[1] * xt + t.view(-1, 1, 1, 1) / 200], 1)  # noqa: E731
    eps_only = lambda xt, t: model(xt, t)[:, :1]  # noqa: E731
    for reduction in ("mean", "none"):
        got = loss_hybrid(model, s, x0, generator=torch.Generator().manual_seed(5), lam=0.0, reduction=reduction)
        expect = dc.loss_simple(eps_only, s, x0, generator=torch.Generator().manual_seed(5), reduction=reduction)
        torch.testing.assert_close(got, expect)
    with_vlb = loss_hybrid(model, s, x0, generator=torch.Generator().manual_seed(5), reduction="none")
    assert (with_vlb > expect).all()  # lam > 0 adds the (positive) bound term


def test_the_bound_trains_only_the_variance_channels():
    s = dc.NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(3)
    x0 = grid_images((3, 2, 4, 4), g)
    t, eps = torch.tensor([1, 2, 60]), torch.randn(x0.shape, generator=g)
    out = torch.randn(3, 4, 4, 4, generator=g, requires_grad=True)

    def grad(lam):
        (g_out,) = torch.autograd.grad(loss_hybrid(lambda xt, t: out, s, x0, t, eps, lam=lam), out)
        return g_out

    g_zero, g_lam = grad(0.0), grad(0.5)
    assert torch.equal(g_zero[:, 2:], torch.zeros_like(g_zero[:, 2:]))  # L_simple ignores the variance channels
    assert torch.equal(g_lam[:, :2], g_zero[:, :2])  # stop-gradient: the bound adds nothing to the eps channels
    assert (g_lam[:, 2:].flatten(1).abs().sum(1) > 0).all()  # ... but trains the variance channels, every t
    # not vacuous: without the stop-gradient the bound does pull on eps_theta
    eps_theta = out[:, :2].detach().clone().requires_grad_(True)
    xt = dc.q_sample(s, x0, t, eps)
    vlb_terms_learned(s, eps_theta, torch.full_like(x0, 0.5), x0, xt, t).sum().backward()
    assert (eps_theta.grad.flatten(1).abs().sum(1) > 0).all()


def test_shapes_and_arguments_are_checked_with_clear_messages():
    s = dc.NoiseSchedule.linear(50)
    x0 = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"returned shape \(2, 3, 4, 4\) .* must return 2C = 6 channels"):
        loss_hybrid(lambda xt, t: xt, s, x0)  # C channels instead of 2C
    with pytest.raises(TypeError, match="must return a floating-point tensor"):
        loss_hybrid(lambda xt, t: None, s, x0)
    with pytest.raises(ValueError, match="channel dimension"):
        split_learned_output(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="v has shape"):
        vlb_terms_learned(s, x0, torch.zeros(2, 1, 4, 4), x0, x0, 3)
    with pytest.raises(ValueError, match="T >= 2"):
        learned_log_variance(dc.NoiseSchedule.from_betas([0.1]), torch.zeros(2, 1), 1)
    with pytest.raises(ValueError, match="t must lie in 1..50"):
        learned_log_variance(s, torch.zeros(2, 1), 0)
    with pytest.raises(ValueError, match="lam must lie"):
        loss_hybrid(lambda xt, t: torch.cat([xt, xt], 1), s, x0, lam=-0.1)
    with pytest.raises(ValueError, match="reduction"):
        loss_hybrid(lambda xt, t: torch.cat([xt, xt], 1), s, x0, reduction="sum")
