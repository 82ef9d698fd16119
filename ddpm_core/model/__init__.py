"""The network $\\epsilon_\\theta$ and its weights: the UNet, its blocks, inspection, and the EMA (chapters 5-6).

Uses the diffusion only through its conventions (paper timesteps t, labels with a null class).
"""

from .blocks import Downsample, ResBlock, SelfAttention, Upsample, sinusoidal_embedding
from .unet import UNet, UNetConfig
from .inspect import LayerInfo, count_flops, layer_summary
from .ema import EMA, unwrap_model
