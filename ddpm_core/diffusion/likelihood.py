r"""Log-likelihood building blocks, in nats: the Gaussian density and KL, the discretized decoder (chapters 1-4).

Units are in the names of the callers (``*_bpd`` is bits per dimension); everything here is in
nats, elementwise, so a caller sums or averages over the dimensions it wants.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_same_shape, check_tensor

PIXEL_LEVELS = 256
"""8-bit images: 256 gray levels mapped to [-1, 1], the grid the discretized decoder assumes [DDPM §3.3]."""
BIN_HALF_WIDTH = 1.0 / (PIXEL_LEVELS - 1)
"""Half the spacing 2/255 between neighbouring levels in [-1, 1]."""
MIN_PROB = 1e-12
"""Floor on a bin's probability before the log: float32 mass of a far-off bin can underflow to 0."""
GRID_TOLERANCE = 1e-3
"""How far (in units of one level) a value may sit from the 256-level grid and still count as on it."""


def normal_pdf(x: Tensor, mean, var, *, log: bool = False) -> Tensor:
    r"""The Gaussian density $N(x; \mu, \sigma^2) = \frac{1}{\sqrt{2\pi\sigma^2}}e^{-(x-\mu)^2/2\sigma^2}$, elementwise.

    Args:
        x: a tensor of points.
        mean, var: $\mu$ and $\sigma^2 > 0$, numbers or tensors broadcastable against ``x``.
        log: return $\log N(x; \mu, \sigma^2)$ in nats instead (exact far in the tails).

    Returns:
        The density (or log-density) at each point, in ``x``'s dtype (use float64 for grids).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    var = torch.as_tensor(var, dtype=x.dtype, device=x.device)
    log_p = -0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))
    return log_p if log else log_p.exp()


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    r"""$\mathrm{KL}(N(\mu_1, \sigma_1^2)\,\|\,N(\mu_2, \sigma_2^2))$ elementwise, in nats.

    $\frac12\big(-1 + \log\sigma_2^2 - \log\sigma_1^2 + \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{\sigma_2^2}\big)$.
    Arguments broadcast against each other (variances are given as logs).
    """
    for name, x in (("mean1", mean1), ("logvar1", logvar1), ("mean2", mean2), ("logvar2", logvar2)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    r"""$\log p(x)$ for $x$ on the 256-level grid of [-1, 1] under a Gaussian binned to that grid [DDPM eq. 13].

    Each level $x$ gets the Gaussian mass of $[x - \frac{1}{255}, x + \frac{1}{255}]$; the edge bins
    are open, $(-\infty, -1 + \frac1{255}]$ and $[1 - \frac1{255}, \infty)$, so the 256 masses sum
    to 1 exactly.

    Args:
        x: (B, ...) data on the 256-level grid of [-1, 1].
        mean: (B, ...) Gaussian means.
        log_scale: log standard deviation, broadcastable to ``x`` (e.g. (B, 1, 1, 1)).

    Returns:
        (B, ...) log-probabilities in nats.

    Raises ValueError for data off the grid. This is the package's one check of values rather than
    shapes (one device sync per call): data off the grid would silently get a wrong likelihood.
    """
    check_tensor("x", x)
    check_tensor("mean", mean)
    check_same_shape(x=x, mean=mean)
    if not isinstance(log_scale, Tensor):
        raise TypeError(f"log_scale must be a torch.Tensor, got {type(log_scale).__name__}")
    levels = (x + 1.0) / (2.0 * BIN_HALF_WIDTH)  # 0..255 on the grid
    if (x.abs() > 1.0 + 1e-6).any() or ((levels - levels.round()).abs() > GRID_TOLERANCE).any():
        raise ValueError("x must lie on the 256-level grid of [-1, 1] (8-bit data scaled by 2/255, minus 1)")
    inv_std = torch.exp(-log_scale)
    z_plus = (x - mean + BIN_HALF_WIDTH) * inv_std
    z_minus = (x - mean - BIN_HALF_WIDTH) * inv_std
    log_cdf_plus = torch.special.log_ndtr(z_plus)  # log P(X <= upper edge)
    log_one_minus_cdf_minus = torch.special.log_ndtr(-z_minus)  # log P(X >= lower edge)
    mid = torch.log((torch.special.ndtr(z_plus) - torch.special.ndtr(z_minus)).clamp(min=MIN_PROB))
    return torch.where(x < -1.0 + BIN_HALF_WIDTH, log_cdf_plus,
                       torch.where(x > 1.0 - BIN_HALF_WIDTH, log_one_minus_cdf_minus, mid))
