r"""Learned reverse variances: $\Sigma_\theta$ interpolated between $\tilde\beta_t$ and $\beta_t$, and $L_\text{hybrid}$ (chapter 9).

DDPM fixes $\Sigma_\theta = \sigma_t^2 I$ with $\sigma_t^2 = \beta_t$ or $\tilde\beta_t$, the two
extremes [DDPM §3.2]. Improved DDPM lets the network choose, per value, a point between them on a
log scale [IDDPM eq. 15]:

$\Sigma_\theta(x_t, t) = \exp\big(v\log\beta_t + (1 - v)\log\tilde\beta_t\big) = \beta_t^{\,v}\,\tilde\beta_t^{\,1-v}$,

so $v = 0$ gives $\tilde\beta_t$ and $v = 1$ gives $\beta_t$; $v$ is not constrained (outside
$[0, 1]$ it extrapolates). **Raw output and v.** The paper calls the network's output $v$; its code
(improved-diffusion, ``ModelVarType.LEARNED_RANGE``) reads a raw output $r$ and sets
$v = (r + 1)/2$, so $r \in [-1, 1]$ spans $[\tilde\beta_t, \beta_t]$ and $r = 0$ is their geometric
mean. The functions here take $v$; :func:`split_learned_output` maps $r$ to $v$ as that code does.

**t = 1.** $\tilde\beta_1 = 0$ ($\bar\alpha_0 = 1$), so $\log\tilde\beta_1 = -\infty$. As
improved-diffusion's ``posterior_log_variance_clipped``, the lower end at $t = 1$ is
$\log\tilde\beta_2$; it is the same value ``NoiseSchedule.reverse_variances("beta_tilde")`` uses
there, so $v = 0$ and $v = 1$ reproduce the package's fixed ``"beta_tilde"`` and ``"beta"``
terms at every t, $t = 1$ included.

**The bound.** The mean stays DDPM's $\mu_\theta$ from $\epsilon_\theta$ [DDPM eq. 11]; only the
variance of each term of the bound changes [IDDPM eq. 4-6]. The variance is trained through the
bound, since $L_\text{simple}$ does not depend on it: $L_\text{hybrid} = L_\text{simple} +
\lambda L_\text{vlb}$ with $\lambda = 0.001$ and a stop-gradient on $\mu_\theta$ inside
$L_\text{vlb}$, so that the bound trains the variance and $L_\text{simple}$ alone the mean
[IDDPM eq. 16, §3.1].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._checks import check_choice, check_number, check_same_shape, check_tensor, check_timesteps
from ..utils import extract
from .elbo import _bits_per_dim
from .forward import q_sample
from .likelihood import discretized_gaussian_log_likelihood, normal_kl
from .losses import _draw_t_eps
from .posterior import p_mean_variance, q_posterior
from .schedule import NoiseSchedule

__all__ = ["HYBRID_LAMBDA", "learned_log_variance", "loss_hybrid", "split_learned_output", "vlb_terms_learned"]

HYBRID_LAMBDA = 0.001
"""IDDPM's weight of L_vlb in L_hybrid [IDDPM eq. 16]: small, so the bound's noisy gradients do not swamp L_simple."""


def learned_log_variance(s: NoiseSchedule, v: Tensor, t) -> Tensor:
    r"""$\log\Sigma_\theta = v\log\beta_t + (1 - v)\log\tilde\beta_t$, elementwise [IDDPM eq. 15].

    At $t = 1$, $\log\tilde\beta_1 = -\infty$ is replaced by $\log\tilde\beta_2$ (see the module
    docstring), as improved-diffusion's ``posterior_log_variance_clipped`` does.

    Args:
        v: (B, ...) interpolation coefficients, any real ($v = (r + 1)/2$ for a raw output $r$).
        t: int or (B,) paper timesteps in 1..T.

    Returns:
        (B, ...) $\log\Sigma_\theta$, in log units of $x$'s variance (nats of the log, not bits).
    """
    check_tensor("v", v)
    if s.num_steps < 2:
        raise ValueError("learned variances need T >= 2: at t = 1 the lower end is log beta_tilde_2 (beta_tilde_1 = 0)")
    t = check_timesteps(t, s.num_steps, v.shape[0], device=s.device)
    min_log = extract(s.reverse_variances("beta_tilde"), t, v.shape).log()  # log beta_tilde_t; t=1: log beta_tilde_2
    max_log = extract(s.betas, t, v.shape).log()  # log beta_t
    return v * max_log + (1.0 - v) * min_log


def split_learned_output(out, xt: Tensor, name: str = "model") -> tuple[Tensor, Tensor]:
    r"""Split a (B, 2C, ...) output into $\epsilon_\theta$ (first C channels) and $v = (r + 1)/2$ (last C).

    The channel layout and $v = (r + 1)/2$ are improved-diffusion's (``LEARNED_RANGE``).

    Args:
        out: what ``model(xt, t)`` returned, (B, 2C, ...).
        xt: (B, C, ...) the model's input.

    Returns:
        eps_theta (B, C, ...) and v (B, C, ...).
    """
    check_tensor("xt", xt)
    if xt.dim() < 2:
        raise ValueError(f"xt must have a channel dimension (B, C, ...), got shape {tuple(xt.shape)}")
    if not isinstance(out, Tensor) or not out.is_floating_point():
        raise TypeError(f"{name}(xt, t) must return a floating-point tensor, got "
                        f"{out.dtype if isinstance(out, Tensor) else type(out).__name__}")
    B, C, *rest = xt.shape
    if tuple(out.shape) != (B, 2 * C, *rest):
        raise ValueError(f"{name}(xt, t) returned shape {tuple(out.shape)} for xt of shape {tuple(xt.shape)}; "
                         f"a model with learned variances must return 2C = {2 * C} channels, shape "
                         f"{(B, 2 * C, *rest)}: C for eps_theta, then C for the variance")
    eps_theta, raw = out[:, :C], out[:, C:]  # (B, C, ...) each
    return eps_theta, (raw + 1.0) / 2.0


def vlb_terms_learned(s: NoiseSchedule, eps_theta: Tensor, v: Tensor, x0: Tensor, xt: Tensor, t) -> Tensor:
    r"""The bound's term at step t with a learned variance, in bits/dim, per image: (B,).

    $p_\theta(x_{t-1}|x_t) = N(\mu_\theta, \Sigma_\theta)$ with $\mu_\theta$ from $\epsilon_\theta$
    [DDPM eq. 11] and $\log\Sigma_\theta$ from :func:`learned_log_variance` [IDDPM eq. 15].
    For $t \ge 2$: $L_{t-1} = D_{KL}(N(\tilde\mu_t, \tilde\beta_t)\,\|\,N(\mu_\theta, \Sigma_\theta))$
    [DDPM eq. 5]; for $t = 1$: $L_0 = -\log p_\theta(x_0|x_1)$, the discretized decoder with mean
    $\mu_\theta$ and log-scale $\frac12\log\Sigma_\theta$ [DDPM eq. 13]. Nats are averaged over the
    D values of an image and divided by $\ln 2$, as in ``vlb_term_bpd``.

    Args:
        eps_theta: (B, ...) the noise prediction at (xt, t).
        v: (B, ...) the variance interpolation coefficients.
        x0: (B, ...) data on the 256-level grid of [-1, 1].
        xt: (B, ...) a draw from $q(x_t|x_0)$.
        t: int or (B,) paper timesteps in 1..T.
    """
    for name, x in (("eps_theta", eps_theta), ("v", v), ("x0", x0), ("xt", xt)):
        check_tensor(name, x)
    check_same_shape(x0=x0, xt=xt, eps_theta=eps_theta, v=v)
    t = check_timesteps(t, s.num_steps, x0.shape[0], device=s.device)
    mean_q, var_q = q_posterior(s, x0, xt, t)
    mean_p, _ = p_mean_variance(s, eps_theta, xt, t, clip_x0=False)
    log_var_p = learned_log_variance(s, v, t)
    # At t = 1 the posterior variance is 0 (log = -inf); clamp it there, the KL is not used.
    kl = normal_kl(mean_q, var_q.clamp(min=torch.finfo(var_q.dtype).tiny).log(), mean_p, log_var_p)
    decoder_nll = -discretized_gaussian_log_likelihood(x0, mean_p, 0.5 * log_var_p)
    is_first = (t == 1).reshape(-1, *([1] * (x0.dim() - 1)))
    return _bits_per_dim(torch.where(is_first, decoder_nll, kl))


def loss_hybrid(model: Callable[[Tensor, Tensor], Tensor], s: NoiseSchedule, x0: Tensor, t=None,
                eps: Tensor | None = None, generator: torch.Generator | None = None,
                lam: float = HYBRID_LAMBDA, reduction: str = "mean") -> Tensor:
    r"""$L_\text{hybrid} = L_\text{simple} + \lambda L_\text{vlb}$, $\lambda = 0.001$ [IDDPM eq. 16].

    Per image: $\frac1D\|\epsilon - \epsilon_\theta\|^2 + \lambda\,T\,L_{t-1}$, with $L_{t-1}$ from
    :func:`vlb_terms_learned` in bits/dim and $\mu_\theta$ built from a detached $\epsilon_\theta$
    (the stop-gradient of IDDPM §3.1): the bound trains only the variance channels, $L_\text{simple}$
    only the $\epsilon$ channels. $T L_{t-1}$ with $t \sim U\{1..T\}$ is the one-sample estimate of
    $\sum_t L_{t-1}$; $L_T$ is left out (it has no parameters). This is improved-diffusion's
    default learned-sigma loss (``RESCALED_MSE``): ``mse + vb * T / 1000``, ``vb`` the same
    bits/dim term, since $\lambda T = T/1000$. With t drawn by importance sampling, weight the
    ``reduction="none"`` result by $1/(T p_t)$ yourself.

    Args:
        model: ``model(xt, t) -> (B, 2C, ...)``: $\epsilon_\theta$, then the raw variance output $r$.
        x0: (B, C, ...) data on the 256-level grid of [-1, 1] (the $t = 1$ term is discretized).
        t: (B,) paper timesteps in 1..T; drawn uniformly when None.
        eps: (B, C, ...) noise; drawn when None.
        lam: $\lambda \ge 0$, the weight of $L_\text{vlb}$.
        reduction: "mean" (a scalar) or "none" ((B,) per image).
    """
    check_choice("reduction", reduction, ("mean", "none"))
    lam = check_number("lam", lam, 0.0)
    t, eps = _draw_t_eps(s, x0, t, eps, generator)
    xt = q_sample(s, x0, t, eps)
    eps_theta, v = split_learned_output(model(xt, t), xt)
    mse = (eps - eps_theta).pow(2).flatten(1).mean(1)  # (B,) L_simple per image
    vlb = s.num_steps * vlb_terms_learned(s, eps_theta.detach(), v, x0, xt, t)  # (B,) stop-gradient on mu_theta
    per_image = mse + lam * vlb
    return per_image.mean() if reduction == "mean" else per_image
