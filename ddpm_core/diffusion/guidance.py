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
from torch import Tensor

from .._checks import check_index_tensor, check_int, check_number

__all__ = ["guided"]


def guided(model: Callable[..., Tensor], y, guidance_scale: float) -> Callable[[Tensor, Tensor], Tensor]:
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
    w = check_number("guidance_scale", guidance_scale, 0.0)
    if isinstance(y, Tensor):
        check_index_tensor("y", y, 0, num_classes - 1, "labels")
    else:
        check_int("y", y, 0, num_classes - 1)

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
