r"""Training losses as weightings of one $x_0$-error, in SNR form (chapter 9).

With $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$ [VDM eq. 4] and, at a fixed $x_t$, a
prediction $\hat\epsilon$ read as $\hat x_0$ through :func:`x0_from_eps`,
$\epsilon - \hat\epsilon = \frac{x_t - \sqrt{\bar\alpha_t}x_0}{\sqrt{1-\bar\alpha_t}}
- \frac{x_t - \sqrt{\bar\alpha_t}\hat x_0}{\sqrt{1-\bar\alpha_t}} = \sqrt{\mathrm{SNR}(t)}\,(\hat x_0 - x_0)$,
so $\|\epsilon - \hat\epsilon\|^2 = \mathrm{SNR}(t)\,\|x_0 - \hat x_0\|^2$. Every loss below is
$w(t)\,\|x_0 - \hat x_0\|^2$ for some $w$; they differ only in $w$ [VDM; MinSNR; EDM].

**Units.** A weight $w$ from :func:`x0_error_weight` multiplies the *mean* over the D = C·H·W
values of an image, :func:`x0_mse` $= \frac1D\|x_0 - \hat x_0\|^2$, as ``loss_simple`` averages
over pixels. So ``"simple"`` gives ``loss_simple(..., reduction="none")`` and ``"elbo"`` gives
$L_{t-1}/D$ in nats per dimension (divide by $\ln 2$ for ``elbo_terms``' bits/dim).

**The bound in SNR form.** With $\sigma_t^2 = \tilde\beta_t$, DDPM's term is
$L_{t-1} = \frac{1}{2\tilde\beta_t}\|\tilde\mu_t(x_t, x_0) - \mu_\theta(x_t)\|^2$ [DDPM eq. 8; its
constant C is 0 when both variances are $\tilde\beta_t$].
$\mu_\theta$ is $\tilde\mu_t(x_t, \hat x_0)$ [DDPM eq. 7, 11], and $\tilde\mu_t$ is linear in its
$x_0$ with coefficient $c_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}$, so
$\tilde\mu_t - \mu_\theta = c_t (x_0 - \hat x_0)$ and, with
$\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$,
$L_{t-1} = \frac{c_t^2}{2\tilde\beta_t}\|x_0 - \hat x_0\|^2
= \frac12\,\frac{\bar\alpha_{t-1}\beta_t}{(1-\bar\alpha_{t-1})(1-\bar\alpha_t)}\|x_0 - \hat x_0\|^2
= \frac12\big(\mathrm{SNR}(t-1) - \mathrm{SNR}(t)\big)\|x_0 - \hat x_0\|^2$
(nats, summed over dimensions), because
$\mathrm{SNR}(t-1) - \mathrm{SNR}(t) = \frac{\bar\alpha_{t-1} - \bar\alpha_t}{(1-\bar\alpha_{t-1})(1-\bar\alpha_t)}$
and $\bar\alpha_{t-1} - \bar\alpha_t = \bar\alpha_{t-1}\beta_t$. The middle form is the one
computed (no cancellation in float32). Summed over $t = 2..T$ the weights telescope to
$\frac12(\mathrm{SNR}(1) - \mathrm{SNR}(T))$: for an $x_0$-error that does not change with t,
only the ends of the schedule matter [VDM].

Tags: [VDM] Kingma et al. 2021; [MinSNR] Hang et al. 2023, "Efficient diffusion training via
Min-SNR weighting strategy"; [EDM] Karras et al. 2022, "Elucidating the design space of
diffusion-based generative models".
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_choice, check_number, check_same_shape, check_tensor, check_timesteps
from .parameterization import PREDICTION_TARGETS
from .schedule import NoiseSchedule

__all__ = ["LOSS_WEIGHTINGS", "target_error_scale", "x0_error_weight", "x0_mse"]

LOSS_WEIGHTINGS = ("simple", "elbo", "min_snr", "edm")
"""The losses :func:`x0_error_weight` knows, each a weight on the x0-error."""


def x0_mse(x0: Tensor, x0_hat: Tensor) -> Tensor:
    r"""The $x_0$-error of each image: $\frac1D\|x_0 - \hat x_0\|^2$, the mean over its D values.

    Args:
        x0: (B, ...) clean data.
        x0_hat: (B, ...) a prediction of it.

    Returns:
        (B,) mean squared error per image.
    """
    check_tensor("x0", x0)
    check_tensor("x0_hat", x0_hat)
    check_same_shape(x0=x0, x0_hat=x0_hat)
    return (x0 - x0_hat).pow(2).flatten(1).mean(1)  # (B,)


def _at(values: Tensor, t: Tensor) -> Tensor:
    """values[t] for a (T+1,) per-t array and (B,) int64 t on its device: (B,)."""
    return values.gather(0, t)


def target_error_scale(s: NoiseSchedule, t, target: str) -> Tensor:
    r"""How much a target's squared error is the $x_0$-error's, at one $x_t$: (B,).

    $\|y - \hat y\|^2 = k(t)\,\|x_0 - \hat x_0\|^2$ when $\hat y$ and $\hat x_0$ are the same
    prediction (see :func:`convert_prediction`), with
    $k = \mathrm{SNR}$ for $\epsilon$; $1$ for $x_0$; $1/(1-\bar\alpha_t) = 1 + \mathrm{SNR}$ for
    $v$ (since $v - \hat v = -(x_0 - \hat x_0)/\sqrt{1-\bar\alpha_t}$); and
    $\mathrm{SNR}/(1-\bar\alpha_t)$ for the score. A weight $w$ on the $x_0$-error is the weight
    $w/k$ on the target's loss, e.g. min-SNR's $\min(\mathrm{SNR}, \gamma)/\mathrm{SNR}$ for $\epsilon$.

    Args:
        t: int or (B,) paper timesteps in 1..T (an int gives shape (1,)).
        target: one of ``PREDICTION_TARGETS``: "eps", "x0", "v", "score".
    """
    check_choice("target", target, PREDICTION_TARGETS)
    t = check_timesteps(t, s.num_steps, device=s.device)
    snr, one_minus = _at(s.snr, t), _at(s.one_minus_alpha_bars, t)
    if target == "eps":
        return snr
    if target == "x0":
        return torch.ones_like(snr)
    return (1.0 if target == "v" else snr) / one_minus


def x0_error_weight(s: NoiseSchedule, t, loss: str, *, gamma: float = 5.0, sigma_data: float = 0.5) -> Tensor:
    r"""The weight $w(t)$ that a training loss puts on the $x_0$-error: loss per image $= w \cdot$ :func:`x0_mse`.

    - ``"simple"``: $w = \mathrm{SNR}(t)$: $L_\text{simple}$'s $\|\epsilon - \hat\epsilon\|^2$ [DDPM eq. 14].
    - ``"elbo"``: $w = \frac12(\mathrm{SNR}(t-1) - \mathrm{SNR}(t))$ for $t \ge 2$: the bound's term
      $L_{t-1}$ in nats per dimension for the fixed variance $\sigma_t^2 = \tilde\beta_t$ (derived in
      the module docstring; ``elbo_terms`` reports it in bits/dim, i.e. divided by $\ln 2$).
      At $t = 1$ ($\mathrm{SNR}(0) = \infty$) it is $1/(2\sigma_1^2)$ with
      $\sigma_1^2$ = ``s.reverse_variances("beta_tilde")[1]``: the $x_0$-error's weight in the
      *continuous* Gaussian decoder $-\log N(x_0; \hat x_0, \sigma_1^2 I)$ (its mean is
      $\mu_\theta(x_1, 1) = \hat x_0$), without the constant. ``elbo_terms``' $L_0$ is the
      discretized decoder [DDPM eq. 13], which is no weighting of the $x_0$-error.
    - ``"min_snr"``: $w = \min(\mathrm{SNR}(t), \gamma)$ [MinSNR]. The paper weights the loss of
      each target so that this is the weight on the $x_0$-error: $\min(\mathrm{SNR}, \gamma)/\mathrm{SNR}$
      on the $\epsilon$-loss (as its released code does), $\min(\mathrm{SNR}, \gamma)/(\mathrm{SNR}+1)$ on
      the $v$-loss (see :func:`target_error_scale`). It equals ``"simple"`` where $\mathrm{SNR} \le \gamma$
      (noisy, large t) and caps it at $\gamma$ where $\mathrm{SNR} > \gamma$ (nearly clean, small t).
    - ``"edm"``: $w = \lambda(\sigma) = \frac{\sigma^2 + \sigma_\text{data}^2}{(\sigma\,\sigma_\text{data})^2}
      = \mathrm{SNR}(t) + 1/\sigma_\text{data}^2$ [EDM Table 1, "loss weighting"], with
      $\sigma = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t} = 1/\sqrt{\mathrm{SNR}(t)}$: EDM's
      $x = x_t/\sqrt{\bar\alpha_t} = x_0 + \sigma\epsilon$ and its denoiser $D_\theta(x; \sigma)$ is
      $\hat x_0$. Only the weight per noise level: EDM also draws $\ln\sigma$ from a normal
      (Table 1, "noise distribution") instead of t uniformly, which is not included here.

    Args:
        t: int or (B,) paper timesteps in 1..T (an int gives shape (1,)).
        loss: one of ``LOSS_WEIGHTINGS``.
        gamma: min-SNR's $\gamma > 0$ (the paper's default 5).
        sigma_data: EDM's $\sigma_\text{data} > 0$ (the paper's 0.5, for data in [-1, 1]).

    Returns:
        (B,) weights, on the schedule's device, per-dimension-mean convention (see module docstring).
    """
    check_choice("loss", loss, LOSS_WEIGHTINGS)
    gamma = check_number("gamma", gamma, 0.0, open_low=True)
    sigma_data = check_number("sigma_data", sigma_data, 0.0, open_low=True)
    t = check_timesteps(t, s.num_steps, device=s.device)
    snr = _at(s.snr, t)
    if loss == "simple":
        return snr
    if loss == "min_snr":
        return snr.clamp(max=gamma)
    if loss == "edm":
        return snr + 1.0 / sigma_data**2
    # "elbo": 1/2 abar_{t-1} beta_t / ((1 - abar_{t-1})(1 - abar_t)) = 1/2 (SNR(t-1) - SNR(t))
    alpha_bar_prev = _at(s.alpha_bars, t - 1)
    one_minus_prev, one_minus = _at(s.one_minus_alpha_bars, t - 1), _at(s.one_minus_alpha_bars, t)
    kl_weight = 0.5 * alpha_bar_prev * _at(s.betas, t) / (one_minus_prev * one_minus)  # inf at t = 1
    decoder_weight = 0.5 / s.reverse_variances("beta_tilde")[1]
    return torch.where(t == 1, decoder_weight, kl_weight)
