r"""Samplers: DDPM's ancestral sampler (Algorithm 2) and DDIM's generalized sampler.

A sampler step does not own the model: ``ddpm_step`` and ``ddim_step`` take the model's output
$\epsilon_\theta$; ``ddpm_sample`` and ``ddim_sample`` call any ``model(xt, t) -> eps_theta``
(wrap a class-conditional model with ``ddpm_core.guided``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from ._checks import check_choice, check_same_shape, check_tensor, check_timesteps, check_unit_interval
from .posterior import _eps_from_x0, _p_mean_variance, _x0_from_eps
from .schedule import REVERSE_VARIANCES, NoiseSchedule
from .utils import extract, randn

Model = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Trajectory:
    r"""The states a sampler visited, from $x_T$ down to $x_0$, kept on the CPU.

    Attributes:
        t: paper timesteps of the states, ``[T, ..., 0]`` (K entries).
        xt: (K, B, ...) the state at each t (``xt[-1]`` is the sample $x_0$).
        x0_hat: (K, B, ...) the model's prediction $\hat x_0$ made at each t (at t = 0, $x_0$ itself).
    """

    t: list[int] = field(default_factory=list)
    xt: Tensor | list = field(default_factory=list)
    x0_hat: Tensor | list = field(default_factory=list)

    def _add(self, t: int, xt: Tensor, x0_hat: Tensor) -> None:
        self.t.append(t)
        self.xt.append(xt.detach().cpu())
        self.x0_hat.append(x0_hat.detach().cpu())

    def _stack(self) -> "Trajectory":
        self.xt, self.x0_hat = torch.stack(self.xt), torch.stack(self.x0_hat)
        return self


def ddpm_step(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, *,
              generator: torch.Generator | None = None, variance: str = "beta_tilde",
              clip_x0: bool = False) -> Tensor:
    r"""One step of Algorithm 2: $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$, with $z = 0$ at $t = 1$ [DDPM Alg. 2].

    $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon_\theta\big)$.
    The last step returns the mean: adding noise to the final sample would only blur it.

    Args:
        eps_theta: (B, ...) the model's noise prediction at (xt, t).
        xt: (B, ...) current state $x_t$.
        t: int or (B,) paper timesteps in 1..T.
        generator: for $z$.
        variance: $\sigma_t^2$, "beta_tilde" or "beta".
        clip_x0: clip $\hat x_0$ to [-1, 1] inside the mean (DDPM's released code does).

    Returns:
        (B, ...) $x_{t-1}$.
    """
    check_tensor("eps_theta", eps_theta)
    check_tensor("xt", xt)
    check_same_shape(eps_theta=eps_theta, xt=xt)
    check_choice("variance", variance, REVERSE_VARIANCES)
    t = check_timesteps(t, s.num_steps, xt.shape[0], device=s.device)
    return _ddpm_step(s, eps_theta, xt, t, generator, variance, clip_x0)


def _ddpm_step(s, eps_theta, xt, t, generator, variance, clip_x0) -> Tensor:
    mean, var = _p_mean_variance(s, eps_theta, xt, t, variance, clip_x0)
    z = randn(xt.shape, generator, xt.device, xt.dtype)
    not_last = (t > 1).to(xt.dtype).reshape(-1, *([1] * (xt.dim() - 1)))  # no noise at t = 1
    return mean + not_last * var.sqrt() * z


def _check_sampler_args(s: NoiseSchedule, shape, x_T, device):
    if device is None:
        device = s.device
    if x_T is not None:
        check_tensor("x_T", x_T)
        if shape is not None and tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape is {tuple(shape)}")
        return tuple(x_T.shape), torch.device(device)
    if shape is None or len(shape) < 1 or any(not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"shape must be a tuple of positive ints (B, ...), got {shape!r}")
    return tuple(shape), torch.device(device)


@torch.no_grad()
def ddpm_sample(model: Model, s: NoiseSchedule, shape, *, generator: torch.Generator | None = None,
                trajectory: bool = False, progress: bool = True, x_T: Tensor | None = None,
                variance: str = "beta_tilde", clip_x0: bool = False, device=None):
    r"""Algorithm 2 of DDPM: start from $x_T \sim N(0, I)$ and apply ``ddpm_step`` for t = T, ..., 1.

    Args:
        model: ``model(xt, t) -> eps_theta`` with t a (B,) int64 tensor.
        s: the schedule the model was trained with.
        shape: (B, C, H, W) of the samples (ignored when ``x_T`` is given, which must match it).
        generator: seeds $x_T$ and every $z$ (drawn on the generator's device).
        trajectory: also return the ``Trajectory`` of every step.
        progress: show a tqdm bar.
        x_T: start from this $x_T$ instead of a fresh draw.
        variance, clip_x0: as ``ddpm_step``.
        device: where to sample; default the schedule's device.

    Returns:
        (B, ...) samples $x_0$, or ``(x0, Trajectory)`` when ``trajectory`` is True.
    """
    check_choice("variance", variance, REVERSE_VARIANCES)
    shape, device = _check_sampler_args(s, shape, x_T, device)
    s = s.to(device)
    xt = x_T.to(device) if x_T is not None else randn(shape, generator, device)
    traj = Trajectory() if trajectory else None
    for t_int in tqdm(range(s.num_steps, 0, -1), desc="DDPM sampling", disable=not progress):
        t = torch.full((shape[0],), t_int, dtype=torch.long, device=device)
        eps_theta = model(xt, t)
        if traj is not None:
            traj._add(t_int, xt, _x0_from_eps(s, xt, t, eps_theta))
        xt = _ddpm_step(s, eps_theta, xt, t, generator, variance, clip_x0)
    if traj is not None:
        traj._add(0, xt, xt)
        return xt, traj._stack()
    return xt


def ddim_timesteps(num_steps: int, num_sample_steps: int) -> list[int]:
    r"""The S evenly spaced timesteps $\tau_i = \mathrm{round}(iT/S)$, i = 1..S, that DDIM visits [DDIM §4.2].

    $\tau_S = T$ and $S = T$ gives every step 1..T.
    """
    if isinstance(num_sample_steps, bool) or not isinstance(num_sample_steps, int):
        raise TypeError(f"num_sample_steps must be an int, got {type(num_sample_steps).__name__}")
    if not 1 <= num_sample_steps <= num_steps:
        raise ValueError(f"num_sample_steps (S) must lie in 1..T={num_steps}, got {num_sample_steps}")
    return [round(i * num_steps / num_sample_steps) for i in range(1, num_sample_steps + 1)]


def ddim_step(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, t_prev, eta: float = 0.0, *,
              generator: torch.Generator | None = None, clip_x0: bool = False) -> Tensor:
    r"""One generalized step from $x_t$ to $x_{t'}$, $t' < t$ [DDIM eq. 12, 16].

    $x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}-\sigma^2}\,\epsilon_\theta + \sigma z$,
    $\sigma = \eta\sqrt{\frac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t'}}}$.
    $\eta = 0$ is deterministic (DDIM); $\eta = 1$ with $t' = t-1$ is DDPM with $\sigma_t^2 = \tilde\beta_t$.
    With ``clip_x0``, $\hat x_0$ is clipped to [-1, 1] and $\epsilon_\theta$ recomputed from it.

    Args:
        eps_theta: (B, ...) the model's noise prediction at (xt, t).
        xt: (B, ...) $x_t$.
        t: int or (B,) timesteps in 1..T; t_prev: int or (B,) in 0..T, below t.
        eta: $\eta \in [0, 1]$.
    """
    check_tensor("eps_theta", eps_theta)
    check_tensor("xt", xt)
    check_same_shape(eps_theta=eps_theta, xt=xt)
    eta = check_unit_interval("eta", eta)
    t = check_timesteps(t, s.num_steps, xt.shape[0], device=s.device)
    t_prev = check_timesteps(t_prev, s.num_steps, xt.shape[0], name="t_prev", allow_zero=True, device=s.device)
    if (t_prev >= t).any():
        raise ValueError("t_prev must be smaller than t")
    return _ddim_step(s, eps_theta, xt, t, t_prev, eta, generator, clip_x0)


def _ddim_step(s, eps_theta, xt, t, t_prev, eta, generator, clip_x0) -> Tensor:
    alpha_bar_prev = extract(s.alpha_bars, t_prev, xt.shape)
    var = extract(s.one_minus_alpha_bars, t, xt.shape)  # 1 - ᾱ_t
    var_prev = extract(s.one_minus_alpha_bars, t_prev, xt.shape)  # 1 - ᾱ_t'
    x0_hat = _x0_from_eps(s, xt, t, eps_theta)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_theta = _eps_from_x0(s, xt, t, x0_hat)
    # 1 - ᾱ_t/ᾱ_t', computed without cancellation: while ᾱ_t' > 1/2 the ratio is near 1, so use
    # (ᾱ_t' - ᾱ_t)/ᾱ_t' = ((1-ᾱ_t) - (1-ᾱ_t'))/ᾱ_t' with the stored 1-ᾱ; below, the ratio itself
    one_minus_ratio = torch.where(alpha_bar_prev > 0.5, (var - var_prev) / alpha_bar_prev,
                                  1.0 - extract(s.alpha_bars, t, xt.shape) / alpha_bar_prev)
    sigma = eta * (var_prev / var * one_minus_ratio).sqrt()
    direction = (var_prev - sigma**2).clamp(min=0.0).sqrt() * eps_theta
    x_prev = alpha_bar_prev.sqrt() * x0_hat + direction
    if eta > 0:
        x_prev = x_prev + sigma * randn(xt.shape, generator, xt.device, xt.dtype)
    return x_prev


@torch.no_grad()
def ddim_sample(model: Model, s: NoiseSchedule, shape, num_sample_steps: int = 50, eta: float = 0.0, *,
                generator: torch.Generator | None = None, trajectory: bool = False, progress: bool = True,
                x_T: Tensor | None = None, clip_x0: bool = False, device=None):
    r"""DDIM sampling over S of the T steps, $\tau_S = T > \dots > \tau_1 > 0$ [DDIM Alg. / eq. 12].

    Args:
        model, s, shape, generator, trajectory, progress, x_T, clip_x0, device: as ``ddpm_sample``.
        num_sample_steps: S in 1..T (``ddim_timesteps`` gives the steps).
        eta: $\eta \in [0, 1]$; 0 makes the map $x_T \mapsto x_0$ deterministic.

    Returns:
        (B, ...) samples, or ``(x0, Trajectory)`` when ``trajectory`` is True.
    """
    taus = ddim_timesteps(s.num_steps, num_sample_steps)
    eta = check_unit_interval("eta", eta)
    shape, device = _check_sampler_args(s, shape, x_T, device)
    s = s.to(device)
    xt = x_T.to(device) if x_T is not None else randn(shape, generator, device)
    traj = Trajectory() if trajectory else None
    pairs = list(zip(taus[::-1], [*taus[::-1][1:], 0]))  # (t, t_prev) from (T, ...) to (tau_1, 0)
    for t_int, t_prev_int in tqdm(pairs, desc=f"DDIM-{num_sample_steps} sampling", disable=not progress):
        t = torch.full((shape[0],), t_int, dtype=torch.long, device=device)
        t_prev = torch.full_like(t, t_prev_int)
        eps_theta = model(xt, t)
        if traj is not None:
            traj._add(t_int, xt, _x0_from_eps(s, xt, t, eps_theta))
        xt = _ddim_step(s, eps_theta, xt, t, t_prev, eta, generator, clip_x0)
    if traj is not None:
        traj._add(0, xt, xt)
        return xt, traj._stack()
    return xt
