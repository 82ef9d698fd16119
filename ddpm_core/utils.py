"""Device, seeding and the one broadcast helper for per-timestep values.

Devices: the book runs on CUDA, Apple's MPS and the CPU. MPS has no float64, so every float64
computation in the package and the chapters runs on the CPU explicitly (``x.to("cpu",
torch.float64)``, never ``x.double()`` on a device tensor); :func:`wide_float` names the widest
float a device has, for accumulators that stay on the device.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import Tensor

from ._checks import check_int


def default_device() -> torch.device:
    """The best available device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


FLOAT64_DEVICES = ("cpu", "cuda")  # device types known to compute in float64 (MPS does not)


def wide_float(device: torch.device | str) -> torch.dtype:
    """float64 on a device that has it (CPU, CUDA), else float32: for sums kept on the device."""
    return torch.float64 if torch.device(device).type in FLOAT64_DEVICES else torch.float32


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded alike."""
    check_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def extract(values: Tensor, t: Tensor, shape: torch.Size | tuple) -> Tensor:
    """Pick ``values[t]`` for each batch item and shape it to broadcast over ``shape``.

    Args:
        values: (T+1,) per-timestep quantity, indexed by the paper's t.
        t: (B,) int64 paper timesteps.
        shape: the shape of the batch tensor, (B, ...).

    Returns:
        (B, 1, ..., 1) tensor with ``len(shape)`` dimensions, on ``values``' device.
    """
    out = values.gather(0, t.to(values.device))  # (B,)
    return out.reshape(t.shape[0], *([1] * (len(shape) - 1)))


def randn(shape, generator: torch.Generator | None = None, device=None,
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``.

    Drawing on the generator's own device keeps a seeded CPU generator reproducible whatever
    device the model runs on.
    """
    gen_device = generator.device if generator is not None else device
    z = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
    return z.to(device) if device is not None else z
