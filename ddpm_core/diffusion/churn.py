r"""EDM's stochastic sampler for the book's discrete VP models: churn, then a Heun step (chapter 10).

Karras et al.'s Algorithm 2 works in the scaled state $\bar x = x/\sqrt{\bar\alpha}$ and the
noise-to-signal ratio $\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}$ of chapter 8, where the PF ODE is
$d\bar x/d\sigma = \epsilon$ [EDM Alg. 2]. Each of its N = S steps, from level $\sigma_i$ to
$\sigma_{i+1}$:

1. **churn**: raise the noise level to $\hat\sigma_i = (1 + \gamma_i)\,\sigma_i$, with
   $\gamma_i = \min(S_\text{churn}/S, \sqrt2 - 1)$ where $S_\text{tmin} \le \sigma_i \le S_\text{tmax}$
   and 0 elsewhere, by adding fresh noise:
   $\hat{\bar x}_i = \bar x_i + S_\text{noise}\sqrt{\hat\sigma_i^2 - \sigma_i^2}\,z$, $z \sim N(0, I)$;
2. **Heun**: the deterministic step of :class:`~ddpm_core.diffusion.solvers.HeunStep` from
   $(\hat{\bar x}_i, \hat\sigma_i)$ to $\sigma_{i+1}$, Euler on the step to $\sigma = 0$ [EDM Alg. 1].

Churn and the ODE step are an SDE step split in two: the noise the churn adds is what the step
down then removes, so the sampler forgets, a little at each step, the errors of the earlier ones.

**On the integer grid.** The network knows only the trained t, so the raised level is mapped to
the trained $\hat t \ge t$ whose $\sigma_{\hat t}$ is nearest to $(1 + \gamma)\sigma_t$ in
$\log\sigma$ (as :func:`~ddpm_core.diffusion.solvers.solver_timesteps` maps EDM's levels; EDM's own
code rounds $\hat\sigma$ to the network's levels too), and that $\sigma_{\hat t}$ is the one used.
In $x = \sqrt{\bar\alpha}\,\bar x$ the churn reads
$x_{\hat t} = \sqrt{\bar\alpha_{\hat t}/\bar\alpha_t}\;x_t
+ S_\text{noise}\sqrt{1 - \bar\alpha_{\hat t}/\bar\alpha_t}\;z$, since
$\bar\alpha_{\hat t}(\sigma_{\hat t}^2 - \sigma_t^2) = 1 - \bar\alpha_{\hat t}/\bar\alpha_t$: with
$S_\text{noise} = 1$ it is the forward process $q(x_{\hat t} \mid x_t)$ itself. At $t = T$ nothing
is above, so the first step never churns (with EDM's $S_\text{tmax} = 50 < \sigma_T$ for the book's
T = 1000 schedules, it would not anyway).

**The loop.** The states :func:`reverse_loop` walks are the churned ones, $(\hat t_i, \hat x_i)$:
each :class:`ChurnStep` makes the Heun step from $\hat t_i$ to $t_{i+1}$ and then the churn to
$\hat t_{i+1}$, so the loop's own model call is the first evaluation at $(\hat x_i, \hat t_i)$ and
none is wasted: $2S - 1$ evaluations for S steps, as Heun (:func:`churn_nfe`).

**Defaults** are EDM's settings for its ImageNet-64 model (``generate.py --steps=256
--S_churn=40 --S_min=0.05 --S_max=50 --S_noise=1.003``): σ in the book's units is EDM's σ, for
data in [-1, 1]. With S well below 256 steps, $S_\text{churn}/S$ reaches the cap $\sqrt2 - 1$.
``s_churn=0`` is exactly the package's Heun sampler.
Tags: [EDM] Karras et al. 2022, "Elucidating the design space of diffusion-based generative models".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_int, check_number, check_tensor, check_timesteps
from ..utils import extract, randn
from .sampling import Model, _finish, reverse_loop
from .schedule import NoiseSchedule
from .solvers import HeunStep, Spacing, solver_timesteps

__all__ = ["CHURN_GAMMA_MAX", "EDM_S_CHURN", "EDM_S_TMIN", "EDM_S_TMAX", "EDM_S_NOISE", "churn_levels",
           "churn_pairs", "churn_noise", "ChurnStep", "churn_nfe", "churn_sample"]

CHURN_GAMMA_MAX = math.sqrt(2.0) - 1.0
r"""The cap on $\gamma_i$ [EDM Alg. 2]: $\hat\sigma \le \sqrt2\,\sigma$, a churn at most doubles the variance."""
EDM_S_CHURN = 40.0
"""EDM's $S_\\text{churn}$ for its ImageNet-64 model (with 256 steps: $\\gamma = 0.156$)."""
EDM_S_TMIN = 0.05
"""EDM's $S_\\text{tmin}$ (ImageNet-64): no churn below σ = 0.05, where new noise would blur detail."""
EDM_S_TMAX = 50.0
"""EDM's $S_\\text{tmax}$ (ImageNet-64): no churn above σ = 50, where the state is nearly all noise anyway."""
EDM_S_NOISE = 1.003
"""EDM's $S_\\text{noise}$ (ImageNet-64): slightly more than the exact noise, against the denoiser's over-smoothing."""


