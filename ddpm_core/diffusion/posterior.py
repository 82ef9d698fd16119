r"""The forward-process posterior $q(x_{t-1}|x_t, x_0)$ and the reverse model $p_\theta(x_{t-1}|x_t)$ (chapter 3).

$\epsilon$, $x_0$ and $x_t$ are tied by $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$:
knowing any two gives the third, which is how a noise predictor $\epsilon_\theta$ becomes a mean
$\mu_\theta$.
"""

from __future__ import annotations

from torch import Tensor

from .._checks import check_choice, check_same_shape, check_tensor, check_timesteps
from ..utils import extract
from .schedule import REVERSE_VARIANCES, NoiseSchedule


def _pair(s: NoiseSchedule, a_name: str, a: Tensor, xt: Tensor, t, allow_zero: bool) -> Tensor:
    """Check two (B, ...) tensors of one shape and t; return t as (B,) int64 on the schedule's device."""
    check_tensor(a_name, a)
    check_tensor("xt", xt)
    check_same_shape(**{a_name: a, "xt": xt})
    return check_timesteps(t, s.num_steps, xt.shape[0], allow_zero=allow_zero, device=s.device)


def q_posterior(s: NoiseSchedule, x0: Tensor, xt: Tensor, t) -> tuple[Tensor, Tensor]:
    r"""Mean and variance of $q(x_{t-1}|x_t, x_0) = N(\tilde\mu_t, \tilde\beta_t I)$ [DDPM eq. 6–7].

    $\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}x_0
    + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}x_t$,
    $\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$.

    Args:
        x0: (B, ...) clean data.
        xt: (B, ...) $x_t$.
        t: int or (B,) paper timesteps in 1..T.

    Returns:
        mu_tilde (B, ...) and beta_tilde (B, 1, ..., 1).
    """
    t = _pair(s, "x0", x0, xt, t, allow_zero=False)
    mu_tilde = extract(s.posterior_coef_x0, t, xt.shape) * x0 + extract(s.posterior_coef_xt, t, xt.shape) * xt
    return mu_tilde, extract(s.beta_tildes, t, xt.shape)


def x0_from_eps(s: NoiseSchedule, xt: Tensor, t, eps: Tensor) -> Tensor:
    r"""Invert the forward marginal: $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ [DDPM eq. 15].

    Args:
        xt: (B, ...) $x_t$.
        t: int or (B,) paper timesteps in 0..T.
        eps: (B, ...) noise (true $\epsilon$ or a prediction $\epsilon_\theta$).
    """
    t = _pair(s, "eps", eps, xt, t, allow_zero=True)
    alpha_bar, one_minus = extract(s.alpha_bars, t, xt.shape), extract(s.one_minus_alpha_bars, t, xt.shape)
    return (xt - one_minus.sqrt() * eps) / alpha_bar.sqrt()


def eps_from_x0(s: NoiseSchedule, xt: Tensor, t, x0: Tensor) -> Tensor:
    r"""The noise that takes $x_0$ to $x_t$: $\epsilon = (x_t - \sqrt{\bar\alpha_t}\,x_0)/\sqrt{1-\bar\alpha_t}$ [DDPM eq. 4].

    Args:
        xt: (B, ...) $x_t$.
        t: int or (B,) paper timesteps in 1..T (at t = 0 the noise is undefined).
        x0: (B, ...) clean data or a prediction $\hat x_0$.
    """
    t = _pair(s, "x0", x0, xt, t, allow_zero=False)
    alpha_bar, one_minus = extract(s.alpha_bars, t, xt.shape), extract(s.one_minus_alpha_bars, t, xt.shape)
    return (xt - alpha_bar.sqrt() * x0) / one_minus.sqrt()


def p_mean_variance(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, variance: str = "beta_tilde",
                    clip_x0: bool = False) -> tuple[Tensor, Tensor]:
    r"""Mean and variance of the reverse step $p_\theta(x_{t-1}|x_t) = N(\mu_\theta, \sigma_t^2 I)$.

    $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon_\theta\big)$
    [DDPM eq. 11], which equals $\tilde\mu_t(x_t, \hat x_0)$ with $\hat x_0$ from ``x0_from_eps``.
    With ``clip_x0=True``, $\hat x_0$ is clipped to [-1, 1] first and the mean is
    $\tilde\mu_t(x_t, \mathrm{clip}(\hat x_0))$, as DDPM's released sampler does.

    Args:
        eps_theta: (B, ...) the model's noise prediction.
        xt: (B, ...) $x_t$.
        t: int or (B,) paper timesteps in 1..T.
        variance: "beta_tilde" ($\sigma_t^2 = \tilde\beta_t$) or "beta" ($\sigma_t^2 = \beta_t$);
            see ``NoiseSchedule.reverse_variances``.

    Returns:
        mean (B, ...) and variance (B, 1, ..., 1).
    """
    check_choice("variance", variance, REVERSE_VARIANCES)
    t = _pair(s, "eps_theta", eps_theta, xt, t, allow_zero=False)
    var = extract(s.reverse_variances(variance), t, xt.shape)
    if clip_x0:
        mean, _ = q_posterior(s, x0_from_eps(s, xt, t, eps_theta).clamp(-1.0, 1.0), xt, t)
    else:
        coef = extract(s.betas, t, xt.shape) / extract(s.one_minus_alpha_bars, t, xt.shape).sqrt()
        mean = (xt - coef * eps_theta) / extract(s.alphas, t, xt.shape).sqrt()
    return mean, var
