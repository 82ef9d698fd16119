r"""The UNet's building blocks: the sinusoidal time embedding, residual blocks, attention, resampling (chapter 5).

Each block is a few lines of the architecture of DDPM §4 / Appendix B; :mod:`ddpm_core.model.unet`
stacks them. Shapes: images (B, C, H, W), embeddings (B, E).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int

__all__ = ["sinusoidal_embedding", "ResBlock", "SelfAttention", "Downsample", "Upsample", "MAX_PERIOD"]

MAX_PERIOD = 10_000.0
"""Longest wavelength of the sinusoidal embedding, the choice of Vaswani et al. (2017, §3.5)."""


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = MAX_PERIOD) -> Tensor:
    r"""Sinusoidal embedding of the timestep $t$ (Vaswani et al. 2017, §3.5), as used by DDPM [DDPM App. B].

    With $h = \text{dim}/2$ frequencies $\omega_i = \text{max\_period}^{-i/h}$, $i = 0..h-1$:

    $$\operatorname{emb}(t) = [\sin(\omega_0 t), \dots, \sin(\omega_{h-1} t),
    \cos(\omega_0 t), \dots, \cos(\omega_{h-1} t)].$$

    Args:
        t: (B,) timesteps (int or float; paper timesteps for the UNet).
        dim: embedding size, a positive even integer.
        max_period: the longest wavelength.

    Returns:
        (B, dim) float32 tensor.
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    if check_int("dim", dim, 2) % 2:
        raise ValueError(f"dim must be a positive even int, got {dim!r}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (h,)
    args = t.float()[:, None] * freqs[None, :]  # (B, h)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, dim)


class ResBlock(nn.Module):
    r"""GroupNorm → SiLU → conv, add the projected time embedding, GroupNorm → SiLU → dropout → conv,
    plus a (1×1-projected) identity: $h = x + f(x, \mathrm{emb})$ [DDPM App. B, after Wide ResNet]."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (DDPM's zero init)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # time (and class) added per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, out, H, W)
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions, with a residual connection [DDPM App. B]."""

    def __init__(self, ch: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        qkv = qkv.reshape(B, 3, self.heads, C // self.heads, H * W).permute(1, 0, 2, 4, 3)  # (3, B, h, HW, C/h)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, h, HW, C/h)
        out = out.permute(0, 1, 3, 2).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3×3 conv (odd sizes round up: 7 → 4)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the skip's size, then a 3×3 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))
