r"""Images as data: the [-1, 1] ↔ 8-bit pixel convention, tiling a batch into a grid, PNG bytes (chapters 1, 6).

Pixels are first put on the 8-bit grid {0, ..., 255} like any image file, then scaled to
$[-1, 1]$ by $x = v / 127.5 - 1$ [DDPM §3.3] (DESIGN.md §6). Arrays for display may be torch
tensors or numpy arrays shaped ``(H, W)``, ``(C, H, W)`` or a batch ``(B, C, H, W)`` / ``(B, H, W)``;
:func:`image_to_png` writes them upscaled nearest-neighbour, so 8x8 digits stay crisp. Nothing
here imports matplotlib.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.likelihood import PIXEL_LEVELS

__all__ = ["to_image", "from_image", "image_grid", "image_to_png", "is_png", "DATA_RANGE"]

HALF_RANGE = (PIXEL_LEVELS - 1) / 2
"""127.5: maps {0..255} onto [-1, 1] by v / 127.5 - 1."""
DATA_RANGE = (-1.0, 1.0)
"""The package's pixel range (DESIGN.md §6)."""
IMAGE_MIN_SIDE = 128
"""image_to_png upscales by an integer factor until the image is at least this big."""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def to_image(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Map model space [-1, 1] to image space: float in [0, 1] (default) or uint8 in {0..255}.

    Values outside [-1, 1] (a sampler's overshoot) are clipped.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    v = ((x.detach().float().clamp(-1, 1) + 1) * HALF_RANGE)  # [0, 255]
    if dtype == torch.uint8:
        return v.round().to(torch.uint8)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be torch.uint8 or a float dtype, got {dtype}")
    return (v / (PIXEL_LEVELS - 1)).to(dtype)


def from_image(img) -> Tensor:
    """Map an image to model space [-1, 1]: uint8 {0..255} → v/127.5 − 1; float [0, 1] → 2v − 1."""
    img = torch.as_tensor(img)
    if img.dtype == torch.uint8:
        return img.float() / HALF_RANGE - 1.0
    if not img.is_floating_point():
        raise TypeError(f"img must be uint8 or float in [0, 1], got dtype {img.dtype}")
    if img.numel() and (img.min() < 0 or img.max() > 1):
        raise ValueError("a float img must lie in [0, 1]; pass uint8 for {0..255} images")
    return img.float() * 2.0 - 1.0


def _to_numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or array-like as a float64 numpy array."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().to("cpu").float().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected an image array or tensor, got {type(x).__name__}") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    return arr


def _normalize(arr: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Map ``value_range`` (or the array's own min..max when None) to [0, 1] and clip."""
    if value_range is None:
        lo, hi = float(arr.min()), float(arr.max())
    else:
        lo, hi = map(float, value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    if hi == lo:  # a constant image: show it mid-grey rather than divide by zero
        return np.full_like(arr, 0.5)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)


def _as_hwc(img: np.ndarray) -> np.ndarray:
    """One image as (H, W) grey or (H, W, 3) colour, from (H, W), (1|3, H, W) or (H, W, 1|3)."""
    if img.ndim == 2:
        return img
    if img.ndim == 3:
        if img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):  # (C, H, W)
            img = np.moveaxis(img, 0, -1)
        if img.shape[-1] == 1:
            return img[..., 0]
        if img.shape[-1] == 3:
            return img
    raise ValueError(
        f"expected one image shaped (H, W), (C, H, W) or (H, W, C) with C in {{1, 3}}, got {img.shape}"
    )


def _as_batch(images: Any) -> np.ndarray:
    """A batch as (B, H, W) or (B, H, W, 3) from (B, C, H, W), (B, H, W) or a single image.

    A 3-D array whose first or last axis is 1 or 3 is one (C, H, W) / (H, W, C) image, never a
    batch of 1 or 3 grey images: pass those as (B, 1, H, W).
    """
    arr = _to_numpy(images)
    if arr.ndim == 4:  # (B, C, H, W) or (B, H, W, C)
        return np.stack([_as_hwc(a) for a in arr])
    if arr.ndim == 3 and arr.shape[0] not in (1, 3) and arr.shape[-1] not in (1, 3):  # (B, H, W)
        return arr
    if arr.ndim in (2, 3):  # a single image
        return _as_hwc(arr)[None]
    raise ValueError(f"expected images shaped (B, C, H, W), (B, H, W) or one image, got {arr.shape}")


def image_grid(images: Any, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one image, ``nrow`` images per row, in the input's units.

    Args:
        images: (B, C, H, W), (B, H, W) or one image; tensor or array.
        nrow: images per row.
        padding: pixels of ``pad_value`` between images.
        pad_value: value of the padding (1.0 is white for the book's [-1, 1] data).

    Returns:
        (H', W') for grey images or (H', W', 3) for colour, a float64 numpy array that
        :func:`image_to_png`, :func:`show_images` and ``frame_slider`` accept like any image.
    """
    return _tile(_as_batch(images), nrow, padding, pad_value)[0]


def _tile(batch: np.ndarray, nrow: int, padding: int = 1, pad_value: float = 1.0) -> tuple[np.ndarray, int]:
    """Tile (B, H, W[, 3]) into one array; also return the number of columns."""
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    b, h, w = batch.shape[:3]
    ncol = min(nrow, b)
    nrows = -(-b // ncol)
    grid_shape = (nrows * h + (nrows - 1) * padding, ncol * w + (ncol - 1) * padding) + batch.shape[3:]
    grid = np.full(grid_shape, float(pad_value))
    for i, img in enumerate(batch):
        r, c = divmod(i, ncol)
        grid[r * (h + padding): r * (h + padding) + h, c * (w + padding): c * (w + padding) + w] = img
    return grid, ncol


def _normalized_grid(images: Any, nrow: int, value_range) -> tuple[np.ndarray, int]:
    """Grid in [0, 1] (white padding) from images in ``value_range``."""
    return _tile(_normalize(_as_batch(images), value_range), nrow, pad_value=1.0)


def image_to_png(
    image: Any,
    value_range: tuple[float, float] | None = DATA_RANGE,
    scale: int | None = None,
    min_side: int = IMAGE_MIN_SIDE,
    nrow: int = 8,
) -> bytes:
    """One image (or an :func:`image_grid`) as PNG bytes, upscaled nearest-neighbour.

    Args:
        image: (H, W), (C, H, W) or (H, W, C) with C in {1, 3}, or an :func:`image_grid`;
            a batch ((B, C, H, W) or (B, H, W)) is tiled ``nrow`` per row first.
            Values in ``value_range``.
        value_range: (low, high) mapped to 0..255; None: the image's min..max.
        scale: integer upscaling factor; None picks the smallest one that makes the shorter
            side at least ``min_side`` pixels (an 8x8 digit becomes 128x128).
        min_side: see ``scale``.
        nrow: images per row when ``image`` is a batch.

    Returns:
        PNG bytes (8-bit grey or RGB).
    """
    from PIL import Image

    arr = _to_numpy(image)
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[0] not in (1, 3) and arr.shape[-1] not in (1, 3)):
        arr = _normalized_grid(arr, nrow, value_range)[0]  # a batch: tile it first
    else:
        arr = _normalize(_as_hwc(arr), value_range)
    if scale is None:
        scale = max(1, -(-int(min_side) // min(arr.shape[:2])))
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    pixels = np.round(arr * 255.0).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)  # nearest-neighbour upscaling
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def is_png(data: Any) -> bool:
    """True when ``data`` is bytes starting with the PNG signature."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:8]) == PNG_MAGIC