def _log_sigmas(s: NoiseSchedule) -> Tensor:
    r"""(T+1,) float64 $\log\sigma_t = \tfrac12(\log(1-\bar\alpha_t) - \log\bar\alpha_t)$, CPU; $-\infty$ at t = 0."""
    one_minus = s.one_minus_alpha_bars.to("cpu", torch.float64)
    return 0.5 * (one_minus.log() - s.alpha_bars.to("cpu", torch.float64).log())


def churn_levels(s: NoiseSchedule, num_sample_steps: int, spacing: Spacing = "karras", *,
                 s_churn: float = EDM_S_CHURN, s_tmin: float = EDM_S_TMIN,
                 s_tmax: float = EDM_S_TMAX) -> list[tuple[int, int]]:
    r"""The S pairs $(t_i, \hat t_i)$, from $t_0 = T$ down: each grid step and the trained step its churn raises it to.

    $t_i$ are :func:`solver_timesteps` (decreasing); $\gamma = \min(S_\text{churn}/S, \sqrt2 - 1)$
    where $S_\text{tmin} \le \sigma_{t_i} \le S_\text{tmax}$, else 0 [EDM Alg. 2]; $\hat t_i$ is the
    $t \in t_i..T$ whose $\log\sigma_t$ is nearest to $\log((1 + \gamma)\sigma_{t_i})$ ($\hat t_i = t_i$
    without churn).

    Args:
        s: the schedule (its $\bar\alpha$ is read once, to the CPU).
        num_sample_steps: S in 1..T.
        spacing: one of ``SPACINGS``.
        s_churn: $S_\text{churn} \ge 0$, the total churn (0: none).
        s_tmin, s_tmax: $0 \le S_\text{tmin} \le S_\text{tmax}$, the band of σ that churns.
    """
    taus = solver_timesteps(s, num_sample_steps, spacing)  # checks S and spacing
    s_churn = check_number("s_churn", s_churn, 0.0)
    s_tmin = check_number("s_tmin", s_tmin, 0.0)
    s_tmax = check_number("s_tmax", s_tmax, s_tmin)
    gamma = min(s_churn / num_sample_steps, CHURN_GAMMA_MAX)
    log_sigma = _log_sigmas(s)  # (T+1,)
    levels = []
    for t in reversed(taus):
        t_hat = t
        if gamma > 0 and s_tmin <= math.exp(log_sigma[t].item()) <= s_tmax:
            target = log_sigma[t].item() + math.log1p(gamma)  # log((1 + γ) σ_t)
            t_hat = t + int((log_sigma[t:] - target).abs().argmin())
        levels.append((t, t_hat))
    return levels


