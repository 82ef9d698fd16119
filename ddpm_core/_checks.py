"""Argument checks shared by every module: each raises a clear error naming the argument (all chapters).

They look at types, shapes, dtypes and Python values. A tensor's *values* (is t in 1..T, is x
finite, is a label in range) are read only when the tensor lives on the CPU, where reading costs
nothing; on an accelerator that would wait for the device (a sync per call), so there the
checks stop at shapes and dtypes. That keeps one function per formula: the public function *is*
the hot path, there is no unchecked twin.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor


def readable(x: Tensor) -> bool:
    """True when reading ``x``'s values costs no device sync (it lives on the CPU)."""
    return x.device.type == "cpu"


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` after checking it is an int (not a bool) in ``low..high`` (either may be None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"<= {high}" if low is None else f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return value


def check_number(name: str, value, low: float | None = None, high: float | None = None, *,
                 open_low: bool = False, open_high: bool = False) -> float:
    """Return ``float(value)`` after checking it is a real number (not a bool) in the given interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    bad_low = low is not None and (v <= low if open_low else v < low)
    bad_high = high is not None and (v >= high if open_high else v > high)
    if bad_low or bad_high or v != v:
        lo = "(-inf" if low is None else ("(" if open_low else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if open_high else "]")
        raise ValueError(f"{name} must lie in {lo}, {hi}, got {value!r}")
    return v


def check_unit_interval(name: str, value) -> float:
    """Raise unless ``value`` is a number with 0 <= value <= 1; return it as a float."""
    return check_number(name, value, 0.0, 1.0)


def check_choice(name: str, value, choices) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_tensor(name: str, x) -> Tensor:
    """Raise unless ``x`` is a floating-point tensor with a batch dimension (and, on the CPU, finite)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if readable(x) and not torch.isfinite(x).all():
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


def check_index_tensor(name: str, x, low: int, high: int, what: str = "values") -> Tensor:
    """Raise unless ``x`` is an integer tensor of rank <= 1 whose values (read on the CPU only) lie in low..high."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be an integer tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer {what}, got dtype {x.dtype}")
    if x.dim() > 1:
        raise ValueError(f"{name} must be a scalar or a (B,) tensor, got shape {tuple(x.shape)}")
    if readable(x) and x.numel() and (int(x.min()) < low or int(x.max()) > high):
        raise ValueError(f"{name} must hold {what} in {low}..{high}, got values in {int(x.min())}..{int(x.max())}")
    return x


def check_timesteps(t, num_steps: int, batch_size: int | None = None, *,
                    name: str = "t", allow_zero: bool = False, device=None) -> Tensor:
    """Return ``t`` as a (B,) int64 tensor after checking it is an integer in 1..T (or 0..T).

    Args:
        t: an int or an integer tensor of shape () or (B,) holding paper timesteps.
        num_steps: T.
        batch_size: B; an int or 0-d tensor is broadcast to (B,).
        allow_zero: accept t = 0 (clean data).
        device: where the result lives (default: ``t``'s device, or the CPU for an int).
    """
    lo = 0 if allow_zero else 1
    what = "paper timesteps (t=0 is clean data)"
    if isinstance(t, bool) or not isinstance(t, (int, Tensor)):
        raise TypeError(f"{name} must be an int or an integer tensor, got {type(t).__name__}")
    if isinstance(t, int):
        if not lo <= t <= num_steps:
            raise ValueError(f"{name} must lie in {lo}..{num_steps} ({what}), got {t}")
        return torch.full((batch_size if batch_size is not None else 1,), t, dtype=torch.long, device=device)
    check_index_tensor(name, t, lo, num_steps, what)
    t = t.to(dtype=torch.long, device=device if device is not None else t.device)
    if t.dim() == 0:
        return t.expand(batch_size if batch_size is not None else 1)
    if batch_size is not None and t.shape[0] != batch_size:
        raise ValueError(f"{name} has {t.shape[0]} timesteps but the batch has {batch_size} items")
    return t


def check_model_output(out, x: Tensor, name: str = "model") -> Tensor:
    """Raise unless what a model returned for input ``x`` is a float tensor of ``x``'s shape."""
    if not isinstance(out, Tensor) or not out.is_floating_point():
        raise TypeError(f"{name}(xt, t) must return a floating-point tensor, got "
                        f"{out.dtype if isinstance(out, Tensor) else type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name}(xt, t) returned shape {tuple(out.shape)} for xt of shape {tuple(x.shape)}; "
                         "a noise predictor must return one value per input value")
    return out


def check_finite_result(x: Tensor, what: str) -> Tensor:
    """Raise (one device sync, at the end of a long computation) if ``x`` holds NaN or Inf."""
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or Inf values: the model returned non-finite predictions "
                         "(a diverged or wrongly loaded network?)")
    return x
