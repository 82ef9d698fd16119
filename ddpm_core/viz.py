"""Plotting helpers shared by the chapters: the book's style, image grids, and PNG frames.

Nothing here runs on import: a chapter calls :func:`apply_book_style` in its first cell.
Images follow the package's data convention: pixel values in ``[-1, 1]`` (``value_range``),
shaped ``(H, W)``, ``(C, H, W)`` or a batch ``(B, C, H, W)`` / ``(B, H, W)``, as torch tensors
or numpy arrays. Frames for :func:`ddpm_core.widgets.frame_slider` are PNG bytes made by
:func:`image_to_png` (arrays, upscaled nearest-neighbour so 8x8 digits stay crisp) or
:func:`fig_to_png` / :func:`figure_frames` (matplotlib figures, ~100 dpi).
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable, Sequence

import numpy as np

# Book style: applied only by ``apply_book_style()``. Okabe-Ito colours stay distinguishable
# for colour-blind readers and in grey print.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
BOOK_RC = {
    "figure.figsize": (6.0, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 100,  # ~100 dpi keeps slider frames and the HTML small
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "image.cmap": "gray",
    "image.interpolation": "nearest",
    "lines.linewidth": 1.8,
}
FRAME_DPI = 100  # default resolution of figure frames
FRAME_COLORS = 64  # palette size of figure frames: indistinguishable from RGBA for line plots, ~4x smaller
IMAGE_MIN_SIDE = 128  # image_to_png upscales by an integer factor until the image is at least this big
DATA_RANGE = (-1.0, 1.0)  # the package's pixel range (DESIGN.md section 6)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def apply_book_style() -> None:
    """Set the book's matplotlib style (fonts, grid, colour cycle, grey images). Call it once per chapter."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(BOOK_RC)
    mpl.rcParams["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))


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


def show_images(
    images: Any,
    nrow: int = 8,
    title: str | None = None,
    value_range: tuple[float, float] | None = DATA_RANGE,
    ax: Any = None,
    scale: float = 0.6,
) -> None:
    """Show a batch of images as one grid (grey colormap, no axes), on ``ax`` or a new figure.

    Returns None, so a notebook cell ending with it shows the figure exactly once. Use
    :func:`images_figure` when you need the Figure itself (to save it or make a frame).

    Args:
        images: (B, C, H, W), (B, H, W) or one image, values in ``value_range``.
        nrow: images per row.
        title: figure title.
        value_range: (low, high) mapped to black..white; None: the batch's min..max.
        ax: draw on this Axes instead of a new figure.
        scale: inches per image column (new figures only).
    """
    grid, ncol = _normalized_grid(images, nrow, value_range)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=_grid_figsize(grid, ncol, scale))
    _draw_grid(ax, grid, title)


def images_figure(
    images: Any,
    nrow: int = 8,
    title: str | None = None,
    value_range: tuple[float, float] | None = DATA_RANGE,
    scale: float = 0.6,
):
    """Like :func:`show_images`, but return a matplotlib Figure that pyplot does not manage.

    The figure is not shown automatically (it is shown if it is a cell's last value) and needs
    no closing: use it for ``fig_to_png``, slider frames or ``fig.savefig``.
    """
    from matplotlib.figure import Figure

    grid, ncol = _normalized_grid(images, nrow, value_range)
    fig = Figure(figsize=_grid_figsize(grid, ncol, scale), layout="constrained")
    _draw_grid(fig.add_subplot(), grid, title)
    return fig


def _grid_figsize(grid: np.ndarray, ncol: int, scale: float) -> tuple[float, float]:
    """Figure size for a grid: ``scale`` inches per image column, height from the aspect ratio."""
    h, w = grid.shape[:2]
    width = max(2.0, scale * ncol)
    return width, max(1.0, width * h / w + 0.3)  # + room for a title


def _draw_grid(ax: Any, grid: np.ndarray, title: str | None) -> None:
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def fig_to_png(fig: Any, dpi: float | None = FRAME_DPI, close: bool = True, colors: int | None = FRAME_COLORS) -> bytes:
    """A matplotlib Figure as PNG bytes (fixed size, so slider frames do not jump).

    Args:
        fig: the Figure.
        dpi: resolution (100 keeps a 5x3.2-inch frame at 500x320 pixels).
        close: close a pyplot-managed figure so the notebook's inline backend does not also show it.
        colors: reduce to a palette of this many colours (plots look the same and the PNG is ~4x
            smaller, which matters when a page embeds every frame of a slider); None keeps RGBA.

    Returns:
        PNG bytes without software/version metadata, so they depend only on the pixels.
    """
    if not hasattr(fig, "savefig"):
        raise ValueError(f"expected a matplotlib Figure, got {type(fig).__name__}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    if colors is None:
        return buf.getvalue()
    from PIL import Image

    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=int(colors), method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


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


def figure_frames(
    draw: Callable[[Any, Any], Any],
    values: Iterable[Any],
    figsize: tuple[float, float] = (5.0, 3.2),
    dpi: float = FRAME_DPI,
) -> list[bytes]:
    """Draw one figure per value and return the PNG bytes, for :func:`~ddpm_core.widgets.frame_slider`.

    ``draw(ax, value)`` plots on a fresh Axes; keep the axis limits fixed (``ax.set_ylim``) so the
    frames line up. The figures are never shown or left open.

    Example (SNR curve with the current t marked)::

        def draw(ax, t):
            ax.semilogy(range(1, T + 1), s.snr[1:])
            ax.axvline(t, color="k", ls="--")
        frames = figure_frames(draw, ts)
    """
    from matplotlib.figure import Figure

    frames = []
    for value in values:
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        draw(fig.add_subplot(), value)
        frames.append(fig_to_png(fig, dpi=dpi, close=False))
    return frames


def is_png(data: Any) -> bool:
    """True when ``data`` is bytes starting with the PNG signature."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:8]) == PNG_MAGIC


__all__: Sequence[str] = (
    "apply_book_style",
    "image_grid",
    "show_images",
    "images_figure",
    "fig_to_png",
    "image_to_png",
    "figure_frames",
)
