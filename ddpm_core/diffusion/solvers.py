r"""Fast samplers as solvers of the probability-flow ODE: a timestep grid and a step (chapter 10).

Chapter 8 wrote the PF ODE in the scaled state $\bar x = x/\sqrt{\bar\alpha}$ and the
noise-to-signal ratio $\sigma = \sqrt{(1-\bar\alpha)/\bar\alpha}$ as $d\bar x/d\sigma = \epsilon^*(x, \sigma)$.
A solver is a grid of timesteps and a step, walked by the package's one loop, :func:`reverse_loop`:

- Euler holds $\epsilon$ constant over a step: DDIM with $\eta = 0$ [DDIM eq. 12].
- Heun averages the slopes at both ends, one more network evaluation per step [EDM Alg. 1].
- DPM-Solver++(2M) steps in $\lambda = -\log\sigma$ and extrapolates the data prediction
  $\hat x_0$ linearly from the last two steps, one evaluation per step [DPM-Solver++ Alg. 2].

Each is DDIM's update with a better estimate of the noise (or of $\hat x_0$) over the step. A step
that needs more than the loop gives holds it: :class:`HeunStep` holds the model for its second
evaluation, :class:`DPMSolverPP2MStep` the previous $\hat x_0$. Grids are integers in 1..T, so the
network is only asked about the t it was trained on; a grid may end at ``t_end > 0`` instead of
0, which is how a solver's order is measured away from the singular end at $\sigma = 0$.
Tags: [EDM] Karras et al. 2022; [DPM-Solver++] Lu et al. 2022 (arXiv:2211.01095).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_choice, check_int, check_model_output, check_same_shape, check_tensor, check_timesteps
from ..utils import extract
from .posterior import eps_from_x0, x0_from_eps
from .sampling import Model, Step, _finish, ddim_step, reverse_loop, timestep_pairs
from .schedule import NoiseSchedule

__all__ = ["SOLVERS", "SPACINGS", "KARRAS_RHO", "solver_timesteps", "solver_pairs", "euler_step", "HeunStep",
           "dpmpp_2m_update", "DPMSolverPP2MStep", "solver_step", "solver_nfe", "solver_sample"]

SOLVERS = ("euler", "heun", "dpmpp_2m")
"""The solvers :func:`solver_sample` knows."""
SPACINGS = ("uniform", "quadratic", "karras")
"""The timestep spacings :func:`solver_timesteps` knows."""
KARRAS_RHO = 7.0
"""$\\rho$ of EDM's spacing [EDM eq. 5]: larger $\\rho$ puts more steps at small $\\sigma$; 7 is the paper's choice."""

Solver = Literal["euler", "heun", "dpmpp_2m"]
Spacing = Literal["uniform", "quadratic", "karras"]


# -- the grids ----------------------------------------------------------------------------------
def _distinct(targets: list[int], low: int, high: int) -> list[int]:
    """Increasing rounded targets made S distinct ints in low..high: a collision moves up to the next free t."""
    out: list[int] = []
    for t in targets:
        out.append(max(t, out[-1] + 1 if out else low))
    S = len(out)
    return [min(t, high - (S - 1 - i)) for i, t in enumerate(out)]  # leave room below T for the rest


def _karras_targets(s: NoiseSchedule, num_sample_steps: int, t_end: int) -> list[int]:
    """The t in t_end+1..T whose log σ_t is nearest to each of EDM's S levels (one read of the schedule)."""
    one_minus = s.one_minus_alpha_bars.to("cpu", torch.float64)[t_end + 1:]
    log_sigma = 0.5 * (one_minus.log() - s.alpha_bars.to("cpu", torch.float64)[t_end + 1:].log())  # (T - t_end,)
    lo, hi = (math.exp(v / KARRAS_RHO) for v in (log_sigma[0].item(), log_sigma[-1].item()))
    u = torch.linspace(0.0, 1.0, num_sample_steps, dtype=torch.float64)  # (S,); S = 1 gives [0]: the level σ_min
    u = u if num_sample_steps > 1 else torch.ones(1, dtype=torch.float64)  # one step starts at T
    target = KARRAS_RHO * torch.log(lo + u * (hi - lo))  # (S,) log σ of each level, increasing
    return (t_end + 1 + (target[:, None] - log_sigma[None]).abs().argmin(1)).tolist()


