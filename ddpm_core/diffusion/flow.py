r"""Flow matching on the linear path: the objective, its conversions to $\epsilon$ and $x_0$, and its samplers (chapter 10).

The conditional flow-matching path with the linear ("rectified") interpolant is
$x_\tau = (1-\tau)\,x_0 + \tau\,\epsilon$, $\tau \in [0, 1]$ [FM eq. 20-23 with $\sigma_\min = 0$; RF eq. 1],
whose velocity along one pair $(x_0, \epsilon)$ is $u = \mathrm d x_\tau/\mathrm d\tau = \epsilon - x_0$.
The objective regresses it: $L_\text{FM} = E_{\tau, x_0, \epsilon}\|u - u_\theta(x_\tau, \tau)\|^2$;
sampling integrates $\mathrm dx/\mathrm d\tau = u_\theta(x, \tau)$ from $\tau = 1$ (pure noise,
$x_1 = \epsilon$) down to $\tau = 0$.

**The same UNet, the same grid.** Time is the diffusion's integer grid: $\tau = t/T$ for
$t \in \{1..T\}$, so a flow model is the book's UNet called as ``model(x, t)`` with the same
time embedding, and it samples through the package's one ``reverse_loop``.

**A change of target, weighting and time.** Knowing $x_\tau$, a velocity fixes $\epsilon$ and $x_0$:
$\hat x_0 = x_\tau - \tau\hat u$ and $\hat\epsilon = x_\tau + (1-\tau)\hat u$ (from
$x_\tau = (1-\tau)\hat x_0 + \tau\hat\epsilon$ and $\hat u = \hat\epsilon - \hat x_0$). The errors then
obey $u - \hat u = -(x_0 - \hat x_0)/\tau = (\epsilon - \hat\epsilon)/(1-\tau)$, so
$L_\text{FM}$ is the weight $1/\tau^2$ on the $x_0$-error (chapter 9's language) at signal-to-noise
ratio $\mathrm{SNR}(\tau) = (1-\tau)^2/\tau^2$. And $x_\tau/\sqrt{(1-\tau)^2 + \tau^2}$ is a
variance-preserving $x_t$ with $\bar\alpha = (1-\tau)^2/((1-\tau)^2 + \tau^2)$ (same SNR): a
diffusion model and a flow model predict the same thing at matching SNR, rescaled.

Tags: [FM] Lipman et al. 2023, "Flow matching for generative modeling"; [RF] Liu et al. 2023,
"Flow straight and fast"; [EDM] Karras et al. 2022 (Heun's method, Algorithm 1).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._checks import check_choice, check_int, check_model_output, check_same_shape, check_tensor, check_timesteps
from ..utils import randn
from .sampling import _finish, reverse_loop, timestep_pairs

__all__ = ["FLOW_SOLVERS", "eps_from_velocity", "flow_interpolate", "flow_sample", "flow_snr", "flow_tau",
           "flow_timesteps", "loss_flow_matching", "velocity_from_eps", "x0_from_velocity"]

FLOW_SOLVERS = ("euler", "heun")
"""The ODE solvers :func:`flow_sample` knows."""


def flow_tau(t, num_steps: int, like: Tensor) -> Tensor:
    r"""$\tau = t/T$ for int or (B,) timesteps in 0..T, as (B, 1, ..., 1) in ``like``'s dtype and device."""
    t = check_timesteps(t, num_steps, like.shape[0], device=like.device, allow_zero=True)
    return (t.to(like.dtype) / num_steps).reshape(-1, *([1] * (like.dim() - 1)))


def flow_interpolate(x0: Tensor, eps: Tensor, tau: Tensor) -> Tensor:
    r"""$x_\tau = (1-\tau)x_0 + \tau\epsilon$ [FM eq. 22 with $\sigma_\min = 0$]; ``tau`` broadcasts over x0."""
    check_tensor("x0", x0)
    check_tensor("eps", eps)
    check_same_shape(x0=x0, eps=eps)
    return (1.0 - tau) * x0 + tau * eps


def x0_from_velocity(x_tau: Tensor, tau: Tensor, u: Tensor) -> Tensor:
    r"""$\hat x_0 = x_\tau - \tau\hat u$: the clean data a velocity implies at $x_\tau$."""
    return x_tau - tau * u


def eps_from_velocity(x_tau: Tensor, tau: Tensor, u: Tensor) -> Tensor:
    r"""$\hat\epsilon = x_\tau + (1-\tau)\hat u$: the noise a velocity implies at $x_\tau$."""
    return x_tau + (1.0 - tau) * u


def velocity_from_eps(x_tau: Tensor, tau: Tensor, eps: Tensor) -> Tensor:
    r"""$\hat u = (\hat\epsilon - x_\tau)/(1-\tau)$ for $\tau < 1$: the inverse of :func:`eps_from_velocity`."""
    return (eps - x_tau) / (1.0 - tau)


def flow_snr(tau: Tensor) -> Tensor:
    r"""$\mathrm{SNR}(\tau) = (1-\tau)^2/\tau^2$ of the linear path (signal scale $1-\tau$, noise scale $\tau$)."""
    return (1.0 - tau).pow(2) / tau.pow(2)


