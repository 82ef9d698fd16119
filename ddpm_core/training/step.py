r"""One step of Algorithm 1, the unit every training loop repeats: :func:`train_step` (chapter 6).

Algorithm 1 [DDPM]: $x_0 \sim q(x_0)$; $t \sim U\{1..T\}$; $\epsilon \sim N(0, I)$; a gradient step
on $\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\|^2$.
:func:`train_step` is that gradient step for a given batch, with the practical parts as options
(gradient clipping, a learning-rate schedule, an EMA, mixed precision with loss scaling);
:func:`ddpm_core.train` calls it on every step, and a chapter can call it in its own loop.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from ..diffusion.objectives import training_loss
from ..diffusion.schedule import NoiseSchedule
from ..model.ema import EMA

__all__ = ["train_step", "StepOutput", "autocast_dtype"]


class StepOutput(NamedTuple):
    """What :func:`train_step` returns, as tensors on the model's device (no host sync)."""

    loss: Tensor
    """() the batch's mean loss (the value that was differentiated, before loss scaling)."""
    per_image: Tensor
    """(B,) each image's loss."""
    grad_norm: Tensor | None
    """() the global gradient norm before clipping, when ``grad_clip`` was given."""


def train_step(model: Callable[..., Tensor], optimizer: torch.optim.Optimizer, s: NoiseSchedule, x0: Tensor,
               t=None, eps: Tensor | None = None, *, y: Tensor | None = None, loss: str = "simple",
               prediction: str = "eps", min_snr_gamma: float = 5.0, generator: torch.Generator | None = None, grad_clip: float | None = None, lr_scheduler=None,
               ema: EMA | None = None, scaler: torch.amp.GradScaler | None = None,
               amp_dtype: torch.dtype | None = None) -> StepOutput:
    r"""One gradient step of Algorithm 1 on the batch ``x0`` [DDPM Alg. 1].

    Steps: the loss (``training_loss``: $L_\text{simple}$ [DDPM eq. 14] by default) under autocast;
    backward; optional clipping of the global gradient norm; the optimizer step; then the
    learning-rate schedule and the EMA, when given.

    Args:
        model: ``model(xt, t)`` (or ``model(xt, t, y)`` when ``y`` is given) -> $\epsilon_\theta$;
            may be a compiled or DDP-wrapped module.
        optimizer: over the model's parameters (their gradients are clipped).
        s: the schedule.
        x0: (B, ...) clean data on the model's device.
        t, eps: (B,) timesteps in 1..T and (B, ...) noise; drawn from ``generator`` when None.
        y: (B,) labels for a class-conditional model (already with label dropout applied).
        loss, prediction, min_snr_gamma: the objective, as ``training_loss`` names it ("simple",
            "min_snr", "vlb" or "hybrid"; "eps", "x0", "v" or "velocity"; min-SNR's gamma).
        grad_clip: clip the global gradient norm to this (DDPM's code: 1.0); None: no clipping.
        lr_scheduler, ema: stepped / updated after the optimizer step.
        scaler: a ``torch.amp.GradScaler`` for fp16 (loss scaling); None: plain backward.
        amp_dtype: autocast to this dtype (``torch.bfloat16`` / ``torch.float16``); None: full precision.

    Returns:
        :class:`StepOutput` (loss, per-image loss, gradient norm), still on the device.
    """
    fn = model if y is None else (lambda xt, tt: model(xt, tt, y))
    device_type = x0.device.type
    with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
        per_image = training_loss(fn, s, x0, t, eps, prediction=prediction, loss=loss, generator=generator,
                                  gamma=min_snr_gamma, reduction="none")  # (B,)
    value = per_image.float().mean()
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(value) if scaler is not None else value).backward()
    grad_norm = None
    if grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grad_norm = nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if lr_scheduler is not None:
        lr_scheduler.step()
    if ema is not None:
        ema.update(model)
    return StepOutput(value.detach(), per_image.detach(), grad_norm)


def autocast_dtype(mixed_precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``TrainConfig.mixed_precision`` choice on ``device``, or None for full precision.

    "auto" turns mixed precision on only on CUDA: bf16 where the GPU has it natively (compute
    capability 8.0 or newer), else fp16 with loss scaling. ``torch.cuda.is_bf16_supported()`` alone
    says yes on Colab's free T4 too, where bf16 is emulated and slower than fp16, hence
    ``including_emulation=False``. An explicit "bf16" or "fp16" also runs on a CPU, which is how the
    tests exercise the GPU path on a machine without one (whether it is faster there depends on the
    CPU: bf16 was 1.27x float32 on the project's 2-core machine, see benchmarks/README.md).
    """
    if mixed_precision == "no" or (mixed_precision == "auto" and device.type != "cuda"):
        return None
    if mixed_precision == "bf16" or (
        mixed_precision == "auto" and torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        return torch.bfloat16
    return torch.float16
