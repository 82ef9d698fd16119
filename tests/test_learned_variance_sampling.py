"""Chapter 9's samplers and bound with learned variances [IDDPM eq. 15]: at the ends of the interpolation
(raw output r = -1, v = 0: β̃_t; r = +1, v = 1: β_t) they are the fixed-variance ones, DDIM reads only the ε
channels, and a value in between is the per-value variance exp(v log β + (1 - v) log β̃)."""

import pytest
import torch

import ddpm_core as dc


def eps_part(xt, t):
    """A fixed smooth 'noise predictor' (the ε channels)."""
    return 0.2 * xt + 0.001 * t.view(-1, *([1] * (xt.dim() - 1))).to(xt.dtype)


def learned(raw):
    """A model with learned variances: ε_θ, then C channels of raw variance output r (a number or a function)."""
    def model(xt, t):
        r = raw(xt, t) if callable(raw) else torch.full_like(xt, raw)
        return torch.cat([eps_part(xt, t), r], 1)  # (B, 2C, ...)
    return model


SHAPE = (3, 2, 4, 4)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("raw, fixed", [(-1.0, "beta_tilde"), (1.0, "beta")])
def test_ddpm_sample_learned_at_the_ends_is_the_fixed_variance_sampler(name, raw, fixed):
    s = dc.NoiseSchedule.linear(40) if name == "linear" else dc.NoiseSchedule.cosine(40)
    x, traj = dc.ddpm_sample(learned(raw), s, SHAPE, generator=_g(), variance="learned", progress=False,
                             trajectory=True)
    ref, ref_traj = dc.ddpm_sample(eps_part, s, SHAPE, generator=_g(), variance=fixed, progress=False,
                                   trajectory=True)
    # exp(log σ²) for σ²: equal up to float32 rounding, step by step, the same z drawn from the same generator
    torch.testing.assert_close(traj.xt, ref_traj.xt, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x, ref, rtol=1e-5, atol=1e-6)
    other = "beta" if fixed == "beta_tilde" else "beta_tilde"
    assert not torch.allclose(x, dc.ddpm_sample(eps_part, s, SHAPE, generator=_g(), variance=other, progress=False),
                              rtol=1e-3, atol=1e-4)  # and the two ends do differ


def test_ddpm_step_learned_uses_one_variance_per_value():
    s = dc.NoiseSchedule.linear(50)
    xt, eps = torch.randn(SHAPE, generator=_g(1)), torch.randn(SHAPE, generator=_g(2))
    v = torch.rand(SHAPE, generator=_g(3)) * 1.4 - 0.2  # any real v, here in [-0.2, 1.2]
    t = 30
    x_prev = dc.ddpm_step(s, eps, xt, t, generator=_g(4), variance="learned", v=v)
    mean, _ = dc.p_mean_variance(s, eps, xt, t)
    var = s.betas[t] ** v * s.beta_tildes[t] ** (1 - v)  # β^v β̃^(1-v) [IDDPM eq. 15]
    torch.testing.assert_close(x_prev, mean + var.sqrt() * torch.randn(SHAPE, generator=_g(4)), rtol=1e-5, atol=1e-6)
    last = dc.ddpm_step(s, eps, xt, 1, generator=_g(4), variance="learned", v=v)  # no noise at t = 1
    torch.testing.assert_close(last, dc.p_mean_variance(s, eps, xt, 1)[0], rtol=0, atol=0)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_sample_with_learned_variances_reads_only_the_eps_channels(eta):
    s = dc.NoiseSchedule.cosine(60)
    model = learned(lambda xt, t: torch.tanh(3 * xt) * (t.view(-1, 1, 1, 1) / 60.0))  # any variance output
    x, traj = dc.ddim_sample(model, s, SHAPE, 12, eta, generator=_g(5), progress=False, learned_variance=True,
                             trajectory=True)
    ref, ref_traj = dc.ddim_sample(eps_part, s, SHAPE, 12, eta, generator=_g(5), progress=False, trajectory=True)
    torch.testing.assert_close(x, ref, rtol=0, atol=0)
    torch.testing.assert_close(traj.x0_hat, ref_traj.x0_hat, rtol=0, atol=0)


def _grid_images(g):
    x = torch.randint(0, 256, SHAPE, generator=g).float() / 127.5 - 1
    x.view(-1)[:2] = torch.tensor([-1.0, 1.0])
    return x


@pytest.mark.parametrize("raw, fixed", [(-1.0, "beta_tilde"), (1.0, "beta")])
def test_elbo_terms_learned_at_the_ends_are_the_fixed_variance_terms(raw, fixed):
    s = dc.NoiseSchedule.linear(30)
    x0 = _grid_images(_g(6))
    got = dc.elbo_terms(learned(raw), s, x0, generator=_g(7), variance="learned", progress=False)
    ref = dc.elbo_terms(eps_part, s, x0, generator=_g(7), variance=fixed, progress=False)
    torch.testing.assert_close(got.terms, ref.terms, rtol=1e-5, atol=1e-6)  # every column, the decoder at t = 1 too
    torch.testing.assert_close(got.prior, ref.prior, rtol=0, atol=0)
    torch.testing.assert_close(got.total, ref.total, rtol=1e-5, atol=1e-5)
    assert (got.terms[:, 2:] > 0).all()  # the KL terms were exercised


def test_learned_samplers_name_a_model_without_variance_channels():
    s = dc.NoiseSchedule.linear(20)
    for run in (lambda: dc.ddpm_sample(eps_part, s, SHAPE, variance="learned", progress=False),
                lambda: dc.ddim_sample(eps_part, s, SHAPE, 5, learned_variance=True, progress=False),
                lambda: dc.elbo_terms(eps_part, s, _grid_images(_g(0)), variance="learned", progress=False)):
        with pytest.raises(ValueError, match="must return 2C = 4 channels"):
            run()
    with pytest.raises(ValueError, match='pass v exactly when variance="learned"'):
        dc.ddpm_step(s, torch.zeros(SHAPE), torch.zeros(SHAPE), 5, variance="learned")
