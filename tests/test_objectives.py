"""Chapters 6, 9 and 10's training objectives as (prediction, loss) choices: each combination of
``training_loss`` against the loss it names, computed by hand or by the package's own loss, and the bad ones."""

import pytest
import torch

import ddpm_core as dc
from ddpm_core.diffusion.flow import loss_flow_matching
from ddpm_core.diffusion.objectives import OBJECTIVE_LOSSES, TRAINED_PREDICTIONS, check_objective, training_loss

T = 100
GAMMA = 5.0


@pytest.fixture(scope="module")
def batch():
    """A schedule, 8-bit-grid images, timesteps from both ends (SNR above and below γ) and their noise."""
    s = dc.NoiseSchedule.linear(T)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 256, (6, 1, 4, 4), generator=g).float() / 127.5 - 1
    t = torch.tensor([1, 2, 10, 40, 80, 100])
    eps = torch.randn(x0.shape, generator=g)
    assert (s.snr[t] > GAMMA).any() and (s.snr[t] < GAMMA).any()
    return s, x0, t, eps


def model(xt, t):
    """Some smooth prediction: what it predicts is only a matter of which target it is compared with."""
    return 0.3 * xt - 0.002 * t.view(-1, 1, 1, 1).float()


def learned_model(xt, t):
    """A model with learned variances: ε part, then a raw variance output r in (-1, 1)."""
    return torch.cat([model(xt, t), torch.tanh(xt)], 1)


def _per_image(a, b):
    return (a - b).pow(2).flatten(1).mean(1)