def loss_flow_matching(model: Callable[[Tensor, Tensor], Tensor], x0: Tensor, num_steps: int, t=None,
                       eps: Tensor | None = None, generator: torch.Generator | None = None,
                       reduction: str = "mean") -> Tensor:
    r"""$L_\text{FM} = E\,\|(\epsilon - x_0) - u_\theta(x_\tau, t)\|^2$ with $\tau = t/T$, $t \sim U\{1..T\}$ [FM eq. 23].

    Args:
        model: ``model(x_tau, t) -> u_theta`` with t a (B,) int64 tensor in 1..T.
        x0: (B, ...) clean data.
        num_steps: T, the size of the time grid.
        t, eps: (B,) timesteps and (B, ...) noise; drawn from ``generator`` when None.
        reduction: "mean" (a scalar) or "none" ((B,) mean squared error per image).
    """
    check_choice("reduction", reduction, ("mean", "none"))
    check_tensor("x0", x0)
    num_steps = check_int("num_steps", num_steps, 1)
    if t is None:
        gen_device = generator.device if generator is not None else x0.device
        t = torch.randint(1, num_steps + 1, (x0.shape[0],), generator=generator, device=gen_device)
    t = check_timesteps(t, num_steps, x0.shape[0], device=x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, x0.device, x0.dtype)
    tau = flow_tau(t, num_steps, x0)
    x_tau = flow_interpolate(x0, eps, tau)
    u_theta = check_model_output(model(x_tau, t), x_tau)
    per_image = (eps - x0 - u_theta).pow(2).flatten(1).mean(1)  # (B,)
    return per_image.mean() if reduction == "mean" else per_image


def flow_timesteps(num_steps: int, num_sample_steps: int) -> list[int]:
    r"""S evenly spaced times $t_i = \mathrm{round}(iT/S)$, i = 1..S, so $\tau$ runs $1 > \dots > 0$ uniformly."""
    num_steps = check_int("num_steps", num_steps, 1)
    num_sample_steps = check_int("num_sample_steps", num_sample_steps, 1, num_steps)
    return [round(i * num_steps / num_sample_steps) for i in range(1, num_sample_steps + 1)]


def _euler(u: Tensor, x: Tensor, tau: float, tau_prev: float) -> Tensor:
    return x + (tau_prev - tau) * u  # dx/dtau = u, from tau down to tau_prev


def _flow_step(model, num_steps: int, solver: str):
    """``step(s, u, x, t, t_prev) -> (x_prev, x0_hat)`` for ``reverse_loop``; Heun calls the model once more."""

    def step(s, u, x, t: int, t_prev: int):
        tau, tau_prev = t / num_steps, t_prev / num_steps
        x_prev = _euler(u, x, tau, tau_prev)
        if solver == "heun" and t_prev > 0:  # EDM Alg. 1: the trapezoid of the two slopes, Euler at the end
            t_vec = torch.full((x.shape[0],), t_prev, dtype=torch.long, device=x.device)
            u_prev = check_model_output(model(x_prev, t_vec), x_prev)
            x_prev = _euler(0.5 * (u + u_prev), x, tau, tau_prev)
        return x_prev, x0_from_velocity(x, tau, u)

    return step


@torch.no_grad()
def flow_sample(model: Callable[[Tensor, Tensor], Tensor], shape, num_sample_steps: int = 20, solver: str = "euler",
                *, num_steps: int = 1000, generator: torch.Generator | None = None, trajectory: bool = False,
                progress: bool = True, x_T: Tensor | None = None, device=None):
    r"""Integrate $\mathrm dx/\mathrm d\tau = u_\theta(x, \tau)$ from $\tau = 1$ ($x \sim N(0, I)$) to 0 in S steps.

    Euler: $x_{\tau'} = x_\tau + (\tau' - \tau)\,u_\theta(x_\tau, \tau)$ (S evaluations). Heun
    [EDM Alg. 1]: an Euler guess, the slope there, and the step with their mean; the last step
    (to $\tau = 0$) stays Euler, so $2S - 1$ evaluations. The states go through ``reverse_loop``.

    Args:
        model: ``model(x, t) -> u_theta``, t a (B,) int64 tensor in 1..T ($\tau = t/T$).
        shape: (B, C, H, W) of the samples (ignored when ``x_T`` is given).
        num_sample_steps: S in 1..T.
        solver: "euler" or "heun".
        num_steps: T of the training grid.
        generator, trajectory, progress, x_T, device: as ``ddpm_sample``.

    Returns:
        (B, ...) samples, or ``(x0, Trajectory)`` when ``trajectory`` is True.
    """
    check_choice("solver", solver, FLOW_SOLVERS)
    pairs = timestep_pairs(flow_timesteps(num_steps, num_sample_steps))
    step = _flow_step(model, num_steps, solver)
    return _finish(reverse_loop(model, None, shape, pairs, step, generator=generator, x_T=x_T, device=device,
                                progress=progress, desc=f"flow {solver}-{num_sample_steps}"), trajectory)
