"""Forward process: the closed form agrees with iterating the one-step chain."""

import pytest
import torch

import ddpm_core as dc


def test_closed_form_matches_iterated_chain():
    # Monte Carlo: N chains from one x0, t single steps each, vs sqrt(alpha_bar) x0 and 1 - alpha_bar.
    s = dc.NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    N, D = 20_000, 4
    x0 = torch.tensor([-1.0, -0.3, 0.5, 1.0]).expand(N, D)
    x = x0.clone()
    checkpoints = {10, 100, 400}
    for t in range(1, max(checkpoints) + 1):
        x = dc.q_step_sample(s, x, t, torch.randn(x.shape, generator=g))
        if t in checkpoints:
            mean, var = dc.q_mean_variance(s, x0[:1], t)
            sd = var.sqrt().item()
            # standard error of a mean is sd/sqrt(N); of a variance ~ var*sqrt(2/N). Allow 5 of each.
            assert (x.mean(0) - mean[0]).abs().max() < 5 * sd / N**0.5
            assert (x.var(0) - var.item()).abs().max() < 5 * var.item() * (2 / N) ** 0.5


def test_q_sample_formula_and_t0():
    s = dc.NoiseSchedule.cosine(100)
    x0 = torch.randn(3, 1, 4, 4)
    eps = torch.randn_like(x0)
    t = torch.tensor([0, 50, 100])
    xt = dc.q_sample(s, x0, t, eps)
    ab = s.alpha_bars[t].view(3, 1, 1, 1)
    torch.testing.assert_close(xt, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    torch.testing.assert_close(xt[0], x0[0])  # t = 0 is clean data
    # an int t broadcasts over the batch
    torch.testing.assert_close(dc.q_sample(s, x0, 7, eps), dc.q_sample(s, x0, torch.full((3,), 7), eps))


def test_q_step_kernel():
    s = dc.NoiseSchedule.linear(10)
    x = torch.randn(2, 3)
    mean, var = dc.q_step_mean_variance(s, x, 4)
    torch.testing.assert_close(mean, (1 - s.betas[4]).sqrt() * x)
    torch.testing.assert_close(var, s.betas[4].expand(2, 1))


@pytest.mark.parametrize("t, err", [
    (1001, ValueError), (-1, ValueError), (torch.tensor([1.5, 2.0]), TypeError), (2.0, TypeError),
    (torch.tensor([1, 2, 3]), ValueError), ("5", TypeError),
])
def test_q_sample_rejects_bad_t(t, err):
    s = dc.NoiseSchedule.linear()
    x0 = torch.zeros(2, 1, 2, 2)
    with pytest.raises(err, match="t"):
        dc.q_sample(s, x0, t, torch.zeros_like(x0))


def test_q_step_rejects_t0():
    s = dc.NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="1..10"):
        dc.q_step_sample(s, torch.zeros(1, 2), 0, torch.zeros(1, 2))


def test_q_sample_rejects_bad_tensors():
    s = dc.NoiseSchedule.linear(10)
    x0 = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shape"):
        dc.q_sample(s, x0, 1, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        dc.q_sample(s, torch.full((2, 3), float("nan")), 1, x0)
    with pytest.raises(TypeError, match="x0"):
        dc.q_sample(s, [[0.0]], 1, x0)
    with pytest.raises(TypeError, match="floating"):
        dc.q_sample(s, torch.zeros(2, 3, dtype=torch.long), 1, x0)
