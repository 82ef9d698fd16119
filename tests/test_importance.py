"""Importance sampling of t [IDDPM §3.3]: the exact estimator variance against Monte Carlo, the optimum, the sampler."""

import pytest
import torch

import ddpm_core as dc


def test_importance_probs_are_sqrt_second_moments_mixed_with_uniform():
    m = torch.tensor([1.0, 4.0, 9.0, 0.0])
    p = dc.importance_probs(m, uniform_prob=0.2)
    expected = 0.8 * torch.tensor([1.0, 2.0, 3.0, 0.0]) / 6.0 + 0.2 / 4
    torch.testing.assert_close(p, expected.double())
    assert float(p.sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="non-negative"):
        dc.importance_probs(torch.tensor([1.0, -1.0]))


def test_estimator_variance_matches_monte_carlo_and_vanishes_at_the_optimum():
    g = torch.Generator().manual_seed(0)
    terms = torch.rand(2, 6, generator=g, dtype=torch.float64) ** 3  # a few large terms, as in the bound
    for probs in (None, dc.importance_probs(terms[0] ** 2, 0.1)):
        p = torch.full((6,), 1 / 6, dtype=torch.float64) if probs is None else probs
        idx = torch.multinomial(p, 200_000, replacement=True, generator=g)
        draws = terms[:, idx] / p[idx]  # (2, n) one-sample estimates
        assert torch.allclose(draws.mean(1), terms.sum(1), rtol=0.02)
        torch.testing.assert_close(dc.estimator_variance(terms, probs), draws.var(1), rtol=0.03, atol=1e-6)
    best = terms[0] / terms[0].sum()  # p_t proportional to L_t: every draw returns the sum itself
    assert float(dc.estimator_variance(terms[:1], best)[0]) == pytest.approx(0.0, abs=1e-12)
    assert (dc.estimator_variance(terms, dc.importance_probs(terms[0] ** 2)) < dc.estimator_variance(terms))[0]
    with pytest.raises(ValueError, match="distribution"):
        dc.estimator_variance(terms, torch.ones(6))


def test_sampler_is_uniform_until_every_t_has_its_history_then_unbiased():
    T = 4
    smp = dc.ImportanceTSampler(T, history=3, uniform_prob=0.0)
    t, w = smp.sample(8, torch.Generator().manual_seed(0))
    assert not smp.ready and torch.equal(w, torch.ones(8)) and t.min() >= 1 and t.max() <= T
    L = torch.tensor([0.0, 1.0, 2.0, 8.0], dtype=torch.float64)  # the loss at t = 1..4
    for _ in range(3):
        smp.update(torch.arange(1, T + 1), L)
    assert smp.ready
    torch.testing.assert_close(smp.probs(), (L / L.sum()))  # sqrt(E[L^2]) = L for constant losses
    t, w = smp.sample(100_000, torch.Generator().manual_seed(1))
    assert (t != 1).all()  # p_1 = 0 here
    est = (w.double() * T * L[t - 1]).mean()  # weighted T L_t: unbiased for sum_t L_t
    assert float(est) == pytest.approx(float(L.sum()), rel=1e-6)
    smp.update(torch.tensor([4]), torch.tensor([2.0]))  # FIFO: the oldest 8 is dropped
    assert smp.probs()[3] < L[3] / L.sum()
    with pytest.raises(ValueError):
        smp.update(torch.tensor([5]), torch.tensor([1.0]))
