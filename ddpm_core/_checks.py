"""Argument checks shared by every public function: each raises a clear error naming the argument."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(name: str, x) -> Tensor:
    """Raise TypeError unless ``x`` is a floating-point tensor; raise ValueError if it is not finite."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def check_same_shape(**tensors: Tensor) -> None:
    """Raise ValueError unless all keyword tensors have one shape."""
    items = list(tensors.items())
    name0, x0 = items[0]
    for name, x in items[1:]:
        if x.shape != x0.shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)} but {name0} has shape {tuple(x0.shape)}; they must match"
            )


def check_timesteps(t, num_steps: int, batch_size: int | None = None, *,
                    name: str = "t", allow_zero: bool = False, device=None) -> Tensor:
    """Return ``t`` as a (B,) int64 tensor after checking it is an integer in 1..T (or 0..T).

    Args:
        t: an int or an integer tensor of shape () or (B,) holding paper timesteps.
        num_steps: T.
        batch_size: B; an int or 0-d tensor is broadcast to (B,).
        allow_zero: accept t = 0 (clean data).
    """
    lo = 0 if allow_zero else 1
    if isinstance(t, bool) or not isinstance(t, (int, Tensor)):
        raise TypeError(f"{name} must be an int or an integer tensor, got {type(t).__name__}")
    if isinstance(t, Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer timesteps, got dtype {t.dtype}")
        if t.dim() > 1:
            raise ValueError(f"{name} must be a scalar or a (B,) tensor, got shape {tuple(t.shape)}")
        t = t.to(dtype=torch.long, device=device if device is not None else t.device)
    else:
        t = torch.tensor(t, dtype=torch.long, device=device)
    if t.dim() == 0:
        t = t.expand(batch_size if batch_size is not None else 1)
    elif batch_size is not None and t.shape[0] != batch_size:
        raise ValueError(f"{name} has {t.shape[0]} timesteps but the batch has {batch_size} items")
    if t.numel() and (int(t.min()) < lo or int(t.max()) > num_steps):
        raise ValueError(
            f"{name} must lie in {lo}..{num_steps} (paper timesteps, t=0 is clean data), "
            f"got values in {int(t.min())}..{int(t.max())}"
        )
    return t


def check_choice(name: str, value, choices) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def check_unit_interval(name: str, value: float) -> float:
    """Raise ValueError unless 0 <= value <= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)
