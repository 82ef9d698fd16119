"""Chapter 9: the network's targets (eps, x0, v, score) as linear maps of one another, given x_t and t."""

import itertools
import math

import pytest
import torch

import ddpm_core as dc
from ddpm_core.diffusion.parameterization import (PREDICTION_TARGETS, convert_prediction, eps_from_score, eps_from_v,
                                                  score_from_eps, v_from_eps_x0, x0_from_v)

SCHEDULES = {"linear": lambda: dc.NoiseSchedule.linear(100), "cosine": lambda: dc.NoiseSchedule.cosine(100)}
# abar_t and 1 - abar_t are stored apart in float32, so a_t^2 + sigma_t^2 = 1 only to ~1e-7: hand-written
# formulas that assume it (x0 = a x_t - sigma v) hold to that; the package's maps divide it out and invert exactly.
RTOL_V = 1e-6


def _coefs(s, t):
    """a_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t) in float64, shaped (B, 1, 1, 1), indexed by hand."""
    a = s.alpha_bars.double()[t].sqrt().view(-1, 1, 1, 1)
    sigma = s.one_minus_alpha_bars.double()[t].sqrt().view(-1, 1, 1, 1)
    return a, sigma


def _draw(seed=0, shape=(6, 2, 3, 3), T=100):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.cat([torch.tensor([1, T]), torch.randint(1, T + 1, (shape[0] - 2,), generator=g)])  # both ends
    return x0, eps, t


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("source,target", list(itertools.permutations(PREDICTION_TARGETS, 2)))
def test_every_pair_of_conversions_round_trips(name, source, target):
    s = SCHEDULES[name]()
    g = torch.Generator().manual_seed(1)
    xt, pred = torch.randn(2, 6, 2, 3, 3, generator=g, dtype=torch.float64)
    t = torch.cat([torch.tensor([1, 100]), torch.randint(1, 101, (4,), generator=g)])
    there = convert_prediction(s, pred, xt, t, source, target)
    back = convert_prediction(s, there, xt, t, target, source)
    assert there.dtype == torch.float64 and there.shape == pred.shape
    assert not torch.allclose(there, pred)  # a real change of variable, not the identity
    torch.testing.assert_close(back, pred, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_the_four_targets_of_one_draw_are_each_others_conversions(name):
    s = SCHEDULES[name]()
    x0, eps, t = _draw()
    a, sigma = _coefs(s, t)
    xt = dc.q_sample(s, x0, t, eps)
    truth = {"eps": eps, "x0": x0, "v": a * eps - sigma * x0, "score": -eps / sigma}
    for source, target in itertools.product(PREDICTION_TARGETS, repeat=2):
        torch.testing.assert_close(convert_prediction(s, truth[source], xt, t, source, target), truth[target],
                                   rtol=1e-5, atol=1e-6, msg=f"{source} -> {target}")


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_v_target_gives_back_x0_and_eps(name):
    s = SCHEDULES[name]()
    x0, eps, t = _draw(2)
    a, sigma = _coefs(s, t)
    xt = a * x0 + sigma * eps
    v = v_from_eps_x0(s, eps, x0, t)
    torch.testing.assert_close(v, a * eps - sigma * x0)
    torch.testing.assert_close(a * xt - sigma * v, x0, rtol=RTOL_V, atol=1e-7)  # x0 = a x_t - sigma v
    torch.testing.assert_close(sigma * xt + a * v, eps, rtol=RTOL_V, atol=1e-7)  # eps = sigma x_t + a v
    torch.testing.assert_close(x0_from_v(s, xt, t, v), x0, rtol=RTOL_V, atol=1e-7)
    torch.testing.assert_close(eps_from_v(s, xt, t, v), eps, rtol=RTOL_V, atol=1e-7)
    # (x_t, v) is a rotation of (x0, eps) by the angle atan(sigma/a): |x_t|^2 + |v|^2 = |x0|^2 + |eps|^2 elementwise
    torch.testing.assert_close(v.pow(2) + xt.pow(2), x0.pow(2) + eps.pow(2), rtol=RTOL_V, atol=1e-6)


def test_score_and_eps_are_scaled_by_sigma():
    s = dc.NoiseSchedule.linear(100)
    x0, eps, t = _draw(3)
    _, sigma = _coefs(s, t)
    score = score_from_eps(s, eps, t)
    torch.testing.assert_close(score, -eps / sigma)
    torch.testing.assert_close(eps_from_score(s, score, t), eps)


def test_t_broadcasts_like_the_forward_functions():
    s = dc.NoiseSchedule.cosine(50)
    g = torch.Generator().manual_seed(4)
    xt, v = torch.randn(2, 3, 5, generator=g)
    for fn in (x0_from_v, eps_from_v):
        torch.testing.assert_close(fn(s, xt, 7, v), fn(s, xt, torch.full((3,), 7), v))
        torch.testing.assert_close(fn(s, xt, torch.tensor(7), v), fn(s, xt, 7, v))
    t = torch.tensor([1, 20, 50])
    batched = convert_prediction(s, v, xt, t, "v", "score")
    one_by_one = torch.cat([convert_prediction(s, v[i:i + 1], xt[i:i + 1], int(t[i]), "v", "score") for i in range(3)])
    torch.testing.assert_close(batched, one_by_one)
    x = torch.randn(2, 1, 3, 4, 4, generator=g)  # any rank
    assert convert_prediction(s, x[0], x[1], 5, "x0", "v").shape == (1, 3, 4, 4)


def _posterior_means(gm, xt, a, sigma):
    """E[x0 | x_t] and E[eps | x_t] for a 2-D Gaussian mixture, by Gaussian conditioning per component.

    Independent of GaussianMixture2D's own eps_star / x0_star route: given component k,
    (x0, x_t) are jointly Gaussian with Cov(x0, x_t) = a Sigma_k and Cov(x_t) = a^2 Sigma_k + sigma^2 I.
    """
    eye = torch.eye(2, dtype=torch.float64)
    cov_t = a**2 * gm.covs + sigma**2 * eye  # (K, 2, 2)
    comps = torch.distributions.MultivariateNormal(a * gm.means, cov_t)
    log_r = comps.log_prob(xt[:, None, :]) + gm.weights.log()  # (N, K)
    r = torch.softmax(log_r, dim=1)
    resid = torch.linalg.solve(cov_t, (xt[:, None, :] - a * gm.means)[..., None])[..., 0]  # (N, K, 2)
    x0_k = gm.means + a * (gm.covs @ resid[..., None])[..., 0]  # E[x0 | x_t, k]
    eps_k = sigma * resid  # E[eps | x_t, k]
    return (r[..., None] * x0_k).sum(1), (r[..., None] * eps_k).sum(1)


def assert_close(actual, expected, rtol, atol, msg):
    """assert_close that keeps torch's numbers and adds which case failed."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{msg}\n{m}")


# The mixture takes one float abar and uses 1 - abar and float64 square roots; the schedule stores abar and
# 1 - abar apart in float32 and takes float32 square roots: they agree to ~1e-7, or ~1e-6 where 1 - abar is
# small. With abar = 3/4, 1/2, 1/4, 1/8 both abar and 1 - abar are exact in float32, leaving only the roots.
DYADIC = lambda: dc.NoiseSchedule.from_betas([0.25, 1 / 3, 0.5, 0.5])  # noqa: E731


@pytest.mark.parametrize("make,ts,rtol", [(DYADIC, (1, 2, 3, 4), 1e-6),
                                          (SCHEDULES["linear"], (10, 50, 100), 1e-5),
                                          (SCHEDULES["cosine"], (10, 50, 90), 1e-5)],
                         ids=["dyadic", "linear", "cosine"])
def test_optimal_predictor_of_every_target_is_the_converted_optimal_eps(make, ts, rtol):
    s = make()
    gm = dc.GaussianMixture2D([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.2]], covs=[0.3, 0.5, 0.2], weights=[0.5, 0.3, 0.2])
    xt = gm.sample(64, torch.Generator().manual_seed(5)).double() * 1.2  # (N, 2), also off the data
    for t in ts:
        ab = float(s.alpha_bars[t])
        a, sigma = math.sqrt(ab), math.sqrt(1 - ab)  # the mixture's own
        eps_star = gm.eps_star(xt, ab)  # E[eps | x_t] = -sigma grad log p_t
        x0_mean, eps_mean = _posterior_means(gm, xt, a, sigma)
        torch.testing.assert_close(eps_star, eps_mean, rtol=1e-9, atol=1e-12)  # two routes to E[eps | x_t]
        optimal = {"eps": eps_star, "x0": x0_mean, "v": a * eps_mean - sigma * x0_mean,  # E[v | x_t]: v is linear
                   "score": gm.score_t(xt, ab)}
        for target in PREDICTION_TARGETS:
            got = convert_prediction(s, eps_star, xt, t, "eps", target)
            assert_close(got, optimal[target], rtol=rtol, atol=rtol, msg=f"t={t}: eps* -> {target}")
            # and back: the optimal predictor of any target converts to eps*
            assert_close(convert_prediction(s, optimal[target], xt, t, target, "eps"), eps_star,
                         rtol=rtol, atol=rtol, msg=f"t={t}: optimal {target} -> eps")
        assert_close(convert_prediction(s, eps_star, xt, t, "eps", "x0"), gm.x0_star(xt, ab), rtol=rtol, atol=rtol,
                     msg=f"t={t}: x0_star")


def test_bad_arguments_raise():
    s = dc.NoiseSchedule.linear(10)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="source must be one of"):
        convert_prediction(s, x, x, 1, "noise", "x0")
    with pytest.raises(ValueError, match="target must be one of"):
        convert_prediction(s, x, x, 1, "eps", "mu")
    with pytest.raises(ValueError, match="shape"):
        convert_prediction(s, x, torch.randn(2, 4), 1, "eps", "x0")
    with pytest.raises(ValueError, match="shape"):
        v_from_eps_x0(s, x, torch.randn(3, 3), 1)
    with pytest.raises(ValueError, match="must lie in 1..10"):
        score_from_eps(s, x, 0)
    with pytest.raises(ValueError, match="in 1..10"):
        x0_from_v(s, x, torch.tensor([1, 11]), x)
    with pytest.raises(ValueError, match="2 items"):
        eps_from_v(s, x, torch.tensor([1, 2, 3]), x)
    with pytest.raises(TypeError, match="floating-point"):
        x0_from_v(s, x, x, torch.tensor([1, 2]))  # (s, xt, v, t): the prediction goes last, as in x0_from_eps
    with pytest.raises(TypeError, match="floating-point"):
        eps_from_score(s, torch.ones(2, 3, dtype=torch.long), 1)
