r"""The noise-prediction network $\epsilon_\theta(x_t, t)$: a small UNet in the style of DDPM's.

Introduced in chapter 5 (The UNet). The architecture follows DDPM §4 / Appendix B, scaled down
for a CPU: a sinusoidal embedding of $t$ fed through an MLP, residual blocks with GroupNorm to
which the time embedding is added, a downsampling path whose activations are kept as skip
connections, a middle block with self-attention at the lowest resolution, and an upsampling path
that concatenates the skips back in. Optional class conditioning adds a learned class embedding
to the time embedding; the extra class index ``num_classes`` is the "null" label $\varnothing$
of classifier-free guidance [CFG §3.2].

Shapes: images are (B, C, H, W), timesteps (B,) int64 *paper* timesteps in 1..T, labels (B,)
int64 in 0..num_classes (the last one meaning "no label").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["UNetConfig", "UNet", "sinusoidal_embedding", "layer_summary", "LayerInfo", "count_flops"]

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
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be a positive even int, got {dim!r}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (h,)
    args = t.float()[:, None] * freqs[None, :]  # (B, h)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, dim)


@dataclass(frozen=True)
class UNetConfig:
    """Hyperparameters of :class:`UNet`; each default says why it was chosen.

    The defaults give the ~0.65 M-parameter network of DESIGN.md §8's probe, which trains at
    ~3.5 steps/s on 8×8 digits on a 2-core CPU.
    """

    in_channels: int = 1
    """1 for gray digits/MNIST, 3 for colour images."""
    base_channels: int = 32
    """Width of the first level; DDPM uses 128 for CIFAR-10, 32 is enough for 8×8 digits."""
    channel_mults: tuple[int, ...] = (1, 2)
    """Width multiplier per resolution level; (1, 2) means one downsampling (8×8 → 4×4)."""
    num_res_blocks: int = 1
    """Residual blocks per level on the way down (DDPM: 2); 1 keeps the model at ~0.65 M."""
    attention_heads: int = 1
    """Heads of the self-attention at the lowest resolution; DDPM uses a single head."""
    dropout: float = 0.1
    """Dropout inside the residual blocks; DDPM's CIFAR-10 value."""
    norm_groups: int = 8
    """GroupNorm groups; DDPM uses 32 groups of ≥4 channels, 8 keeps ≥4 channels per group here."""
    num_classes: int | None = None
    """None: unconditional. An int K: labels 0..K-1, plus the null label K for guidance [CFG]."""

    def __post_init__(self) -> None:
        for name in ("in_channels", "base_channels", "num_res_blocks", "attention_heads", "norm_groups"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        mults = tuple(self.channel_mults)
        if not mults or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults):
            raise ValueError(f"channel_mults must be a non-empty tuple of positive ints, got {self.channel_mults!r}")
        object.__setattr__(self, "channel_mults", mults)  # a list from JSON becomes a tuple
        for m in mults:
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(
                    f"norm_groups={self.norm_groups} must divide every level's width "
                    f"base_channels*mult = {self.base_channels * m}"
                )
        if (self.base_channels * mults[-1]) % self.attention_heads:
            raise ValueError(f"attention_heads={self.attention_heads} must divide the lowest-level width")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.num_classes is not None and (
                isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {self.num_classes!r}")

    @property
    def time_embed_dim(self) -> int:
        """Size of the time (and class) embedding: 4 × base_channels, as in DDPM."""
        return 4 * self.base_channels

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON and ``torch.load(weights_only=True)`` safe)."""
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        d = dict(d)
        if "channel_mults" in d:
            d["channel_mults"] = tuple(d["channel_mults"])
        return cls(**d)


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


class UNet(nn.Module):
    r"""$\epsilon_\theta(x_t, t[, y])$: predicts the noise $\epsilon$ in $x_t = \sqrt{\bar\alpha_t}x_0 +
    \sqrt{1-\bar\alpha_t}\,\epsilon$ [DDPM eq. 4, Algorithm 1].

    Works for any channel count and any image size ≥ 2^(levels-1) (tested: 8, 16, 28, 32, 64 with
    1 or 3 channels). Call as ``model(xt, t)`` or, for a class-conditional model, ``model(xt, t, y)``
    where ``y = None`` (or the index ``num_classes``) means "no label".
    """

    def __init__(self, config: UNetConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = UNetConfig(**overrides)
        elif overrides:
            config = UNetConfig(**{**config.to_dict(), **overrides})
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = config
        c, emb_dim, g, p = config.base_channels, config.time_embed_dim, config.norm_groups, config.dropout

        self.time_embed = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = (nn.Embedding(config.num_classes + 1, emb_dim)  # last row: the null label
                            if config.num_classes is not None else None)
        self.conv_in = nn.Conv2d(config.in_channels, c, 3, padding=1)

        # Down path: remember the width of every activation pushed as a skip connection.
        self.down = nn.ModuleList()
        skip_chs, ch = [c], c
        for level, mult in enumerate(config.channel_mults):
            for _ in range(config.num_res_blocks):
                self.down.append(ResBlock(ch, c * mult, emb_dim, p, g))
                ch = c * mult
                skip_chs.append(ch)
            if level < len(config.channel_mults) - 1:
                self.down.append(Downsample(ch))
                skip_chs.append(ch)

        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, p, g),
                                  SelfAttention(ch, config.attention_heads, g),
                                  ResBlock(ch, ch, emb_dim, p, g)])

        # Up path: num_res_blocks + 1 blocks per level, each eating one skip.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mults))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(ResBlock(ch + skip_chs.pop(), c * mult, emb_dim, p, g))
                ch = c * mult
            if level > 0:
                self.up.append(Upsample(ch))

        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, config.in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # ε_θ starts at 0 (DDPM's zero init of the last conv)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    def forward(self, xt: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Args: xt (B, C, H, W); t (B,) int64 paper timesteps; y (B,) int64 labels or None.
        Returns ε_θ(x_t, t[, y]) of shape (B, C, H, W)."""
        if not isinstance(xt, Tensor) or xt.dim() != 4:
            raise ValueError(f"xt must be a (B, C, H, W) tensor, got "
                             f"{tuple(xt.shape) if isinstance(xt, Tensor) else type(xt).__name__}")
        if xt.shape[1] != self.config.in_channels:
            raise ValueError(f"xt has {xt.shape[1]} channels but the model expects {self.config.in_channels}")
        min_size = 2 ** (len(self.config.channel_mults) - 1)
        if min(xt.shape[-2:]) < min_size:
            raise ValueError(f"xt of size {tuple(xt.shape[-2:])} is too small for "
                             f"{len(self.config.channel_mults)} levels (needs >= {min_size})")
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a (B,) int64 tensor of paper timesteps, got {type(t).__name__}")
        if t.dim() == 0:
            t = t.expand(xt.shape[0])
        if t.shape != (xt.shape[0],):
            raise ValueError(f"t must have shape ({xt.shape[0]},), got {tuple(t.shape)}")

        emb = self.time_embed(sinusoidal_embedding(t, self.config.base_channels))  # (B, E)
        if self.class_embed is not None:
            if y is None:
                y = torch.full_like(t, self.config.num_classes, dtype=torch.long)  # all "no label"
            if not isinstance(y, Tensor) or y.shape != t.shape:
                raise ValueError(f"y must be a ({xt.shape[0]},) int64 tensor of labels or None")
            if y.is_floating_point() or int(y.min()) < 0 or int(y.max()) > self.config.num_classes:
                raise ValueError(f"y must hold integer labels in 0..{self.config.num_classes} "
                                 f"({self.config.num_classes} = no label)")
            emb = emb + self.class_embed(y.long())  # (B, E)
        elif y is not None:
            raise ValueError("y was given but this UNet is unconditional (config.num_classes is None)")

        h = self.conv_in(xt)  # (B, c, H, W)
        skips = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)  # (B, c·mult, H/2^l, W/2^l)
            skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h)  # self-attention at the lowest resolution
        h = self.mid[2](h, emb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)  # (B, c·mult, ·, ·)
            else:
                h = block(h, size=skips[-1].shape[-2:])  # up to the next skip's size
        return self.out(h)  # (B, C, H, W)


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
