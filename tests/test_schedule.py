"""Schedules: paper indexing, the defining formulas, and the magnitudes the DDPM paper reports."""

import math

import pytest
import torch

import ddpm_core as dc


@pytest.fixture(params=["linear", "cosine"])
def schedule(request):
    return getattr(dc.NoiseSchedule, request.param)(num_steps=1000)


def test_paper_indexing(schedule):
    T = schedule.num_steps
    for name in ("betas", "alphas", "alpha_bars", "one_minus_alpha_bars", "beta_tildes", "snr"):
        arr = getattr(schedule, name)
        assert arr.shape == (T + 1,), name
        assert arr.dtype == torch.float32, name
    assert schedule.betas[0] == 0 and schedule.alpha_bars[0] == 1 and schedule.beta_tildes[0] == 0
    assert schedule.beta_tildes[1] == 0  # alpha_bar_0 = 1 makes the t=1 posterior a point mass
    assert math.isinf(schedule.snr[0])


def test_derived_quantities_in_float64(schedule):
    b = schedule.betas.double()
    alpha_bars = torch.cumprod(1 - b, 0)
    torch.testing.assert_close(schedule.alpha_bars.double(), alpha_bars, rtol=1e-6, atol=1e-9)
    t = torch.arange(2, schedule.num_steps + 1)
    beta_tilde = (1 - alpha_bars[t - 1]) / (1 - alpha_bars[t]) * b[t]
    torch.testing.assert_close(schedule.beta_tildes[t].double(), beta_tilde, rtol=1e-5, atol=1e-12)
    assert (schedule.beta_tildes <= schedule.betas).all()
    torch.testing.assert_close(schedule.snr[1:].double(), alpha_bars[1:] / (1 - alpha_bars[1:]), rtol=1e-4, atol=0)


def test_linear_matches_paper():
    s = dc.NoiseSchedule.linear()
    assert s.betas[1].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # DDPM §4: with these settings alpha_bar_T ~ 4e-5 and L_T ~ 1e-5 bits/dim.
    assert s.alpha_bars[-1].item() == pytest.approx(4.04e-5, rel=0.01)


def test_cosine_matches_iddpm_formula():
    T, s_off = 1000, 0.008
    s = dc.NoiseSchedule.cosine(T, s=s_off, max_beta=0.999)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2
    target = f / f[0]
    # the clip only touches the last step, so alpha_bar matches the formula up to t = T-1
    torch.testing.assert_close(s.alpha_bars[:-1].double(), target[:-1], rtol=1e-5, atol=1e-7)
    assert s.betas[-1].item() == pytest.approx(0.999)
    assert (s.betas[1:] <= 0.999 + 1e-7).all()


def test_reverse_variances():
    s = dc.NoiseSchedule.linear(10)
    torch.testing.assert_close(s.reverse_variances("beta"), s.betas)
    v = s.reverse_variances("beta_tilde")
    assert v[1] == s.beta_tildes[2] and torch.equal(v[2:], s.beta_tildes[2:])
    with pytest.raises(ValueError, match="variance"):
        s.reverse_variances("large")


def test_to_device_keeps_values():
    s = dc.NoiseSchedule.cosine(50)
    s2 = s.to("cpu")
    assert s2.num_steps == 50 and torch.equal(s2.alpha_bars, s.alpha_bars) and s2.name == "cosine"


@pytest.mark.parametrize("kwargs, err", [
    (dict(num_steps=0), ValueError), (dict(num_steps=-3), ValueError), (dict(num_steps=10.0), TypeError),
    (dict(num_steps=True), TypeError), (dict(beta_1=0.0), ValueError), (dict(beta_T=1.0), ValueError),
    (dict(beta_1=-0.1), ValueError),
])
def test_linear_rejects_bad_input(kwargs, err):
    with pytest.raises(err):
        dc.NoiseSchedule.linear(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(num_steps=0), dict(max_beta=1.0), dict(max_beta=0.0), dict(s=-0.1)])
def test_cosine_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        dc.NoiseSchedule.cosine(**kwargs)


@pytest.mark.parametrize("betas", [[], [0.1, 1.0], [0.0, 0.1], [0.1, float("nan")]])
def test_from_betas_rejects_bad_betas(betas):
    with pytest.raises(ValueError, match="beta"):
        dc.NoiseSchedule.from_betas(torch.tensor(betas, dtype=torch.float64))


def test_one_minus_alpha_bar_keeps_its_digits_at_small_t():
    # 1 - ᾱ_t from the float32 ᾱ_t ≈ 1 loses digits to cancellation; the stored array does not.
    s = dc.NoiseSchedule.linear()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    exact = torch.cat([torch.zeros(1, dtype=torch.float64), 1 - torch.cumprod(1 - betas, 0)])
    torch.testing.assert_close(s.one_minus_alpha_bars.double(), exact, rtol=1e-6, atol=0)
    naive = 1 - s.alpha_bars[1:3].double()
    assert ((naive - exact[1:3]).abs() / exact[1:3]).max() > 1e-5  # why the array exists
    mean, var = dc.q_mean_variance(s, torch.ones(1, 1), 1)
    assert var.item() == pytest.approx(1e-4, rel=1e-6)  # Var q(x_1|x_0) = β_1