def solver_timesteps(s: NoiseSchedule, num_sample_steps: int, spacing: Spacing = "uniform",
                     t_end: int = 0) -> list[int]:
    r"""The S increasing distinct timesteps $\tau_1 < \dots < \tau_S = T$ in $t_\mathrm{end}+1..T$ a solver visits.

    With $n = T - t_\mathrm{end}$ and i = 1..S:

    - ``"uniform"``: $\tau_i = t_\mathrm{end} + \mathrm{round}(i n / S)$, ``ddim_timesteps`` for
      $t_\mathrm{end} = 0$ [DDIM §4.2];
    - ``"quadratic"``: $\tau_i = t_\mathrm{end} + \mathrm{round}(i^2 n / S^2)$ [DDIM App. D.2] (DDIM's
      code stops at $0.8T$; here $\tau_S = T$, where $x_T$ lies);
    - ``"karras"``: $\sigma_i = \big(\sigma_\min^{1/\rho} + \tfrac{i-1}{S-1}(\sigma_\max^{1/\rho}
      - \sigma_\min^{1/\rho})\big)^\rho$ [EDM eq. 5], $\rho$ = ``KARRAS_RHO``, $\sigma_\max = \sigma_T$,
      $\sigma_\min = \sigma_{t_\mathrm{end}+1}$, each level mapped to the t whose $\sigma_t$ is
      nearest in $\log\sigma$ (as k-diffusion's ``sigma_to_t(quantize=True)``).

    Rounding: where two levels fall on one integer (or below $t_\mathrm{end}+1$), the later one
    moves up to the next free t, and $\tau_S$ stays T; where the spacing asks for more than one
    step per t, it takes every t. The pairs run from $\tau_S$ down to $t_\mathrm{end}$
    (:func:`solver_pairs`).

    Args:
        s: the schedule (karras reads its $\bar\alpha$ once, to the CPU).
        num_sample_steps: S in 1..T - t_end.
        spacing: one of ``SPACINGS``.
        t_end: where the pairs end: 0 for a sample, t > 0 to stop at $x_t$.
    """
    T = s.num_steps
    check_int("t_end", t_end, 0, T - 1)
    check_int("num_sample_steps", num_sample_steps)
    if not 1 <= num_sample_steps <= T - t_end:
        raise ValueError(f"num_sample_steps (S) must lie in 1..T - t_end = {T - t_end}, got {num_sample_steps}")
    check_choice("spacing", spacing, SPACINGS)
    S, n = num_sample_steps, T - t_end
    if spacing == "karras":
        targets = _karras_targets(s, S, t_end)
    elif spacing == "uniform":
        targets = [t_end + round(i * n / S) for i in range(1, S + 1)]
    else:
        targets = [t_end + round(i * i * n / (S * S)) for i in range(1, S + 1)]
    return _distinct(targets, t_end + 1, T)


def solver_pairs(s: NoiseSchedule, num_sample_steps: int, spacing: Spacing = "uniform",
                 t_end: int = 0) -> list[tuple[int, int]]:
    r"""The loop's pairs $(\tau_S, \tau_{S-1}), \dots, (\tau_1, t_\mathrm{end})$ of :func:`solver_timesteps`."""
    pairs = timestep_pairs(solver_timesteps(s, num_sample_steps, spacing, t_end))
    pairs[-1] = (pairs[-1][0], t_end)
    return pairs


# -- the steps ------------------------------------------------------------------------------------
def _predictions(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, clip_x0: bool) -> tuple[Tensor, Tensor]:
    r"""$(\epsilon, \hat x_0)$ at $(x_t, t)$; ``clip_x0`` clips $\hat x_0$ to [-1, 1] and recomputes $\epsilon$."""
    x0_hat = x0_from_eps(s, xt, t, eps_theta)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_theta = eps_from_x0(s, xt, t, x0_hat)
    return eps_theta, x0_hat


def _check_pair(s: NoiseSchedule, t, t_prev) -> None:
    check_int("t", t, 1, s.num_steps)
    check_int("t_prev", t_prev, 0, t - 1)


def euler_step(s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t, t_prev, *,
               clip_x0: bool = False) -> tuple[Tensor, Tensor]:
    r"""One Euler step of $d\bar x/d\sigma = \epsilon$ from t to t' < t: DDIM's step with $\eta = 0$ [DDIM eq. 12].

    $\bar x_{t'} = \bar x_t + (\sigma_{t'} - \sigma_t)\,\epsilon_\theta$, which, multiplied by
    $\sqrt{\bar\alpha_{t'}}$, is $x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}}\,\epsilon_\theta$
    (chapter 8); computed by ``ddim_step(eta=0)``. Args as ``ddim_step``.

    Returns:
        ``(x_prev, x0_hat)``, each (B, ...), the loop's ``Step`` contract.
    """
    return ddim_step(s, eps_theta, xt, t, t_prev, 0.0, clip_x0=clip_x0, return_x0_hat=True)


