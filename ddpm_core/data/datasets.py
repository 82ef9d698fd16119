r"""Image datasets: 8×8 digits (offline, scikit-learn) and MNIST / Fashion-MNIST (online, torchvision) (chapter 6).

Images follow one convention (DESIGN.md §6): pixels are first put on the 8-bit grid
{0, ..., 255} like any image file, then scaled to $[-1, 1]$ by $x = v / 127.5 - 1$ [DDPM §3.3],
so that the bound in bits/dim is the usual 8-bit one and the 256-bin decoder applies alike to
every dataset. Loaders return ``(x, y)``: x (N, C, H, W) float32 in $[-1, 1]$, y (N,) int64.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int
from ..diffusion.likelihood import PIXEL_LEVELS
from .images import from_image

__all__ = ["load_digits", "load_mnist", "NUM_CLASSES", "DIGITS_TEST_SIZE", "DIGITS_SPLIT_SEED"]

NUM_CLASSES = 10
"""Digits, MNIST and Fashion-MNIST all have ten classes."""
DIGITS_MAX = 16
"""sklearn's digits hold integer intensities 0..16 (4×4 pixel counts of the original 32×32 bitmaps)."""
DIGITS_TEST_SIZE = 300
"""Held-out digits (of 1,797): 1,497 train / 300 test, enough to measure a classifier to ~±1 %."""
DIGITS_SPLIT_SEED = 0
"""The fixed seed of the stratified train/test split, so every chapter sees the same split."""
DOWNLOAD_TIMEOUT_S = 10.0
"""Socket timeout while downloading MNIST: fail fast (no hang) when there is no network."""


def _resize_8bit(v: Tensor, image_size: int) -> Tensor:
    """Bilinear (antialiased) resize of 8-bit images (N, C, H, W) kept on the 8-bit grid."""
    if v.shape[-1] == image_size and v.shape[-2] == image_size:
        return v
    out = F.interpolate(v.float(), size=(image_size, image_size), mode="bilinear",
                        align_corners=False, antialias=True)
    return out.round().clamp(0, PIXEL_LEVELS - 1).to(torch.uint8)


def load_digits(image_size: int = 8, split: str = "train") -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 handwritten digits as 8-bit gray images scaled to [-1, 1].

    Each 0..16 intensity $v$ becomes the 8-bit level $\\mathrm{round}(255 v / 16)$, then
    $x = \\text{level} / 127.5 - 1$. With ``image_size != 8`` the 8-bit images are resized
    (bilinear, antialiased) and rounded back onto the 8-bit grid. The train/test split is a fixed
    stratified split (seed :data:`DIGITS_SPLIT_SEED`): 1,497 train, 300 test.

    Args:
        image_size: output height and width (8 native; 16 for a harder problem).
        split: "train", "test" or "all".

    Returns:
        x (N, 1, image_size, image_size) float32 in [-1, 1]; y (N,) int64 labels 0..9.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    check_int("image_size", image_size, 2)
    check_choice("split", split, ("train", "test", "all"))
    bunch = _sk_load_digits()
    levels = np.rint(bunch.images * (PIXEL_LEVELS - 1) / DIGITS_MAX).astype(np.uint8)  # (1797, 8, 8)
    labels = bunch.target.astype(np.int64)
    if split != "all":
        idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE,
                                               random_state=DIGITS_SPLIT_SEED, stratify=labels)
        idx = np.sort(idx_train if split == "train" else idx_test)
        levels, labels = levels[idx], labels[idx]
    v = _resize_8bit(torch.from_numpy(levels)[:, None], image_size)  # (N, 1, S, S) uint8
    return from_image(v), torch.from_numpy(labels)


def load_mnist(root: str | Path = "data", fashion: bool = False, split: str = "train",
               image_size: int = 28, download: bool = True,
               timeout: float = DOWNLOAD_TIMEOUT_S) -> tuple[Tensor, Tensor]:
    """MNIST (or Fashion-MNIST) through torchvision, scaled to [-1, 1]; needs the network once.

    Fails fast with a clear error when the files are missing and cannot be downloaded (the socket
    timeout is set to ``timeout`` seconds during the download only, then restored); offline, use
    :func:`load_digits`.

    Args:
        root: folder for the downloaded files.
        fashion: Fashion-MNIST instead of MNIST.
        split: "train" (60,000) or "test" (10,000).
        image_size: 28 native; other sizes are resized on the 8-bit grid.
        download: try to download missing files.
        timeout: seconds before a download attempt gives up.

    Returns:
        x (N, 1, image_size, image_size) float32 in [-1, 1]; y (N,) int64 labels 0..9.
    """
    check_int("image_size", image_size, 2)
    check_choice("split", split, ("train", "test"))
    try:
        from torchvision import datasets
    except ImportError as e:  # pragma: no cover - torchvision is in requirements.txt
        raise ImportError("load_mnist needs torchvision (pip install torchvision); "
                          "offline, use ddpm_core.load_digits() instead") from e
    cls = datasets.FashionMNIST if fashion else datasets.MNIST
    name = "Fashion-MNIST" if fashion else "MNIST"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        ds = cls(root=str(root), train=(split == "train"), download=download)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError on a failed download
        raise RuntimeError(
            f"could not load {name} from {str(root)!r} ({type(e).__name__}: {e}). It needs the network "
            f"once (or the files placed under {str(root)!r}). Offline, use ddpm_core.load_digits() "
            "(8×8 digits shipped with scikit-learn)."
        ) from e
    finally:
        socket.setdefaulttimeout(old_timeout)
    v = _resize_8bit(ds.data[:, None], image_size)  # (N, 1, S, S) uint8
    return from_image(v), ds.targets.long()
