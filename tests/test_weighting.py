"""Chapter 9: every training loss as a weight w(t) on one x0-error, in SNR form."""

import math

import pytest
import torch

import ddpm_core as dc
from ddpm_core.diffusion.parameterization import PREDICTION_TARGETS, convert_prediction
from ddpm_core.diffusion.weighting import LOSS_WEIGHTINGS, target_error_scale, x0_error_weight, x0_mse

LN2 = math.log(2.0)


def toy_model(xt, t):
    """A fixed linear function of x_t, different at every t: eps_theta = c(t) x_t + b(t)."""
    c = (0.3 + 0.5 * t.float() / 20).view(-1, *([1] * (xt.dim() - 1)))
    return c * xt + 0.05 * torch.sin(t.float()).view_as(c)


def _grid_images(B=3, shape=(1, 4, 4), seed=0):
    """Images on the 256-level grid of [-1, 1], as elbo_terms requires."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, *shape), generator=g).float() / 255 * 2 - 1


def test_eps_error_is_sqrt_snr_times_x0_error():
    s = dc.NoiseSchedule.cosine(100)
    g = torch.Generator().manual_seed(0)
    xt, eps, eps_hat = torch.randn(3, 5, 2, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 30, 60, 100])
    x0, x0_hat = dc.x0_from_eps(s, xt, t, eps), dc.x0_from_eps(s, xt, t, eps_hat)
    snr = s.snr.double()[t].view(-1, 1, 1)
    torch.testing.assert_close(eps - eps_hat, snr.sqrt() * (x0_hat - x0), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close((eps - eps_hat).pow(2).sum((1, 2)), snr.view(-1) * (x0 - x0_hat).pow(2).sum((1, 2)),
                               rtol=1e-6, atol=0)
    torch.testing.assert_close(target_error_scale(s, t, "eps").double(), snr.view(-1))


@pytest.mark.parametrize("target", PREDICTION_TARGETS)
def test_each_targets_error_is_a_multiple_of_the_x0_error(target):
    s = dc.NoiseSchedule.linear(200)
    g = torch.Generator().manual_seed(1)
    xt, x0, x0_hat = torch.randn(3, 6, 3, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 50, 100, 150, 200])
    y, y_hat = (convert_prediction(s, z, xt, t, "x0", target) for z in (x0, x0_hat))
    ratio = (y - y_hat).pow(2).flatten(1).sum(1) / (x0 - x0_hat).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(target_error_scale(s, t, target).double(), ratio, rtol=1e-6, atol=0)


@pytest.mark.parametrize("make", [lambda: dc.NoiseSchedule.linear(50), lambda: dc.NoiseSchedule.cosine(50)])
def test_simple_weight_reproduces_loss_simple(make):
    s = make()
    x0 = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([1, 2, 10, 25, 40, 50])
    expected = dc.loss_simple(toy_model, s, x0, t, eps, reduction="none")
    xt = dc.q_sample(s, x0, t, eps)
    x0_hat = dc.x0_from_eps(s, xt, t, toy_model(xt, t))
    torch.testing.assert_close(x0_error_weight(s, t, "simple") * x0_mse(x0, x0_hat), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("make", [lambda: dc.NoiseSchedule.linear(20, 1e-3, 0.2), lambda: dc.NoiseSchedule.cosine(20)],
                         ids=["linear", "cosine"])
def test_elbo_weight_reproduces_every_bound_term_from_the_same_draws(make):
    s = make()
    x0 = _grid_images()
    bound = dc.elbo_terms(toy_model, s, x0, generator=torch.Generator().manual_seed(7), progress=False)
    g = torch.Generator().manual_seed(7)  # elbo_terms draws one eps per t = 1..T, in that order, from generator
    ours = torch.zeros_like(bound.terms)
    for t_int in range(1, s.num_steps + 1):
        t = torch.full((len(x0),), t_int)
        eps = dc.randn(x0.shape, g, x0.device)
        xt = dc.q_sample(s, x0, t, eps)
        x0_hat = dc.x0_from_eps(s, xt, t, toy_model(xt, t))
        ours[:, t_int] = x0_error_weight(s, t, "elbo") * x0_mse(x0, x0_hat) / LN2  # nats/dim -> bits/dim
    assert (bound.terms[:, 2:] > 1e-4).all()  # the toy model is far from right: no term is trivially small
    torch.testing.assert_close(ours[:, 2:], bound.terms[:, 2:], rtol=5e-5, atol=1e-7)  # float32: ~6e-6 seen
    # L_0 (t = 1) is the discretized decoder: not a weighting of the x0-error, and not what "elbo" gives there
    assert not torch.allclose(ours[:, 1], bound.terms[:, 1], rtol=1e-2)


def test_elbo_weight_is_the_snr_difference_and_telescopes():
    s = dc.NoiseSchedule.linear(1000)
    t = torch.arange(2, 1001)
    snr = (s.alpha_bars.double() / s.one_minus_alpha_bars.double())  # (T+1,), float64 from the stored values
    w = x0_error_weight(s, t, "elbo").double()
    torch.testing.assert_close(w, 0.5 * (snr[t - 1] - snr[t]), rtol=1e-4, atol=0)
    torch.testing.assert_close(w.sum(), 0.5 * (snr[1] - snr[1000]), rtol=1e-5, atol=0)  # [VDM]: only the ends count


def test_elbo_weight_at_t1_is_the_continuous_gaussian_decoder():
    s = dc.NoiseSchedule.linear(100)
    var = s.reverse_variances("beta_tilde")[1].double()
    g = torch.Generator().manual_seed(4)
    x0, x0_hat = torch.randn(2, 3, 1, 4, 4, generator=g, dtype=torch.float64)
    nll = -torch.distributions.Normal(x0_hat, var.sqrt()).log_prob(x0)  # mean mu_theta(x_1, 1) = x0_hat
    nll_floor = -torch.distributions.Normal(x0, var.sqrt()).log_prob(x0)  # the constant, error-free part
    per_dim = (nll - nll_floor).flatten(1).mean(1)
    torch.testing.assert_close(x0_error_weight(s, 1, "elbo").double() * x0_mse(x0, x0_hat), per_dim, rtol=1e-6, atol=0)
    assert x0_error_weight(s, torch.tensor([1, 2]), "elbo").isfinite().all()


def test_min_snr_caps_the_simple_weight_at_gamma():
    s = dc.NoiseSchedule.linear(1000)
    t = torch.arange(1, 1001)
    snr, gamma = s.snr[t], 5.0
    w = x0_error_weight(s, t, "min_snr", gamma=gamma)
    low, high = snr <= gamma, snr > gamma
    assert low.any() and high.any()
    torch.testing.assert_close(w[low], x0_error_weight(s, t, "simple")[low])  # noisy steps: as L_simple
    assert (w[high] == gamma).all()  # nearly clean steps: capped at gamma
    assert (t[high].max() < t[low].min())  # the cap is at small t
    # the paper's weights on each target's own loss: min(SNR, gamma)/SNR on eps, min(SNR, gamma)/(SNR + 1) on v
    torch.testing.assert_close(w / target_error_scale(s, t, "eps"), torch.clamp(gamma / snr, max=1.0))
    torch.testing.assert_close(w / target_error_scale(s, t, "v"), torch.minimum(snr, torch.tensor(gamma)) / (snr + 1),
                               rtol=1e-5, atol=0)
    assert (x0_error_weight(s, t, "min_snr", gamma=1.0) <= 1.0).all()


def test_edm_weight_by_hand():
    s = dc.NoiseSchedule.from_betas([0.2])  # abar_1 = 0.8: SNR = 4, sigma = 1/sqrt(SNR) = 0.5 = sigma_data
    # lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = (0.25 + 0.25) / 0.0625 = 8 = 2 / sigma_data^2
    assert x0_error_weight(s, 1, "edm", sigma_data=0.5).item() == pytest.approx(8.0, rel=1e-6)
    assert x0_error_weight(s, 1, "edm", sigma_data=1.0).item() == pytest.approx((0.25 + 1) / 0.25, rel=1e-6)
    # at every t: lambda = SNR + 1/sigma_data^2, and lambda c_out^2 = 1 (EDM Table 1's
    # c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2): its weighting gives the raw network a unit loss)
    s = dc.NoiseSchedule.cosine(100)
    t = torch.arange(1, 101)
    sigma, sd = (1 / s.snr[t].double()).sqrt(), 0.5
    lam = (sigma**2 + sd**2) / (sigma * sd) ** 2
    torch.testing.assert_close(x0_error_weight(s, t, "edm").double(), lam, rtol=1e-6, atol=0)
    c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
    torch.testing.assert_close(x0_error_weight(s, t, "edm").double() * c_out**2, torch.ones(100, dtype=torch.float64))


def test_weights_shape_and_broadcast():
    s = dc.NoiseSchedule.linear(30)
    for loss in LOSS_WEIGHTINGS:
        w = x0_error_weight(s, torch.tensor([3, 3, 30]), loss)  # SNR(30) < 5 < SNR(3)
        assert w.shape == (3,) and w.dtype == torch.float32 and (w > 0).all() and w[0] == w[1] != w[2]
        assert x0_error_weight(s, 3, loss).shape == (1,) and x0_error_weight(s, 3, loss) == w[0]


def test_bad_arguments_raise():
    s = dc.NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="loss must be one of"):
        x0_error_weight(s, 1, "vlb")
    with pytest.raises(ValueError, match="target must be one of"):
        target_error_scale(s, 1, "mu")
    with pytest.raises(ValueError, match="gamma must lie in"):
        x0_error_weight(s, 1, "min_snr", gamma=0.0)
    with pytest.raises(ValueError, match="sigma_data must lie in"):
        x0_error_weight(s, 1, "edm", sigma_data=-0.5)
    with pytest.raises(TypeError, match="gamma must be a number"):
        x0_error_weight(s, 1, "min_snr", gamma="5")
    with pytest.raises(ValueError, match="1..10"):
        x0_error_weight(s, 0, "simple")  # SNR(0) is infinite: no weight at t = 0
    with pytest.raises(TypeError, match="integer"):
        x0_error_weight(s, torch.tensor([1.0]), "elbo")
    with pytest.raises(ValueError, match="scalar or a \\(B,\\) tensor"):
        x0_error_weight(s, torch.ones(2, 2, dtype=torch.long), "elbo")
    with pytest.raises(ValueError, match="shape"):
        x0_mse(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="T >= 2"):
        x0_error_weight(dc.NoiseSchedule.from_betas([0.1]), 1, "elbo")
