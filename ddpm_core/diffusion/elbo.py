r"""The variational bound of DDPM, term by term, in bits per dimension [DDPM eq. 5] (chapter 4).

$-\log p_\theta(x_0) \le \underbrace{D_{KL}(q(x_T|x_0)\,\|\,p(x_T))}_{L_T}
+ \sum_{t=2}^{T}\underbrace{D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))}_{L_{t-1}}
\underbrace{- \log p_\theta(x_0|x_1)}_{L_0}$.

Bits per dimension: nats divided by $D \ln 2$, where $D$ is the number of values per image
(C·H·W). Data must lie on the 256-level grid of [-1, 1] (8-bit images), as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from .._checks import check_model_output, check_same_shape, check_tensor, check_timesteps
from ..utils import extract, randn
from .forward import q_sample
from .likelihood import discretized_gaussian_log_likelihood, normal_kl
from .posterior import p_mean_variance, q_posterior
from .schedule import NoiseSchedule


def _bits_per_dim(nats: Tensor) -> Tensor:
    """Average (B, ...) nats over all but the batch dimension and convert to bits: (B,)."""
    return nats.flatten(1).mean(1) / math.log(2.0)


def prior_bpd(s: NoiseSchedule, x0: Tensor) -> Tensor:
    r"""$L_T = D_{KL}(q(x_T|x_0)\,\|\,N(0, I))$ in bits/dim, per image: (B,).

    Nothing in it is learned; a schedule with $\bar\alpha_T \approx 0$ makes it tiny.
    """
    check_tensor("x0", x0)
    t = torch.full((x0.shape[0],), s.num_steps, dtype=torch.long, device=s.device)
    alpha_bar = extract(s.alpha_bars, t, x0.shape).to(x0.device)
    one_minus = extract(s.one_minus_alpha_bars, t, x0.shape).to(x0.device)
    mean, var = alpha_bar.sqrt() * x0, one_minus.expand_as(x0)
    zero = torch.zeros_like(x0)
    return _bits_per_dim(normal_kl(mean, var.log(), zero, zero))


def vlb_term_bpd(s: NoiseSchedule, x0: Tensor, xt: Tensor, t: Tensor, eps_theta: Tensor,
                 variance: str = "beta_tilde") -> Tensor:
    r"""The bound's term at step t, in bits/dim, per image: (B,).

    For $t \ge 2$: $L_{t-1} = D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))$ [DDPM eq. 5].
    For $t = 1$: $L_0 = -\log p_\theta(x_0|x_1)$ with the discretized Gaussian decoder of mean
    $\mu_\theta(x_1, 1)$ and variance $\sigma_1^2$ [DDPM eq. 13].

    Args:
        x0: (B, ...) data on the 256-level grid of [-1, 1].
        xt: (B, ...) a draw from $q(x_t|x_0)$.
        t: (B,) int64 paper timesteps in 1..T.
        eps_theta: (B, ...) the model's noise prediction at (xt, t).
        variance: the reverse variance $\sigma_t^2$: "beta_tilde" or "beta".
    """
    check_same_shape(x0=x0, xt=xt, eps_theta=eps_theta)
    t = check_timesteps(t, s.num_steps, x0.shape[0], device=s.device)
    mean_q, var_q = q_posterior(s, x0, xt, t)
    mean_p, var_p = p_mean_variance(s, eps_theta, xt, t, variance, clip_x0=False)
    # At t = 1 the posterior variance is 0 (log = -inf); clamp it there, the KL is not used.
    kl = normal_kl(mean_q, var_q.clamp(min=torch.finfo(var_q.dtype).tiny).log(), mean_p, var_p.log())
    decoder_nll = -discretized_gaussian_log_likelihood(x0, mean_p, 0.5 * var_p.log())
    is_first = (t == 1).reshape(-1, *([1] * (x0.dim() - 1)))
    return _bits_per_dim(torch.where(is_first, decoder_nll, kl))


@dataclass
class ElboTerms:
    r"""The terms of the bound for a batch of images, in bits/dim.

    Attributes:
        prior: (B,) $L_T$.
        terms: (B, T+1), column t is the term involving step t: column 1 is $L_0$, column
            $t \ge 2$ is $L_{t-1}$, column 0 is 0.
        total: (B,) ``prior + terms.sum(1)``, an upper bound on $-\log_2 p_\theta(x_0) / D$.
    """

    prior: Tensor
    terms: Tensor
    total: Tensor


def elbo_terms(model: Callable[[Tensor, Tensor], Tensor], s: NoiseSchedule, x0: Tensor, *,
               generator: torch.Generator | None = None, variance: str = "beta_tilde",
               progress: bool = True) -> ElboTerms:
    r"""Every term of the bound for each image in ``x0``: one model call per t = 1..T [DDPM eq. 5].

    Each term is estimated with one draw $x_t \sim q(x_t|x_0)$ per image (the terms are exact
    given that draw; the sum is an unbiased estimate of the bound).

    Args:
        model: ``model(xt, t) -> eps_theta``, on the schedule's device.
        x0: (B, ...) data on the 256-level grid of [-1, 1], on the schedule's device.
        generator: for the noise draws.
        variance: the reverse variance, "beta_tilde" or "beta", or "learned": the model returns
            (B, 2C, ...) and each term uses its variance (``vlb_terms_learned``) [IDDPM eq. 15].
        progress: show a tqdm bar over t.

    Returns:
        ``ElboTerms`` in bits/dim.
    """
    from .learned_variance import split_learned_output, vlb_terms_learned  # it builds on this module

    check_tensor("x0", x0)
    B, T = x0.shape[0], s.num_steps
    terms = torch.zeros(B, T + 1, device=x0.device)
    with torch.no_grad():
        for t_int in tqdm(range(1, T + 1), desc="bound terms", disable=not progress):
            t = torch.full((B,), t_int, dtype=torch.long, device=x0.device)
            eps = randn(x0.shape, generator, x0.device)
            xt = q_sample(s, x0, t, eps)
            if variance == "learned":
                eps_theta, v = split_learned_output(model(xt, t), xt)
                terms[:, t_int] = vlb_terms_learned(s, eps_theta, v, x0, xt, t)
            else:
                eps_theta = check_model_output(model(xt, t), xt)
                terms[:, t_int] = vlb_term_bpd(s, x0, xt, t, eps_theta, variance)
        prior = prior_bpd(s, x0)
    return ElboTerms(prior=prior, terms=terms, total=prior + terms.sum(1))
