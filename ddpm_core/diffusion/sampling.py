r"""Samplers: one reverse loop, with DDPM's ancestral step (Algorithm 2) and DDIM's step (chapter 7).

A sampler is a grid of timestep pairs $(t, t')$ walked from $T$ down to 0 and a step that takes
the model's output $\epsilon_\theta$ from $x_t$ to $x_{t'}$ (the step does not own the model).
:func:`reverse_loop` is the one loop: it calls the model, checks what it returned, applies the
step and yields $(t, x_t, \hat x_0)$ at every visited t, so a trajectory costs nothing extra.
DDPM visits every pair $(t, t-1)$; DDIM visits S of them. ``ddpm_sample`` and ``ddim_sample``
call any ``model(xt, t) -> eps_theta`` (wrap a class-conditional model with ``ddpm_core.guided``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor
from tqdm import tqdm

from .._checks import (check_choice, check_finite_result, check_int, check_model_output, check_tensor,
                       check_timesteps, check_unit_interval, readable)
from ..utils import extract, randn
from .learned_variance import learned_log_variance, split_learned_output
from .posterior import eps_from_x0, p_mean_variance, x0_from_eps
from .schedule import REVERSE_VARIANCES, NoiseSchedule

SAMPLER_VARIANCES = (*REVERSE_VARIANCES, "learned")
"""``ddpm_sample``'s choices of sigma_t^2: DDPM's two fixed ones, or the model's own [IDDPM eq. 15]."""

Model = Callable[[Tensor, Tensor], Tensor]
Step = Callable[[NoiseSchedule, Tensor, Tensor, int, int], tuple[Tensor, Tensor]]
"""``step(s, eps_theta, xt, t, t_prev) -> (x_prev, x0_hat)``, as the loop calls it."""


