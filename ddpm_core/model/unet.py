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

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .._checks import check_index_tensor, check_int, check_number
from .blocks import Downsample, ResBlock, SelfAttention, Upsample, sinusoidal_embedding

__all__ = ["UNetConfig", "UNet"]


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
    learned_variance: bool = False
    """Also output C channels for the variance [IDDPM §3.1]: (B, 2C, H, W), eps first (``split_learned_output``)."""

    def __post_init__(self) -> None:
        for name in ("in_channels", "base_channels", "num_res_blocks", "attention_heads", "norm_groups"):
            _positive_int(name, getattr(self, name))
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
        check_number("dropout", self.dropout, 0.0, 1.0, open_high=True)
        if self.num_classes is not None:
            _positive_int("num_classes", self.num_classes)

    @property
    def out_channels(self) -> int:
        """C, or 2C with learned variances."""
        return self.in_channels * (2 if self.learned_variance else 1)

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

        self.out = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, config.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # ε_θ starts at 0 (DDPM's zero init of the last conv)
        nn.init.zeros_(self.out[-1].bias)

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    def forward(self, xt: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Args: xt (B, C, H, W); t (B,) int64 paper timesteps; y (B,) int64 labels or None.
        Returns ε_θ(x_t, t[, y]) of shape (B, C, H, W), or (B, 2C, H, W) with learned variances."""
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
            check_index_tensor("y", y, 0, self.config.num_classes, f"labels ({self.config.num_classes} = no label)")
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
        return self.out(h)  # (B, C or 2C, H, W)


def _positive_int(name: str, value) -> None:
    """A config field that must be a positive int: ValueError otherwise (what the config has always raised)."""
    try:
        check_int(name, value, 1)
    except TypeError as e:
        raise ValueError(str(e)) from None