class HeunStep:
    r"""Heun's step of $d\bar x/d\sigma = \epsilon$, holding the model for its second evaluation [EDM Alg. 1].

    Without churn: the Euler predictor $\bar x' = \bar x_t + (\sigma_{t'} - \sigma_t)\,\epsilon_\theta(x_t, t)$,
    then the corrector $\bar x_{t'} = \bar x_t + (\sigma_{t'} - \sigma_t)\,\tfrac12\big(\epsilon_\theta(x_t, t)
    + \epsilon_\theta(\sqrt{\bar\alpha_{t'}}\bar x', t')\big)$; the step to $t' = 0$ ($\sigma = 0$) is
    Euler's, as in EDM. Both are ``euler_step``, the second with the mean of the two slopes. With
    ``clip_x0``, each evaluation's $\hat x_0$ is clipped and its $\epsilon$ recomputed before the mean.

    Args:
        model: ``model(xt, t) -> eps_theta``, called once more per step (the loop makes the first call).
        clip_x0: clip each $\hat x_0$ to [-1, 1].

    Call as the loop does, ``step(s, eps_theta, xt, t, t_prev)`` with int t, t_prev; returns
    ``(x_prev, x0_hat)``, $\hat x_0$ of the first evaluation.
    """

    def __init__(self, model: Model, clip_x0: bool = False):
        self.model, self.clip_x0 = model, clip_x0

    def __call__(self, s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t: int, t_prev: int) -> tuple[Tensor, Tensor]:
        _check_pair(s, t, t_prev)
        eps_theta, x0_hat = _predictions(s, eps_theta, xt, t, self.clip_x0)
        x_euler, _ = euler_step(s, eps_theta, xt, t, t_prev)  # the predictor
        if t_prev == 0:
            return x_euler, x0_hat
        t_next = torch.full((xt.shape[0],), t_prev, dtype=torch.long, device=xt.device)
        eps_next = check_model_output(self.model(x_euler, t_next), x_euler)
        eps_next, _ = _predictions(s, eps_next, x_euler, t_prev, self.clip_x0)
        x_prev, _ = euler_step(s, 0.5 * (eps_theta + eps_next), xt, t, t_prev)  # the corrector
        return x_prev, x0_hat


def dpmpp_2m_update(s: NoiseSchedule, xt: Tensor, x0_hat: Tensor, t: int, t_prev: int,
                    x0_hat_last: Tensor | None = None, t_last: int | None = None) -> Tensor:
    r"""DPM-Solver++(2M) from t to t' < t, in $\lambda = \log\sqrt{\bar\alpha/(1-\bar\alpha)}$ [DPM-Solver++ Alg. 2].

    $x_{t'} = \sqrt{\tfrac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\,x_t - \sqrt{\bar\alpha_{t'}}\,(e^{-h} - 1)\,D$,
    $h = \lambda_{t'} - \lambda_t$. First order ($D = \hat x_0$, which is DDIM's step) without a
    previous step or on the step to $t' = 0$ ($\lambda = \infty$); otherwise, with the previous step
    from $t_\mathrm{last} > t$, $r = (\lambda_t - \lambda_{t_\mathrm{last}})/h$ and
    $D = (1 + \tfrac{1}{2r})\,\hat x_0 - \tfrac{1}{2r}\,\hat x_0^\mathrm{last}$.

    Args:
        xt: (B, ...) $x_t$.
        x0_hat: (B, ...) the data prediction at $(x_t, t)$.
        t, t_prev: ints, $1 \le t \le T$, $0 \le t' < t$.
        x0_hat_last, t_last: the previous step's data prediction (B, ...) and its t (int > t), or None.

    Returns:
        (B, ...) $x_{t'}$.
    """
    _check_pair(s, t, t_prev)
    check_tensor("xt", xt)
    check_tensor("x0_hat", x0_hat)
    check_same_shape(x0_hat=x0_hat, xt=xt)

    def at(values: Tensor, step: int) -> Tensor:  # values[step] broadcast over xt, in xt's dtype
        return extract(values, check_timesteps(step, s.num_steps, xt.shape[0], allow_zero=True, device=s.device),
                       xt.shape).to(xt.dtype)

    lam = lambda step: 0.5 * at(s.snr, step).log()  # noqa: E731  λ = ½ log SNR, +inf at t = 0
    h = lam(t_prev) - lam(t)
    D = x0_hat
    if x0_hat_last is not None and t_prev > 0:
        check_int("t_last", t_last, t + 1, s.num_steps)
        check_same_shape(x0_hat_last=x0_hat_last, xt=xt)
        half_over_r = 0.5 * h / (lam(t) - lam(t_last))  # 1/(2r)
        D = (1 + half_over_r) * x0_hat - half_over_r * x0_hat_last
    ratio = (at(s.one_minus_alpha_bars, t_prev) / at(s.one_minus_alpha_bars, t)).sqrt()
    return ratio * xt - at(s.alpha_bars, t_prev).sqrt() * torch.expm1(-h) * D