def _xt(s, x0, t, eps):
    ab = s.alpha_bars[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def test_simple_eps_is_loss_simple(batch):
    s, x0, t, eps = batch
    for reduction in ("mean", "none"):
        torch.testing.assert_close(training_loss(model, s, x0, t, eps, reduction=reduction),
                                   dc.loss_simple(model, s, x0, t, eps, reduction=reduction), rtol=0, atol=0)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731  t and ε drawn alike when not given
    torch.testing.assert_close(training_loss(model, s, x0, generator=g()), dc.loss_simple(model, s, x0, generator=g()))


def test_simple_v_and_x0_are_the_mse_of_their_own_targets(batch):
    s, x0, t, eps = batch
    ab = s.alpha_bars[t].view(-1, 1, 1, 1)
    xt = _xt(s, x0, t, eps)
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # [PD §4]
    torch.testing.assert_close(training_loss(model, s, x0, t, eps, prediction="v", reduction="none"),
                               _per_image(v, model(xt, t)), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(training_loss(model, s, x0, t, eps, prediction="x0", reduction="none"),
                               _per_image(x0, model(xt, t)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("prediction, scale", [("eps", lambda snr: snr), ("v", lambda snr: snr + 1),
                                               ("x0", lambda snr: torch.ones_like(snr))])
def test_min_snr_is_min_snr_gamma_over_the_targets_scale_times_its_mse(batch, prediction, scale):
    s, x0, t, eps = batch
    snr = s.snr[t]
    simple = training_loss(model, s, x0, t, eps, prediction=prediction, reduction="none")
    got = training_loss(model, s, x0, t, eps, prediction=prediction, loss="min_snr", gamma=GAMMA, reduction="none")
    # [MinSNR]: weight min(SNR, γ) on the x0-error; ‖ε − ε̂‖² = SNR ‖x0 − x̂0‖², ‖v − v̂‖² = (SNR + 1) ‖x0 − x̂0‖²
    torch.testing.assert_close(got, snr.clamp(max=GAMMA) / scale(snr) * simple, rtol=1e-5, atol=1e-8)
    if prediction == "eps":
        torch.testing.assert_close(got[snr <= GAMMA], simple[snr <= GAMMA])  # the noisy end is unchanged
        assert (got[snr > GAMMA] < simple[snr > GAMMA]).all()
    torch.testing.assert_close(got.mean(), training_loss(model, s, x0, t, eps, prediction=prediction,
                                                         loss="min_snr", gamma=GAMMA))


def test_min_snr_is_one_weighting_of_the_x0_error_whatever_the_target(batch):
    s, x0, t, eps = batch
    xt = _xt(s, x0, t, eps)
    x0_hat = 0.5 * xt  # one prediction of x0, and the same prediction as ε and as v
    as_target = {target: dc.convert_prediction(s, x0_hat, xt, t, "x0", target) for target in ("eps", "x0", "v")}
    losses = {target: training_loss(lambda xt_, t_, p=p: p, s, x0, t, eps, prediction=target, loss="min_snr",
                                    reduction="none") for target, p in as_target.items()}
    expected = s.snr[t].clamp(max=GAMMA) * _per_image(x0, x0_hat)
    for target, loss in losses.items():
        torch.testing.assert_close(loss, expected, rtol=2e-4, atol=1e-6, msg=target)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_vlb_is_loss_vlb_of_the_prediction_seen_as_eps(batch, prediction):
    s, x0, t, eps = batch
    eps_model = dc.as_eps_model(model, s, prediction)
    for reduction in ("mean", "none"):
        torch.testing.assert_close(training_loss(model, s, x0, t, eps, prediction=prediction, loss="vlb",
                                                 reduction=reduction),
                                   dc.loss_vlb(eps_model, s, x0, t, eps, reduction=reduction), rtol=0, atol=0)


def test_hybrid_is_loss_hybrid(batch):
    s, x0, t, eps = batch
    for reduction in ("mean", "none"):
        torch.testing.assert_close(training_loss(learned_model, s, x0, t, eps, loss="hybrid", reduction=reduction),
                                   dc.loss_hybrid(learned_model, s, x0, t, eps, reduction=reduction), rtol=0, atol=0)


def test_velocity_is_flow_matching_on_the_same_time_grid(batch):
    s, x0, t, eps = batch
    for reduction in ("mean", "none"):
        torch.testing.assert_close(training_loss(model, s, x0, t, eps, prediction="velocity", reduction=reduction),
                                   loss_flow_matching(model, x0, T, t, eps, reduction=reduction), rtol=0, atol=0)
    tau = (t.float() / T).view(-1, 1, 1, 1)
    x_tau = (1 - tau) * x0 + tau * eps
    torch.testing.assert_close(training_loss(model, s, x0, t, eps, prediction="velocity", reduction="none"),
                               _per_image(eps - x0, model(x_tau, t)))


def test_every_allowed_combination_runs_and_the_others_raise(batch):
    s, x0, t, eps = batch
    allowed = set()
    for prediction in TRAINED_PREDICTIONS:
        for loss in OBJECTIVE_LOSSES:
            try:
                check_objective(prediction, loss)
            except ValueError:
                with pytest.raises(ValueError, match='prediction="velocity" .* only|loss="hybrid" .* needs'):
                    training_loss(model, s, x0, t, eps, prediction=prediction, loss=loss)
                continue
            allowed.add((prediction, loss))
            out = training_loss(learned_model if loss == "hybrid" else model, s, x0, t, eps, prediction=prediction,
                                loss=loss)
            assert out.shape == () and torch.isfinite(out)
    assert allowed == {("eps", "simple"), ("eps", "min_snr"), ("eps", "vlb"), ("eps", "hybrid"), ("x0", "simple"),
                       ("x0", "min_snr"), ("x0", "vlb"), ("v", "simple"), ("v", "min_snr"), ("v", "vlb"),
                       ("velocity", "simple")}


def test_bad_arguments_raise_clear_errors(batch):
    s, x0, t, eps = batch
    with pytest.raises(ValueError, match="prediction must be one of"):
        training_loss(model, s, x0, t, eps, prediction="score")
    with pytest.raises(ValueError, match="loss must be one of"):
        training_loss(model, s, x0, t, eps, loss="elbo")
    with pytest.raises(ValueError, match='prediction="velocity" .flow matching. trains with loss="simple" only'):
        training_loss(model, s, x0, t, eps, prediction="velocity", loss="min_snr")
    with pytest.raises(ValueError, match='loss="hybrid" .learned variances. needs prediction="eps", got \'v\''):
        training_loss(learned_model, s, x0, t, eps, prediction="v", loss="hybrid")
    with pytest.raises(ValueError, match="reduction must be one of"):
        training_loss(model, s, x0, t, eps, reduction="sum")
    with pytest.raises(ValueError, match=r"gamma must lie in \(0, inf\)"):
        training_loss(model, s, x0, t, eps, loss="min_snr", gamma=0.0)
    with pytest.raises(ValueError, match="2C = 2 channels"):
        training_loss(model, s, x0, t, eps, loss="hybrid")  # a model without variance channels
