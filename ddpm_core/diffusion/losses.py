r"""Training objectives: the simplified loss $L_\text{simple}$ and a one-sample estimate of the bound (chapters 4, 6)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._checks import check_choice, check_model_output, check_same_shape, check_tensor, check_timesteps
from ..utils import randn
from .elbo import prior_bpd, vlb_term_bpd
from .forward import q_sample
from .schedule import NoiseSchedule


def _draw_t_eps(s: NoiseSchedule, x0: Tensor, t, eps, generator) -> tuple[Tensor, Tensor]:
    """Check or draw t ~ U{1..T} (B,) and eps ~ N(0, I) like x0."""
    check_tensor("x0", x0)
    B = x0.shape[0]
    if t is None:
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(1, s.num_steps + 1, (B,), generator=generator, device=gen_device)
    t = check_timesteps(t, s.num_steps, B, device=x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
    check_tensor("eps", eps)
    check_same_shape(x0=x0, eps=eps)
    return t, eps


def loss_simple(model: Callable[[Tensor, Tensor], Tensor], s: NoiseSchedule, x0: Tensor, t=None,
                eps: Tensor | None = None, generator: torch.Generator | None = None,
                reduction: str = "mean") -> Tensor:
    r"""$L_\text{simple} = \mathbb{E}_{t,x_0,\epsilon}\,\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\|^2$ [DDPM eq. 14].

    Args:
        model: ``model(xt, t) -> eps_theta``.
        x0: (B, ...) clean data.
        t: (B,) paper timesteps in 1..T; drawn uniformly when None.
        eps: (B, ...) noise; drawn when None.
        reduction: "mean" (a scalar) or "none" ((B,) mean squared error per image).
    """
    check_choice("reduction", reduction, ("mean", "none"))
    t, eps = _draw_t_eps(s, x0, t, eps, generator)
    xt = q_sample(s, x0, t, eps)
    eps_theta = check_model_output(model(xt, t), xt)
    per_image = (eps - eps_theta).pow(2).flatten(1).mean(1)  # (B,)
    return per_image.mean() if reduction == "mean" else per_image


def loss_vlb(model: Callable[[Tensor, Tensor], Tensor], s: NoiseSchedule, x0: Tensor, t=None,
             eps: Tensor | None = None, generator: torch.Generator | None = None,
             variance: str = "beta_tilde", reduction: str = "mean") -> Tensor:
    r"""One-sample estimate of the whole bound in bits/dim: $L_T + T\cdot L_{t-1}$ with $t \sim U\{1..T\}$ [DDPM eq. 5].

    Its expectation over t is $L_T + \sum_{t} L_{t-1}$, the bound itself; training on it is
    DDPM Table 2's "true variational bound" objective with fixed isotropic $\Sigma$.
    ``x0`` must lie on the 256-level grid of [-1, 1] (the $t = 1$ term is a discretized likelihood).

    Args: as ``loss_simple``; ``variance`` is the reverse variance $\sigma_t^2$.
    """
    check_choice("reduction", reduction, ("mean", "none"))
    t, eps = _draw_t_eps(s, x0, t, eps, generator)
    xt = q_sample(s, x0, t, eps)
    eps_theta = check_model_output(model(xt, t), xt)
    per_image = prior_bpd(s, x0) + s.num_steps * vlb_term_bpd(s, x0, xt, t, eps_theta, variance)
    return per_image.mean() if reduction == "mean" else per_image
