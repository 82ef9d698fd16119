r"""Classifier-free guidance as a drop-in model for the samplers (chapter 8).

A class-conditional $\epsilon_\theta(x_t, t, y)$ trained with label dropout also predicts the
unconditional $\epsilon_\theta(x_t, t, \varnothing)$ (the null label). Guidance with weight $w$
extrapolates away from the unconditional prediction [CFG eq. 6]:

$$\tilde\epsilon_\theta(x_t, t, y) = (1 + w)\,\epsilon_\theta(x_t, t, y) - w\,\epsilon_\theta(x_t, t, \varnothing).$$

$w = 0$ is plain conditional sampling; larger $w$ trades diversity for fidelity to $y$.
:func:`guided` returns a callable ``eps(xt, t)``, so ``ddpm_sample`` / ``ddim_sample`` run
guidance unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["guided"]


def guided(model: nn.Module, y, guidance_scale: float) -> Callable[[Tensor, Tensor], Tensor]:
    r"""Wrap a class-conditional model as ``eps(xt, t)`` with classifier-free guidance [CFG eq. 6].

    Args:
        model: called as ``model(xt, t, y)``; must have ``num_classes`` (or ``config.num_classes``),
            the index of the null label $\varnothing$.
        y: the class of every sample: an int, or a (B,) int64 tensor matching the sampler's batch.
        guidance_scale: $w \ge 0$.

    Returns:
        ``eps(xt, t) = (1 + w) ε_θ(xt, t, y) − w ε_θ(xt, t, ∅)``, shape of ``xt``; one batched
        forward pass of 2B images when w > 0 (one of B when w = 0).
    """
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if num_classes is None:
        raise ValueError("model must be class-conditional (num_classes set) for classifier-free guidance")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise TypeError(f"guidance_scale must be a number, got {type(guidance_scale).__name__}")
    if not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if isinstance(y, bool) or not isinstance(y, (int, Tensor)):
        raise TypeError(f"y must be an int or a (B,) int64 tensor, got {type(y).__name__}")
    if isinstance(y, Tensor):
        if y.is_floating_point() or y.dim() > 1:
            raise ValueError(f"y must be a scalar or (B,) integer tensor, got dtype {y.dtype}, shape {tuple(y.shape)}")
        bad = (y < 0) | (y >= num_classes)
        if bad.any():
            raise ValueError(f"y must hold labels in 0..{num_classes - 1}")
    elif not 0 <= y < num_classes:
        raise ValueError(f"y must be a label in 0..{num_classes - 1}, got {y}")
    w = float(guidance_scale)

    def eps(xt: Tensor, t: Tensor) -> Tensor:
        B = xt.shape[0]
        labels = torch.as_tensor(y, dtype=torch.long, device=xt.device).expand(B) if (
            not isinstance(y, Tensor) or y.dim() == 0) else y.to(xt.device)  # (B,)
        if labels.shape[0] != B:
            raise ValueError(f"y has {labels.shape[0]} labels but the batch has {B} images")
        if w == 0:
            return model(xt, t, labels)
        null = torch.full_like(labels, num_classes)  # (B,) the null label ∅
        eps_cond, eps_uncond = model(torch.cat([xt, xt]), torch.cat([t, t]),
                                     torch.cat([labels, null])).chunk(2)  # (B, ...) each
        return (1 + w) * eps_cond - w * eps_uncond

    return eps