@dataclass
class Trajectory:
    r"""The states a sampler visited, from $x_T$ down to $x_0$, kept on the CPU.

    Attributes:
        t: paper timesteps of the states, ``[T, ..., 0]`` (K entries).
        xt: (K, B, ...) the state at each t (``xt[-1]`` is the sample $x_0$).
        x0_hat: (K, B, ...) the prediction $\hat x_0$ the step made at each t (clipped when the
            sampler clips; at t = 0, $x_0$ itself).
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


# -- the steps --------------------------------------------------------------------------------
def ddpm_step(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, *,
              generator: torch.Generator | None = None, variance: str = "beta_tilde",
              clip_x0: bool = False, return_x0_hat: bool = False, v: Tensor | None = None):
    r"""One step of Algorithm 2: $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$, with $z = 0$ at $t = 1$ [DDPM Alg. 2].

    $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon_\theta\big)$.
    The last step returns the mean: adding noise to the final sample would only blur it.

    Args:
        eps_theta: (B, ...) the model's noise prediction at (xt, t).
        xt: (B, ...) current state $x_t$.
        t: int or (B,) paper timesteps in 1..T.
        generator: for $z$.
        variance: $\sigma_t^2$, "beta_tilde" or "beta", or "learned":
            $\exp(v\log\beta_t + (1-v)\log\tilde\beta_t)$ per value [IDDPM eq. 15], with ``v`` given.
        clip_x0: clip $\hat x_0$ to [-1, 1] inside the mean (DDPM's released code does).
        return_x0_hat: also return the step's prediction $\hat x_0$ [DDPM eq. 15].
        v: (B, ...) the learned interpolation (``split_learned_output``), for ``variance="learned"``.

    Returns:
        (B, ...) $x_{t-1}$, or ``(x_prev, x0_hat)`` with ``return_x0_hat``.
    """
    check_choice("variance", variance, SAMPLER_VARIANCES)
    if (variance == "learned") != (v is not None):
        raise ValueError('ddpm_step: pass v exactly when variance="learned"')
    mean, var = p_mean_variance(s, eps_theta, xt, t, "beta_tilde" if v is not None else variance, clip_x0)
    if v is not None:
        var = learned_log_variance(s, v, t).exp()  # (B, ...) one variance per value
    t = check_timesteps(t, s.num_steps, xt.shape[0], device=s.device)
    z = randn(xt.shape, generator, xt.device, xt.dtype)
    not_last = (t > 1).to(xt.dtype).reshape(-1, *([1] * (xt.dim() - 1)))  # no noise at t = 1
    x_prev = mean + not_last * var.sqrt() * z
    if not return_x0_hat:
        return x_prev
    x0_hat = x0_from_eps(s, xt, t, eps_theta)
    return x_prev, (x0_hat.clamp(-1.0, 1.0) if clip_x0 else x0_hat)


def ddim_timesteps(num_steps: int, num_sample_steps: int) -> list[int]:
    r"""The S evenly spaced timesteps $\tau_i = \mathrm{round}(iT/S)$, i = 1..S, that DDIM visits [DDIM §4.2].

    $\tau_S = T$ and $S = T$ gives every step 1..T.
    """
    check_int("num_sample_steps", num_sample_steps)
    if not 1 <= num_sample_steps <= num_steps:
        raise ValueError(f"num_sample_steps (S) must lie in 1..T={num_steps}, got {num_sample_steps}")
    return [round(i * num_steps / num_sample_steps) for i in range(1, num_sample_steps + 1)]


def timestep_pairs(taus: list[int]) -> list[tuple[int, int]]:
    r"""The loop's pairs $(t, t')$ from increasing visited steps $\tau_1 < \dots < \tau_S$: $(\tau_S, \tau_{S-1}), \dots, (\tau_1, 0)$."""
    down = list(taus)[::-1]
    return list(zip(down, [*down[1:], 0]))


def ddim_step(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, t_prev, eta: float = 0.0, *,
              generator: torch.Generator | None = None, clip_x0: bool = False, return_x0_hat: bool = False):
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
        return_x0_hat: also return the step's prediction $\hat x_0$.

    Returns:
        (B, ...) $x_{t'}$, or ``(x_prev, x0_hat)`` with ``return_x0_hat``.
    """
    eta = check_unit_interval("eta", eta)
    check_tensor("xt", xt)
    if isinstance(t, int) and isinstance(t_prev, int) and t_prev >= t:
        raise ValueError(f"t_prev must be smaller than t, got t={t}, t_prev={t_prev}")
    t = check_timesteps(t, s.num_steps, xt.shape[0], device=s.device)
    t_prev = check_timesteps(t_prev, s.num_steps, xt.shape[0], name="t_prev", allow_zero=True, device=s.device)
    if readable(t) and (t_prev >= t).any():
        raise ValueError("t_prev must be smaller than t")
    x0_hat = x0_from_eps(s, xt, t, eps_theta)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_theta = eps_from_x0(s, xt, t, x0_hat)
    alpha_bar_prev = extract(s.alpha_bars, t_prev, xt.shape)
    var = extract(s.one_minus_alpha_bars, t, xt.shape)  # 1 - ᾱ_t
    var_prev = extract(s.one_minus_alpha_bars, t_prev, xt.shape)  # 1 - ᾱ_t'
    # 1 - ᾱ_t/ᾱ_t', computed without cancellation: while ᾱ_t' > 1/2 the ratio is near 1, so use
    # (ᾱ_t' - ᾱ_t)/ᾱ_t' = ((1-ᾱ_t) - (1-ᾱ_t'))/ᾱ_t' with the stored 1-ᾱ; below, the ratio itself
    one_minus_ratio = torch.where(alpha_bar_prev > 0.5, (var - var_prev) / alpha_bar_prev,
                                  1.0 - extract(s.alpha_bars, t, xt.shape) / alpha_bar_prev)
    sigma = eta * (var_prev / var * one_minus_ratio).sqrt()
    direction = (var_prev - sigma**2).clamp(min=0.0).sqrt() * eps_theta
    x_prev = alpha_bar_prev.sqrt() * x0_hat + direction
    if eta > 0:
        x_prev = x_prev + sigma * randn(xt.shape, generator, xt.device, xt.dtype)
    return (x_prev, x0_hat) if return_x0_hat else x_prev


# -- the loop ---------------------------------------------------------------------------------
def _start(s: NoiseSchedule, shape, x_T, device, generator) -> Tensor:
    """x_T on ``device``: the given one (checked against ``shape``) or a fresh N(0, I) draw."""
    device = torch.device(device if device is not None else s.device if s is not None else "cpu")
    if x_T is not None:
        check_tensor("x_T", x_T)
        if shape is not None and tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape is {tuple(shape)}")
        return x_T.to(device)
    if shape is None or len(shape) < 1 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in shape):
        raise ValueError(f"shape must be a tuple of positive ints (B, ...), got {shape!r}")
    return randn(tuple(shape), generator, device)


