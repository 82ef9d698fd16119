r"""Exponential moving average of a model's weights, the weights DDPM samples with [DDPM App. B] (chapter 6).

Introduced in chapter 6 (Training). After each optimizer step,

$$\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta,$$

with decay $d$ (DDPM: 0.9999 over 800 k steps). With ``warmup=True`` the decay of update $n$
(counting from 1) is $\min(d, \frac{1 + n}{10 + n})$, TensorFlow's ``ExponentialMovingAverage``
rule with ``num_updates``: early averages then forget the random initialization quickly, which
matters for runs of a few thousand steps. Buffers (none in the book's UNet) are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._checks import check_number

__all__ = ["EMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside a DistributedDataParallel / DataParallel / compiled wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


class EMA:
    """Keeps an averaged copy of a model's parameters.

    Args:
        model: the trained model (a DDP wrapper is unwrapped); ``EMA.model`` is a frozen deep
            copy of it in eval mode, ready to sample with.
        decay: $d$ in [0, 1).
        warmup: use the decay $\\min(d, (1 + n)/(10 + n))$ at update $n$.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.decay = check_number("decay", decay, 0.0, 1.0, open_high=True)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.model = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        r"""$\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta$ for every parameter; buffers copied."""
        d = self.current_decay()
        src = unwrap_model(model)
        avgs = list(self.model.parameters())
        params = [p.detach().to(a.dtype) for a, p in zip(avgs, src.parameters(), strict=True)]
        torch._foreach_lerp_(avgs, params, 1.0 - d)  # avg + (1-d)(p - avg), one kernel per dtype on GPU
        for avg_b, b in zip(self.model.buffers(), src.buffers(), strict=True):
            avg_b.copy_(b)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. to evaluate the trained network with them)."""
        unwrap_model(model).load_state_dict(self.model.state_dict())

    def to(self, device) -> "EMA":
        self.model.to(device)
        return self

    def state_dict(self) -> dict:
        """Plain dict: decay, warmup, num_updates and the averaged weights."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for key in ("decay", "warmup", "num_updates", "model"):
            if key not in state:
                raise ValueError(f"EMA state is missing {key!r}")
        self.decay, self.warmup = float(state["decay"]), bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.model.load_state_dict(state["model"])

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, warmup={self.warmup}, num_updates={self.num_updates})"