def churn_pairs(levels: list[tuple[int, int]]) -> list[tuple[int, int]]:
    r"""The loop's pairs $(\hat t_0, \hat t_1), \dots, (\hat t_{S-1}, 0)$: the churned states it visits."""
    t_hats = [t_hat for _, t_hat in levels]
    return list(zip(t_hats, [*t_hats[1:], 0]))


def churn_noise(s: NoiseSchedule, xt: Tensor, t: int, t_hat: int, s_noise: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    r"""Raise $x_t$ to $\hat t$: $\hat{\bar x} = \bar x + S_\text{noise}\sqrt{\hat\sigma^2 - \sigma^2}z$ [EDM Alg. 2].

    Here $\sigma = \sigma_t$, $\hat\sigma = \sigma_{\hat t}$, $\bar x = x/\sqrt{\bar\alpha}$. In x itself:
    $x_{\hat t} = \sqrt{\bar\alpha_{\hat t}/\bar\alpha_t}\,x_t
    + S_\text{noise}\sqrt{1 - \bar\alpha_{\hat t}/\bar\alpha_t}\,z$ (the forward process
    $q(x_{\hat t}|x_t)$ for $S_\text{noise} = 1$). $1 - \bar\alpha_{\hat t}/\bar\alpha_t$ is computed
    as $((1-\bar\alpha_{\hat t}) - (1-\bar\alpha_t))/\bar\alpha_t$ while $\bar\alpha_t > 1/2$, as
    ``ddim_step`` does, against cancellation. $\hat t = t$ returns ``xt`` itself and draws nothing.

    Args:
        xt: (B, ...) $x_t$.
        t, t_hat: ints, $1 \le t \le \hat t \le T$.
        s_noise: $S_\text{noise} > 0$.
        generator: for $z$.

    Returns:
        (B, ...) $x_{\hat t}$.
    """
    check_tensor("xt", xt)
    check_int("t", t, 1, s.num_steps)
    check_int("t_hat", t_hat, t, s.num_steps)
    s_noise = check_number("s_noise", s_noise, 0.0, open_low=True)
    if t_hat == t:
        return xt

    def at(values: Tensor, step: int) -> Tensor:  # values[step] broadcast over xt, in xt's dtype
        return extract(values, check_timesteps(step, s.num_steps, xt.shape[0], device=s.device), xt.shape).to(xt.dtype)

    alpha_bar, alpha_bar_hat = at(s.alpha_bars, t), at(s.alpha_bars, t_hat)
    one_minus, one_minus_hat = at(s.one_minus_alpha_bars, t), at(s.one_minus_alpha_bars, t_hat)
    one_minus_ratio = torch.where(alpha_bar > 0.5, (one_minus_hat - one_minus) / alpha_bar,
                                  1.0 - alpha_bar_hat / alpha_bar)
    z = randn(xt.shape, generator, xt.device, xt.dtype)
    return (alpha_bar_hat / alpha_bar).sqrt() * xt + s_noise * one_minus_ratio.clamp(min=0.0).sqrt() * z


class ChurnStep:
    r"""EDM's Algorithm 2 as the loop's step: Heun from $\hat t_i$ to $t_{i+1}$, then the churn to $\hat t_{i+1}$.

    The loop hands it the churned state $\hat x_i$ at $\hat t_i$ with $\epsilon_\theta(\hat x_i, \hat t_i)$;
    :class:`HeunStep` goes to $t_{i+1}$ (one more evaluation, none on the step to 0), and
    :func:`churn_noise` raises the result to $\hat t_{i+1}$, the loop's next state. Calls must come
    in the order of ``levels`` (each is checked); after the last one the step starts again at the first.

    Args:
        model: ``model(xt, t) -> eps_theta``, for Heun's second evaluation.
        levels: :func:`churn_levels`.
        s_noise: $S_\text{noise} > 0$.
        generator: for the churn noise.
        clip_x0: clip each $\hat x_0$ to [-1, 1] (as ``HeunStep``).

    Call as the loop does, ``step(s, eps_theta, x_hat, t_hat, t_hat_next)``; returns
    ``(x_hat_next, x0_hat)``, $\hat x_0$ of the step's first evaluation.
    """

    def __init__(self, model: Model, levels: list[tuple[int, int]], s_noise: float = EDM_S_NOISE,
                 generator: torch.Generator | None = None, clip_x0: bool = False):
        if not levels:
            raise ValueError("levels must hold at least one (t, t_hat) pair (see churn_levels)")
        self.heun = HeunStep(model, clip_x0)
        self.levels, self.generator = list(levels), generator
        self.s_noise = check_number("s_noise", s_noise, 0.0, open_low=True)
        self._i = 0  # which step of levels comes next

    def __call__(self, s: NoiseSchedule, eps_theta: Tensor, x_hat: Tensor, t_hat: int,
                 t_hat_next: int) -> tuple[Tensor, Tensor]:
        i = self._i
        t_next, planned_next = self.levels[i + 1] if i + 1 < len(self.levels) else (0, 0)
        if (t_hat, t_hat_next) != (self.levels[i][1], planned_next):
            raise ValueError(f"ChurnStep: step {i} should go from t_hat={self.levels[i][1]} to t_hat={planned_next}, "
                             f"got ({t_hat}, {t_hat_next}); walk churn_pairs(levels) in order")
        self._i = (i + 1) % len(self.levels)
        x_next, x0_hat = self.heun(s, eps_theta, x_hat, t_hat, t_next)
        if t_next > 0:
            x_next = churn_noise(s, x_next, t_next, t_hat_next, self.s_noise, self.generator)
        return x_next, x0_hat


def churn_nfe(num_sample_steps: int) -> int:
    """Network evaluations of S steps of :func:`churn_sample`: 2S - 1, as Heun (the churn costs none)."""
    check_int("num_sample_steps", num_sample_steps, 1)
    return 2 * num_sample_steps - 1


@torch.no_grad()
def churn_sample(model: Model, s: NoiseSchedule, shape, num_sample_steps: int, spacing: Spacing = "karras", *,
                 s_churn: float = EDM_S_CHURN, s_tmin: float = EDM_S_TMIN, s_tmax: float = EDM_S_TMAX,
                 s_noise: float = EDM_S_NOISE, clip_x0: bool = False, generator: torch.Generator | None = None,
                 trajectory: bool = False, progress: bool = True, x_T: Tensor | None = None, device=None):
    r"""EDM's stochastic sampler [EDM Alg. 2] on the schedule's trained steps, through :func:`reverse_loop`.

    S steps on the grid :func:`solver_timesteps` (``spacing``), each a churn and a Heun step (see
    the module docstring); ``churn_nfe(S)`` $= 2S - 1$ network evaluations. ``s_churn=0`` gives
    ``solver_sample(..., "heun", spacing)`` exactly.

    Args:
        model, s, shape, x_T, device: as ``ddim_sample``.
        num_sample_steps: S in 1..T.
        spacing: one of ``SPACINGS``; EDM's is "karras".
        s_churn, s_tmin, s_tmax, s_noise: EDM's $S_\text{churn} \ge 0$, $0 \le S_\text{tmin} \le
            S_\text{tmax}$, $S_\text{noise} > 0$ (defaults: its ImageNet-64 settings).
        clip_x0: clip $\hat x_0$ to [-1, 1] at every evaluation.
        generator: seeds $x_T$ and every churn's noise.
        trajectory: also return the ``Trajectory``: its states are the churned $(\hat t_i, \hat x_i)$,
            $[T, \hat t_1, \dots, \hat t_{S-1}, 0]$, each with its $\hat x_0$.
        progress: show a tqdm bar.

    Returns:
        (B, ...) samples $x_0$, or ``(x0, Trajectory)`` with ``trajectory``.
    """
    levels = churn_levels(s, num_sample_steps, spacing, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax)
    step = ChurnStep(model, levels, s_noise, generator, clip_x0)
    states = reverse_loop(model, s, shape, churn_pairs(levels), step, generator=generator, x_T=x_T, device=device,
                          progress=progress, desc=f"EDM churn-{num_sample_steps} sampling")
    return _finish(states, trajectory)
