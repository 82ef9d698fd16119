"""Gaussian KL and the discretized decoder likelihood."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import ddpm_core as dc

LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1  # the 8-bit grid of [-1, 1]


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(100, generator=g), torch.randn(100, generator=g)
    lv1, lv2 = torch.randn(100, generator=g), torch.randn(100, generator=g)
    ref = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(dc.normal_kl(m1, lv1, m2, lv2), ref, rtol=1e-5, atol=1e-6)
    assert dc.normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-6


@pytest.mark.parametrize("mean, scale", [(0.0, 0.01), (0.37, 0.3), (-1.0, 0.002), (0.9, 2.0), (5.0, 0.5)])
def test_discretized_likelihood_sums_to_one(mean, scale):
    x = LEVELS.float().view(1, 256)
    logp = dc.discretized_gaussian_log_likelihood(
        x, torch.full_like(x, mean), torch.tensor(scale).log().view(1, 1))
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    assert (logp <= 0).all()


def test_discretized_likelihood_matches_cdf_differences():
    x = LEVELS.float().view(1, 256)
    mean, scale = 0.1, 0.05
    p = dc.discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.tensor([[scale]]).log()).exp()
    d = Normal(torch.tensor(mean, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
    edges = torch.cat([torch.tensor([-float("inf")]), (LEVELS[:-1] + LEVELS[1:]) / 2, torch.tensor([float("inf")])])
    ref = d.cdf(edges[1:]) - d.cdf(edges[:-1])
    torch.testing.assert_close(p.double().flatten(), ref, atol=2e-6, rtol=1e-3)


def test_discretized_likelihood_rejects_off_grid():
    x = torch.tensor([[0.5]])  # 0.5 is not one of the 256 levels (127.5*1.5 = 191.25)
    with pytest.raises(ValueError, match="grid"):
        dc.discretized_gaussian_log_likelihood(x, x, torch.zeros(1, 1))
    with pytest.raises(ValueError, match="shape"):
        dc.discretized_gaussian_log_likelihood(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, 1))
