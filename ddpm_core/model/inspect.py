"""Looking inside a network: each layer's output shape and parameters, and FLOPs per pass (chapter 5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["LayerInfo", "layer_summary", "count_flops"]


@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`layer_summary`."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    num_params: int


def layer_summary(model: nn.Module, x_shape, t: Tensor | int | None = None, y: Tensor | None = None,
                  depth: int = 2, print_table: bool = True) -> list[LayerInfo]:
    """Trace one forward pass and list each layer's output shape and parameter count.

    Uses forward hooks on the modules whose dotted name has at most ``depth`` parts, keeping the
    finest ones (a module is dropped when one of its kept sub-modules ran). Introduced in
    chapter 5.

    Args:
        model: a module called as ``model(x, t[, y])``.
        x_shape: input shape (B, C, H, W).
        t: timesteps for the trace (default: t = 1 for every item).
        y: labels, passed on only if given.
        depth: how deep into the module tree to report.
        print_table: also print the table (and the total parameter count).

    Returns:
        The rows in execution order.
    """
    if len(tuple(x_shape)) != 4:
        raise ValueError(f"x_shape must be (B, C, H, W), got {tuple(x_shape)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(tuple(x_shape), device=device)
    if t is None or isinstance(t, int):
        t = torch.full((x.shape[0],), 1 if t is None else t, dtype=torch.long, device=device)

    names = {m: n for n, m in model.named_modules() if n and n.count(".") < depth}
    fired: list[tuple[str, nn.Module, tuple]] = []

    def hook(module, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        fired.append((names[module], module, tuple(out.shape)))

    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x, t) if y is None else model(x, t, y)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    ran = {n for n, _, _ in fired}
    rows = [LayerInfo(n, type(m).__name__, shape, sum(p.numel() for p in m.parameters()))
            for n, m, shape in fired if not any(o.startswith(n + ".") for o in ran)]
    if print_table:
        total = sum(p.numel() for p in model.parameters())
        w = max(len(r.name) for r in rows) if rows else 4
        print(f"{'layer':<{w}}  {'type':<14} {'output shape':<20} {'params':>9}")
        for r in rows:
            print(f"{r.name:<{w}}  {r.kind:<14} {str(r.output_shape):<20} {r.num_params:>9,}")
        print(f"{'total':<{w}}  {'':<14} {'':<20} {total:>9,}")
    return rows


def count_flops(model: nn.Module, x_shape, y: Tensor | None = None, backward: bool = False) -> int:
    """FLOPs of one forward pass (or forward + backward) at input shape (B, C, H, W).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real pass: convolutions, matrix
    products and attention, with a multiply-add as 2 FLOPs. Element-wise work (norms,
    activations, the optimizer) is not counted, the usual convention for achieved FLOP/s.

    Args:
        model: a module called as ``model(x, t[, y])``.
        x_shape: input shape (B, C, H, W); t is set to 500 for every item.
        y: labels, passed on only if given.
        backward: also count the backward pass of a training step (about twice the forward).
    """
    from torch.utils.flop_counter import FlopCounterMode

    if len(tuple(x_shape)) != 4:
        raise ValueError(f"x_shape must be (B, C, H, W), got {tuple(x_shape)}")
    device = next(model.parameters()).device
    x = torch.randn(tuple(x_shape), device=device)
    t = torch.full((x.shape[0],), 500, dtype=torch.long, device=device)
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]  # the caller's gradients survive the count
    counter = FlopCounterMode(display=False)
    try:
        for p in params:
            p.grad = None
        with counter, torch.set_grad_enabled(backward):
            out = model(x, t) if y is None else model(x, t, y)
            if backward:
                out.square().mean().backward(inputs=params)
    finally:
        for p, g in zip(params, saved_grads):
            p.grad = g
    return counter.get_total_flops()
