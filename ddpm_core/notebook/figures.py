"""Figures for the chapters: image grids, rows of digits, PNG frames of figures (every chapter).

Images follow the package's data convention: pixel values in ``[-1, 1]`` (``value_range``),
shaped ``(H, W)``, ``(C, H, W)`` or a batch ``(B, C, H, W)`` / ``(B, H, W)``, as torch tensors
or numpy arrays. Frames for :func:`ddpm_core.frame_slider` are PNG bytes made by
:func:`~ddpm_core.data.images.image_to_png` (arrays) or :func:`fig_to_png` /
:func:`figure_frames` (matplotlib figures, ~100 dpi). Every ``imshow`` here maps the data range
to black..white (``vmin``/``vmax`` of [-1, 1] data, or a grid already normalized to [0, 1]).
"""

from __future__ import annotations

import io
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..data.images import DATA_RANGE, _normalized_grid

FRAME_DPI = 100  # default resolution of figure frames
FRAME_COLORS = 64  # palette size of figure frames: indistinguishable from RGBA for line plots, ~4x smaller

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



def digit_rows(rows: Sequence[Any], row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               title: str | None = None, *, fig: Any = None, value_range: tuple[float, float] | None = DATA_RANGE,
               scale: float = 0.6):
    """Draw each batch in ``rows`` as one labelled row of images, on ``fig`` or a new Figure; return the figure.

    Args:
        rows: R batches, each (n, C, H, W) (or (n, H, W)) with values in ``value_range``.
        row_labels: R labels, written left of the rows.
        col_labels: n labels, one under each column of the last row (e.g. the t of each column).
        title: the figure's title.
        fig: draw on this matplotlib Figure (e.g. ``plt.figure()``); default a new, unmanaged one.
        value_range: mapped to black..white ([-1, 1] for the book's data); None: each row's min..max.
        scale: inches per image column (new figures only).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("digit_rows needs at least one row")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"got {len(rows)} rows but {len(row_labels)} row labels")
    grids = [_normalized_grid(row, len(row), value_range) for row in rows]  # [(grid, ncol)]
    if fig is None:
        from matplotlib.figure import Figure

        ncol = max(n for _, n in grids)
        fig = Figure(figsize=(max(2.0, scale * ncol + 1.0), scale * 1.25 * len(rows) + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(rows), 1))
    for k, (ax, (grid, ncol)) in enumerate(zip(axes, grids)):
        ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")  # already in [0, 1]
        ax.set_yticks([])
        ax.grid(False)
        if row_labels is not None:
            ax.set_ylabel(row_labels[k], rotation=0, ha="right", va="center")
        w = (grid.shape[1] + 1) // ncol  # one image plus its 1-pixel padding
        if col_labels is None or k < len(rows) - 1:
            ax.set_xticks([])
        else:  # under the last row, a label under the centre of each column's image
            ax.set_xticks([i * w + (w - 2) / 2 for i in range(ncol)], list(col_labels)[:ncol])
            ax.tick_params(length=0)
    if title:
        fig.suptitle(title)
    return fig


def trajectory_frames(trajectory: Any, ts: Sequence[int], num_images: int = 16, nrow: int = 4,
                      figsize: tuple[float, float] = (5.8, 3.0), dpi: float = FRAME_DPI) -> list[bytes]:
    r"""PNG frames of a sampler's :class:`~ddpm_core.Trajectory`: the states $x_t$ (left) and the
    predictions $\hat x_0$ (right) of the first ``num_images`` samples, one frame per t in ``ts``."""
    from matplotlib.figure import Figure

    missing = [t for t in ts if t not in trajectory.t]
    if missing:
        raise ValueError(f"the trajectory has no state at t = {missing[:5]} (it has t in {trajectory.t[:3]}...)")
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    fig.get_layout_engine().set(wspace=0.08)  # a gap between the two grids
    ax_xt, ax_x0 = fig.subplots(1, 2)
    shown = []
    for ax in (ax_xt, ax_x0):
        grid, _ = _normalized_grid(trajectory.xt[0, :num_images], nrow, DATA_RANGE)
        shown.append(ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest"))
        ax.set_axis_off()
    ax_x0.set_title(r"prediction $\hat x_0(x_t)$")
    frames = []
    for t in ts:
        i = trajectory.t.index(t)
        for image, states in zip(shown, (trajectory.xt, trajectory.x0_hat)):
            image.set_data(_normalized_grid(states[i, :num_images], nrow, DATA_RANGE)[0])
        ax_xt.set_title(f"state $x_t$, t = {t}")
        frames.append(fig_to_png(fig, dpi=dpi, close=False))
    return frames


__all__ = ["show_images", "images_figure", "fig_to_png", "figure_frames", "digit_rows", "trajectory_frames"]