def reverse_loop(model: Model, s: NoiseSchedule, shape, pairs: list[tuple[int, int]], step: Step, *,
                 generator: torch.Generator | None = None, x_T: Tensor | None = None, device=None,
                 progress: bool = True, desc: str = "sampling",
                 learned_variance: bool = False) -> Iterator[tuple[int, Tensor, Tensor]]:
    r"""The reverse process, one state at a time: yield $(t, x_t, \hat x_0)$ for each pair, then $(0, x_0, x_0)$.

    For each pair $(t, t')$, from $t = T$ down: $\epsilon_\theta = $ ``model(x_t, t)``, then
    ``x_prev, x0_hat = step(s, eps_theta, x_t, t, t')``. What the model returns is checked at
    every call (a wrong shape fails at the first one, with the shapes named), and the final
    sample is checked to be finite (one device sync, at the end). A model with learned variances
    returns 2C channels (``split_learned_output``'s layout), passed to the step whole.

    Args:
        model: ``model(xt, t) -> eps_theta`` with t a (B,) int64 tensor.
        s: the schedule the model was trained with (None for a flow model, whose steps need none).
        shape: (B, C, H, W) of the samples (ignored when ``x_T`` is given, which must match it).
        pairs: the $(t, t')$ to visit, e.g. ``timestep_pairs(ddim_timesteps(T, S))``.
        step: ``step(s, eps_theta, xt, t, t_prev) -> (x_prev, x0_hat)``.
        generator: seeds $x_T$ (the step draws its own noise).
        x_T: start from this $x_T$ instead of a fresh draw.
        device: where to sample; default the schedule's device.
        progress, desc: a tqdm bar and its label.
        learned_variance: the model returns (B, 2C, ...): $\epsilon_\theta$ and the variance output.
    """
    xt = _start(s, shape, x_T, device, generator)
    s = s.to(xt.device) if s is not None else None
    for t_int, t_prev_int in tqdm(pairs, desc=desc, disable=not progress):
        t = torch.full((xt.shape[0],), t_int, dtype=torch.long, device=xt.device)
        out = model(xt, t)
        if learned_variance:
            split_learned_output(out, xt)  # checks the (B, 2C, ...) shape; the step splits it
        else:
            check_model_output(out, xt)
        x_prev, x0_hat = step(s, out, xt, t_int, t_prev_int)
        yield t_int, xt, x0_hat
        xt = x_prev
    check_finite_result(xt, "the sample x_0")
    yield 0, xt, xt


def _finish(states: Iterator[tuple[int, Tensor, Tensor]], trajectory: bool):
    """Run a loop to its end: the sample, and its :class:`Trajectory` when asked for."""
    traj = Trajectory() if trajectory else None
    for t, xt, x0_hat in states:
        if traj is not None:
            traj._add(t, xt, x0_hat)
    return (xt, traj._stack()) if traj is not None else xt


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
        variance, clip_x0: as ``ddpm_step``; with "learned" the model returns (B, 2C, ...)
            (``split_learned_output``) and each step uses its variance [IDDPM eq. 15].
        device: where to sample; default the schedule's device.

    Returns:
        (B, ...) samples $x_0$, or ``(x0, Trajectory)`` when ``trajectory`` is True.
    """
    check_choice("variance", variance, SAMPLER_VARIANCES)
    learned = variance == "learned"

    def step(s, out, xt, t, t_prev):
        eps_theta, v = split_learned_output(out, xt) if learned else (out, None)
        return ddpm_step(s, eps_theta, xt, t, generator=generator, variance=variance, clip_x0=clip_x0,
                         return_x0_hat=True, v=v)

    pairs = timestep_pairs(range(1, s.num_steps + 1))
    return _finish(reverse_loop(model, s, shape, pairs, step, generator=generator, x_T=x_T, device=device,
                                progress=progress, desc="DDPM sampling", learned_variance=learned), trajectory)


@torch.no_grad()
def ddim_sample(model: Model, s: NoiseSchedule, shape, num_sample_steps: int = 50, eta: float = 0.0, *,
                generator: torch.Generator | None = None, trajectory: bool = False, progress: bool = True,
                x_T: Tensor | None = None, clip_x0: bool = False, device=None, learned_variance: bool = False):
    r"""DDIM sampling over S of the T steps, $\tau_S = T > \dots > \tau_1 > 0$ [DDIM Alg. / eq. 12].

    Args:
        model, s, shape, generator, trajectory, progress, x_T, clip_x0, device: as ``ddpm_sample``.
        num_sample_steps: S in 1..T (``ddim_timesteps`` gives the steps).
        eta: $\eta \in [0, 1]$; 0 makes the map $x_T \mapsto x_0$ deterministic.
        learned_variance: the model returns (B, 2C, ...) (``split_learned_output``); DDIM uses its
            $\epsilon_\theta$ only, since $\eta$ sets the step's variance.

    Returns:
        (B, ...) samples, or ``(x0, Trajectory)`` when ``trajectory`` is True.
    """
    pairs = timestep_pairs(ddim_timesteps(s.num_steps, num_sample_steps))
    eta = check_unit_interval("eta", eta)

    def step(s, out, xt, t, t_prev):
        eps_theta = split_learned_output(out, xt)[0] if learned_variance else out
        return ddim_step(s, eps_theta, xt, t, t_prev, eta, generator=generator, clip_x0=clip_x0,
                         return_x0_hat=True)

    return _finish(reverse_loop(model, s, shape, pairs, step, generator=generator, x_T=x_T, device=device,
                                progress=progress, desc=f"DDIM-{num_sample_steps} sampling",
                                learned_variance=learned_variance), trajectory)
