r"""What the network predicts: the targets $\epsilon$, $x_0$, $v$, score as linear maps of each other (chapter 9).

Write $a_t = \sqrt{\bar\alpha_t}$ and $\sigma_t = \sqrt{1-\bar\alpha_t}$, so that
$x_t = a_t x_0 + \sigma_t\epsilon$ [DDPM eq. 4]. Given $x_t$ and $t$, a network may predict

- the noise $\epsilon$ (DDPM's choice),
- the clean data $x_0$,
- the velocity $v = a_t\epsilon - \sigma_t x_0$ [PD §4],
- the score target $\nabla_{x_t}\log q(x_t|x_0) = -\epsilon/\sigma_t$ [SDE eq. 7].

Knowing $x_t$, each one fixes the others through an affine map (linear in the prediction, with
$x_t$ as a fixed offset), so a prediction of one is a prediction of all. Being affine at fixed
$x_t$, the maps also carry a posterior mean to a posterior mean: the optimal predictor
$E[\cdot \mid x_t]$ of every target is the conversion of the optimal $\epsilon^* = E[\epsilon \mid x_t]$
(the tests check this on a Gaussian mixture whose posterior is exact).

Argument order follows :func:`x0_from_eps`: a function of $(x_t, t)$ that recovers something from
a prediction takes ``(s, xt, t, pred)``; the others take ``(s, value, ..., t)``. ``t`` is an int or
a (B,) integer tensor of paper timesteps in 1..T; per-t coefficients broadcast over any rank.
The schedule stores $\bar\alpha_t$ and $1-\bar\alpha_t$ apart, in float32, so $a_t^2 + \sigma_t^2$
is 1 only to about $10^{-7}$; the maps from $v$ divide by $a_t^2 + \sigma_t^2$ (1 in exact arithmetic)
so that they invert :func:`v_from_eps_x0` and ``q_sample`` to the inputs' own precision.

Tags: [PD] Salimans & Ho 2022, "Progressive distillation for fast sampling of diffusion models".
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_choice, check_same_shape, check_tensor, check_timesteps
from ..utils import extract
from .posterior import eps_from_x0, x0_from_eps
from .schedule import NoiseSchedule

__all__ = ["PREDICTION_TARGETS", "as_eps_model", "convert_prediction", "eps_from_score", "eps_from_v",
           "score_from_eps", "v_from_eps_x0", "x0_from_v"]

PREDICTION_TARGETS = ("eps", "x0", "v", "score")
"""What a network can be trained to output: noise, clean data, velocity, score."""


def _coefficients(s: NoiseSchedule, t, **tensors: Tensor) -> tuple[Tensor, Tensor]:
    """Check the (B, ...) tensors (one shape) and t in 1..T; return a_t and sigma_t as (B, 1, ..., 1).

    Taken as q_sample takes them (the square root of the stored float32 value), then cast to the
    inputs' dtype, so that a_t^2 + sigma_t^2 below is computed at the inputs' precision.
    """
    for name, x in tensors.items():
        check_tensor(name, x)
    check_same_shape(**tensors)
    first = next(iter(tensors.values()))
    t = check_timesteps(t, s.num_steps, first.shape[0], device=s.device)
    dtype = torch.promote_types(s.alpha_bars.dtype, first.dtype)
    a = extract(s.alpha_bars, t, first.shape).sqrt().to(dtype)
    return a, extract(s.one_minus_alpha_bars, t, first.shape).sqrt().to(dtype)


def v_from_eps_x0(s: NoiseSchedule, eps: Tensor, x0: Tensor, t) -> Tensor:
    r"""The velocity target $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0$ [PD §4].

    Args:
        eps: (B, ...) the noise $\epsilon$ that took ``x0`` to $x_t$.
        x0: (B, ...) clean data (or a prediction $\hat x_0$ with its $\hat\epsilon$).
        t: int or (B,) paper timesteps in 1..T.

    Returns:
        (B, ...) $v$.
    """
    a, sigma = _coefficients(s, t, eps=eps, x0=x0)
    return a * eps - sigma * x0


def x0_from_v(s: NoiseSchedule, xt: Tensor, t, v: Tensor) -> Tensor:
    r"""Clean data from a velocity: $x_0 = \sqrt{\bar\alpha_t}\,x_t - \sqrt{1-\bar\alpha_t}\,v$ [PD §4].

    (Substitute $x_t = a_t x_0 + \sigma_t\epsilon$ into $a_t x_t - \sigma_t v$: it is
    $(a_t^2 + \sigma_t^2)\,x_0$, which is divided out, see the module docstring.) No small
    divisor: it stays well conditioned at every t, unlike :func:`x0_from_eps` as $t \to T$.

    Args:
        xt: (B, ...) $x_t$.
        t: int or (B,) paper timesteps in 1..T.
        v: (B, ...) velocity (true $v$ or a prediction $\hat v$).
    """
    a, sigma = _coefficients(s, t, v=v, xt=xt)
    return (a * xt - sigma * v) / (a * a + sigma * sigma)


def eps_from_v(s: NoiseSchedule, xt: Tensor, t, v: Tensor) -> Tensor:
    r"""Noise from a velocity: $\epsilon = \sqrt{1-\bar\alpha_t}\,x_t + \sqrt{\bar\alpha_t}\,v$ [PD §4].

    (Divided by $a_t^2 + \sigma_t^2 = 1$ as :func:`x0_from_v` is.)

    Args:
        xt: (B, ...) $x_t$.
        t: int or (B,) paper timesteps in 1..T.
        v: (B, ...) velocity (true $v$ or a prediction $\hat v$).
    """
    a, sigma = _coefficients(s, t, v=v, xt=xt)
    return (sigma * xt + a * v) / (a * a + sigma * sigma)


def score_from_eps(s: NoiseSchedule, eps: Tensor, t) -> Tensor:
    r"""The score target $\nabla_{x_t}\log q(x_t|x_0) = -\epsilon/\sqrt{1-\bar\alpha_t}$ [SDE eq. 7].

    Applied to the optimal $\epsilon^* = E[\epsilon|x_t]$ it gives the score of the data diffused to
    step t, $\nabla\log q(x_t)$ (Tweedie; chapter 8).

    Args:
        eps: (B, ...) noise (true $\epsilon$ or a prediction $\epsilon_\theta$).
        t: int or (B,) paper timesteps in 1..T.
    """
    _, sigma = _coefficients(s, t, eps=eps)
    return -eps / sigma


def eps_from_score(s: NoiseSchedule, score: Tensor, t) -> Tensor:
    r"""Noise from a score: $\epsilon = -\sqrt{1-\bar\alpha_t}\,\nabla_{x_t}\log q$ [SDE eq. 7].

    Args:
        score: (B, ...) a score (target or prediction $s_\theta$).
        t: int or (B,) paper timesteps in 1..T.
    """
    _, sigma = _coefficients(s, t, score=score)
    return -sigma * score


def convert_prediction(s: NoiseSchedule, pred: Tensor, xt: Tensor, t, source: str, target: str) -> Tensor:
    r"""A prediction of ``source`` at $(x_t, t)$ rewritten as the ``target`` it implies.

    Goes through $\epsilon$ (and $x_0$ when the target needs it) with the one-formula functions
    above and :func:`x0_from_eps` / :func:`eps_from_x0`; $v \to x_0$ uses :func:`x0_from_v`
    directly (no division by $\sqrt{\bar\alpha_t}$). ``source == target`` returns ``pred`` itself.
    From $\epsilon$ or the score to $x_0$ or $v$ divides by $\sqrt{\bar\alpha_t}$: as $t \to T$ an
    error in the noise becomes a large error in $x_0$ (a noise prediction says little about $x_0$ there).

    Args:
        pred: (B, ...) the prediction.
        xt: (B, ...) the input $x_t$ it was made from.
        t: int or (B,) paper timesteps in 1..T.
        source, target: each one of ``PREDICTION_TARGETS``: "eps", "x0", "v", "score".

    Returns:
        (B, ...) the prediction of ``target``.
    """
    check_choice("source", source, PREDICTION_TARGETS)
    check_choice("target", target, PREDICTION_TARGETS)
    _coefficients(s, t, pred=pred, xt=xt)
    if source == target:
        return pred
    if (source, target) == ("v", "x0"):
        return x0_from_v(s, xt, t, pred)
    x0 = pred if source == "x0" else None
    if source == "eps":
        eps = pred
    elif source == "x0":
        eps = eps_from_x0(s, xt, t, pred)
    elif source == "v":
        eps = eps_from_v(s, xt, t, pred)
    else:
        eps = eps_from_score(s, pred, t)
    if target == "eps":
        return eps
    if target == "score":
        return score_from_eps(s, eps, t)
    if x0 is None:
        x0 = x0_from_eps(s, xt, t, eps)
    return x0 if target == "x0" else v_from_eps_x0(s, eps, x0, t)


def as_eps_model(model, s: NoiseSchedule, prediction: str):
    r"""``model(xt, t)`` that predicts ``prediction`` seen as a noise predictor $\epsilon_\theta(x_t, t)$.

    Every sampler and the bound take an $\epsilon$-model; this wraps an $x_0$-, $v$- or score-model
    with :func:`convert_prediction` (``prediction == "eps"`` returns ``model`` itself).
    """
    check_choice("prediction", prediction, PREDICTION_TARGETS)
    if prediction == "eps":
        return model

    def eps_model(xt: Tensor, t, *args) -> Tensor:
        return convert_prediction(s, model(xt, t, *args), xt, t, prediction, "eps")

    eps_model.__doc__ = f"eps_theta(x_t, t) from a {prediction}-prediction model"
    return eps_model