class DPMSolverPP2MStep:
    r"""DPM-Solver++(2M) as the loop's step, holding the previous $\hat x_0$ [DPM-Solver++ Alg. 2].

    Each call applies :func:`dpmpp_2m_update`; the previous call's $(\hat x_0, t)$ is used when that
    step ended where this one starts (so the first step of a run is first order and a step object
    reused for a new run starts afresh). One network evaluation per step.

    Args:
        clip_x0: clip each $\hat x_0$ to [-1, 1] before it is used or kept.
    """

    def __init__(self, clip_x0: bool = False):
        self.clip_x0 = clip_x0
        self._last: tuple[Tensor, int, int] | None = None  # (x0_hat, t, t_prev) of the previous call

    def __call__(self, s: NoiseSchedule, eps_theta: Tensor, xt: Tensor, t: int, t_prev: int) -> tuple[Tensor, Tensor]:
        _check_pair(s, t, t_prev)
        _, x0_hat = _predictions(s, eps_theta, xt, t, self.clip_x0)
        x0_last, t_last, ended = self._last if self._last is not None else (None, None, None)
        if ended != t:
            x0_last, t_last = None, None
        x_prev = dpmpp_2m_update(s, xt, x0_hat, t, t_prev, x0_last, t_last)
        self._last = (x0_hat, t, t_prev)
        return x_prev, x0_hat


# -- the sampler ----------------------------------------------------------------------------------
def solver_step(solver: Solver, model: Model, clip_x0: bool = False) -> Step:
    """A fresh ``step(s, eps_theta, xt, t, t_prev) -> (x_prev, x0_hat)`` for one of ``SOLVERS``."""
    check_choice("solver", solver, SOLVERS)
    if solver == "heun":
        return HeunStep(model, clip_x0)
    if solver == "dpmpp_2m":
        return DPMSolverPP2MStep(clip_x0)
    return lambda s, eps_theta, xt, t, t_prev: euler_step(s, eps_theta, xt, t, t_prev, clip_x0=clip_x0)


def solver_nfe(solver: Solver, num_sample_steps: int, t_end: int = 0) -> int:
    """Network evaluations of S steps: S for Euler and DPM-Solver++(2M); 2S for Heun, less 1 if the run ends at 0."""
    check_choice("solver", solver, SOLVERS)
    check_int("num_sample_steps", num_sample_steps, 1)
    check_int("t_end", t_end, 0)
    if solver == "heun":
        return 2 * num_sample_steps - (1 if t_end == 0 else 0)
    return num_sample_steps


@torch.no_grad()
def solver_sample(model: Model, s: NoiseSchedule, shape, num_sample_steps: int, solver: Solver = "euler",
                  spacing: Spacing = "uniform", *, t_end: int = 0, clip_x0: bool = False,
                  generator: torch.Generator | None = None, x_T: Tensor | None = None, progress: bool = False,
                  trajectory: bool = False, device=None):
    r"""Integrate the PF ODE from $x_T$ with S steps of a solver, through :func:`reverse_loop`.

    ``solver="euler"`` with ``spacing="uniform"`` is ``ddim_sample(eta=0)``. The run makes
    ``solver_nfe(solver, S, t_end)`` network evaluations.

    Args:
        model, s, shape, generator, x_T, device: as ``ddim_sample`` (the generator only draws $x_T$).
        num_sample_steps: S in 1..T - t_end.
        solver: one of ``SOLVERS``; spacing: one of ``SPACINGS`` (see :func:`solver_timesteps`).
        t_end: 0 for samples $x_0$; t > 0 stops at $x_t$ (to measure a solver's error).
        clip_x0: clip $\hat x_0$ to [-1, 1] at every evaluation.
        progress: show a tqdm bar; trajectory: also return the ``Trajectory``.

    Returns:
        (B, ...) $x_{t_\mathrm{end}}$, or ``(x, Trajectory)`` with ``trajectory``; the trajectory's
        last entry is at ``t_end``, with the state itself as its $\hat x_0$ (no evaluation spent there).
    """
    step = solver_step(solver, model, clip_x0)
    pairs = solver_pairs(s, num_sample_steps, spacing, t_end)
    states = reverse_loop(model, s, shape, pairs, step, generator=generator, x_T=x_T, device=device,
                          progress=progress, desc=f"{solver}-{num_sample_steps} sampling")
    # the loop names its last state t = 0; here it is x at t_end
    return _finish(((t_end if t == 0 else t, xt, x0_hat) for t, xt, x0_hat in states), trajectory)
