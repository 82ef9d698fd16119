r"""A training objective as two choices, what the network predicts and how the loss weighs it: :func:`training_loss` (chapters 6, 9, 10).

- ``prediction``: "eps" (DDPM), "x0", "v" [PD], or "velocity": flow matching on the linear
  path (:mod:`.flow`), a different forward process with its own target.
- ``loss``: "simple", the plain mean squared error of the prediction's own target ($L_\text{simple}$
  for $\epsilon$ [DDPM eq. 14], the $v$-loss of [PD], $L_\text{FM}$ for a velocity); "min_snr",
  that error reweighted so the weight on the $x_0$-error is $\min(\mathrm{SNR}, \gamma)$ [MinSNR];
  "vlb", the one-sample bound [DDPM eq. 5]; "hybrid", $L_\text{simple} + \lambda L_\text{vlb}$ for a
  model with learned variances [IDDPM eq. 16].

Tags: [PD] Salimans & Ho 2022; [MinSNR] Hang et al. 2023; [IDDPM] Nichol & Dhariwal 2021.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._checks import check_choice, check_model_output, check_number
from .flow import loss_flow_matching
from .forward import q_sample
from .learned_variance import loss_hybrid
from .losses import _draw_t_eps, loss_vlb
from .parameterization import as_eps_model, v_from_eps_x0
from .schedule import NoiseSchedule
from .weighting import target_error_scale, x0_error_weight

__all__ = ["OBJECTIVE_LOSSES", "TRAINED_PREDICTIONS", "check_objective", "training_loss"]

TRAINED_PREDICTIONS = ("eps", "x0", "v", "velocity")
"""What a run can train the network to output (the score is eps rescaled, so it is left out)."""
OBJECTIVE_LOSSES = ("simple", "min_snr", "vlb", "hybrid")
"""How :func:`training_loss` weighs the error."""


def check_objective(prediction: str, loss: str) -> None:
    """Raise unless ``(prediction, loss)`` is a combination :func:`training_loss` implements."""
    check_choice("prediction", prediction, TRAINED_PREDICTIONS)
    check_choice("loss", loss, OBJECTIVE_LOSSES)
    if prediction == "velocity" and loss != "simple":
        raise ValueError(f'prediction="velocity" (flow matching) trains with loss="simple" only, got loss={loss!r}')
    if loss == "hybrid" and prediction != "eps":
        raise ValueError(f'loss="hybrid" (learned variances) needs prediction="eps", got {prediction!r}')


def training_loss(model: Callable[[Tensor, Tensor], Tensor], s: NoiseSchedule, x0: Tensor, t=None,
                  eps: Tensor | None = None, *, prediction: str = "eps", loss: str = "simple",
                  generator: torch.Generator | None = None, gamma: float = 5.0,
                  reduction: str = "mean") -> Tensor:
    r"""The loss of ``model`` on the batch ``x0`` for one (prediction, loss) choice (see the module docstring).

    Args:
        model: ``model(xt, t)`` -> the prediction ((B, 2C, ...) for ``loss="hybrid"``).
        s: the schedule ($T$ only, for a velocity).
        x0: (B, ...) clean data (on the 256-level grid for "vlb" and "hybrid").
        t, eps: (B,) timesteps in 1..T and (B, ...) noise; drawn from ``generator`` when None.
        prediction, loss: the two choices.
        gamma: min-SNR's $\gamma$ (the paper's 5).
        reduction: "mean" (a scalar) or "none" ((B,) per image).
    """
    check_objective(prediction, loss)
    check_choice("reduction", reduction, ("mean", "none"))
    check_number("gamma", gamma, 0.0, open_low=True)
    if prediction == "velocity":
        return loss_flow_matching(model, x0, s.num_steps, t, eps, generator, reduction)
    if loss == "hybrid":
        return loss_hybrid(model, s, x0, t, eps, generator, reduction=reduction)
    if loss == "vlb":
        return loss_vlb(as_eps_model(model, s, prediction), s, x0, t, eps, generator, reduction=reduction)
    t, eps = _draw_t_eps(s, x0, t, eps, generator)
    xt = q_sample(s, x0, t, eps)
    pred = check_model_output(model(xt, t), xt)
    target = {"eps": eps, "x0": x0, "v": None}[prediction]
    if target is None:
        target = v_from_eps_x0(s, eps, x0, t)
    per_image = (target - pred).pow(2).flatten(1).mean(1)  # (B,) the target's own MSE
    if loss == "min_snr":  # weight min(SNR, gamma) on the x0-error = that / k(t) on this target's error
        per_image = per_image * (x0_error_weight(s, t, "min_snr", gamma=gamma)
                                 / target_error_scale(s, t, prediction)).to(per_image.dtype)
    return per_image.mean() if reduction == "mean" else per_image
