r"""The forward (noising) process $q$: one step, and the closed-form marginal (chapters 1-2)."""

from __future__ import annotations

from torch import Tensor

from .._checks import check_same_shape, check_tensor, check_timesteps
from .schedule import NoiseSchedule
from ..utils import extract


def q_step_mean_variance(s: NoiseSchedule, x_prev: Tensor, t) -> tuple[Tensor, Tensor]:
    r"""Mean and variance of one forward step $q(x_t|x_{t-1}) = N(\sqrt{\alpha_t}\,x_{t-1}, \beta_t I)$ [DDPM eq. 2].

    Args:
        s: the schedule.
        x_prev: (B, ...) $x_{t-1}$.
        t: int or (B,) paper timesteps in 1..T.

    Returns:
        mean (B, ...) and variance (B, 1, ..., 1).
    """
    check_tensor("x_prev", x_prev)
    t = check_timesteps(t, s.num_steps, x_prev.shape[0], device=s.device)
    return extract(s.alphas, t, x_prev.shape).sqrt() * x_prev, extract(s.betas, t, x_prev.shape)


def q_step_sample(s: NoiseSchedule, x_prev: Tensor, t, eps: Tensor) -> Tensor:
    r"""One forward step: $x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$ [DDPM eq. 2].

    Args:
        x_prev: (B, ...) $x_{t-1}$.
        t: int or (B,) paper timesteps in 1..T.
        eps: (B, ...) standard normal noise, same shape as ``x_prev``.
    """
    check_tensor("x_prev", x_prev)
    check_tensor("eps", eps)
    check_same_shape(x_prev=x_prev, eps=eps)
    mean, var = q_step_mean_variance(s, x_prev, t)
    return mean + var.sqrt() * eps


def q_mean_variance(s: NoiseSchedule, x0: Tensor, t) -> tuple[Tensor, Tensor]:
    r"""Mean and variance of the marginal $q(x_t|x_0) = N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)$ [DDPM eq. 4].

    Args:
        x0: (B, ...) clean data.
        t: int or (B,) paper timesteps in 0..T (t = 0 gives $x_0$ itself, variance 0).

    Returns:
        mean (B, ...) and variance (B, 1, ..., 1).
    """
    check_tensor("x0", x0)
    t = check_timesteps(t, s.num_steps, x0.shape[0], allow_zero=True, device=s.device)
    alpha_bar, one_minus = extract(s.alpha_bars, t, x0.shape), extract(s.one_minus_alpha_bars, t, x0.shape)
    return alpha_bar.sqrt() * x0, one_minus


def q_sample(s: NoiseSchedule, x0: Tensor, t, eps: Tensor) -> Tensor:
    r"""Jump straight to step t: $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ [DDPM eq. 4].

    Args:
        x0: (B, ...) clean data.
        t: int or (B,) paper timesteps in 0..T.
        eps: (B, ...) standard normal noise $\epsilon$, same shape as ``x0``.

    Returns:
        (B, ...) $x_t$.
    """
    check_tensor("x0", x0)
    check_tensor("eps", eps)
    check_same_shape(x0=x0, eps=eps)
    mean, var = q_mean_variance(s, x0, t)
    return mean + var.sqrt() * eps
