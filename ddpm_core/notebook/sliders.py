"""Sliders over pre-rendered frames that work in a kernel, in the static book and in Colab (every chapter).

:func:`frame_slider` turns a short list of frames (PNG bytes, image arrays or matplotlib
figures) and the value each one shows (usually the timestep t) into a slider:

* **ipywidgets 8** (JupyterLab, Jupyter Notebook 7, the book build): a ``SelectionSlider``
  whose labels are the t values, joined by ``widgets.jslink`` to a ``widgets.Stack`` of
  ``widgets.Image`` frames. The link runs in the browser, so once the notebook has been executed
  (which stores the widget state) the slider also works in the static HTML with no kernel and,
  with the book's vendored widget JS, no network.
* **ipywidgets 7** (Google Colab ships 7.x, which has no ``Stack``): the same slider plus one
  ``widgets.Image`` whose value a Python callback swaps (``slider.observe``). This needs a
  running kernel, which Colab always has while the notebook is open, and it keeps the reader's
  Colab runtime untouched (no ipywidgets upgrade, no custom widget manager). We chose it over
  ``FuncAnimation.to_jshtml()`` because it looks and behaves like the book's slider.

Frames are bounded (``max_frames``, ``max_bytes``) so pages stay small: pick ~10-40 values of t,
8x8 digits upscaled nearest-neighbour, figures at ~100 dpi (see :mod:`.figures`).

Example::

    ts = [1, 10, 50, 100, 250, 500, 750, 1000]
    frames = [dc.q_sample(s, x0, torch.full((16,), t), eps) for t in ts]  # (16, 1, 8, 8) each
    dc.frame_slider(frames, ts)      # noisy digits vs t; a batch is tiled 8 per row
    dc.figure_slider(draw_snr, ts)   # draw_snr(ax, t): SNR curves with t marked
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

from .._checks import check_int
from ..data.images import DATA_RANGE, image_to_png, is_png
from .figures import FRAME_DPI, fig_to_png, figure_frames, trajectory_frames

MAX_FRAMES = 40  # one page holds every frame of every slider: keep it short
MAX_BYTES = 4_000_000  # per slider, before base64 (which adds a third) in the page


def ipywidgets_major() -> int:
    """The installed ipywidgets major version (7 in Colab, 8 in the book's environment)."""
    import ipywidgets

    try:
        return int(str(ipywidgets.__version__).split(".")[0])
    except ValueError:
        return 0


def has_stack() -> bool:
    """True when ipywidgets has ``Stack`` (8.0+), so the slider can run without a kernel."""
    import ipywidgets

    return ipywidgets_major() >= 8 and hasattr(ipywidgets, "Stack")


def _as_png(frame: Any, index: int, value_range) -> bytes:
    """PNG bytes for one frame: PNG bytes, a matplotlib Figure, or an image array/tensor."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        if not is_png(frame):
            raise ValueError(f"frame {index} is bytes but not a PNG image (bad signature)")
        return bytes(frame)
    if hasattr(frame, "savefig"):  # matplotlib Figure
        return fig_to_png(frame, close=True)
    if isinstance(frame, (str, numbers.Number)) or frame is None:
        raise ValueError(
            f"frame {index} is a {type(frame).__name__}; expected PNG bytes, a matplotlib Figure "
            "or an image array/tensor"
        )
    try:
        return image_to_png(frame, value_range=value_range)
    except ValueError as err:
        raise ValueError(f"frame {index}: {err}") from err


def _label(value: Any, label_format: str | Callable[[Any], str] | None) -> str:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalar
        value = value.item()
    if callable(label_format):
        return str(label_format(value))
    if label_format is not None:
        return label_format.format(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.3g}"


def frame_slider(
    frames: Sequence[Any],
    values: Sequence[Any],
    description: str = "t",
    *,
    label_format: str | Callable[[Any], str] | None = None,
    value_range: tuple[float, float] | None = DATA_RANGE,
    initial: int = 0,
    max_frames: int = MAX_FRAMES,
    max_bytes: int = MAX_BYTES,
    width: str = "420px",
):
    """A slider over pre-rendered frames, labelled with the value each frame shows.

    Args:
        frames: N frames, each PNG bytes, a matplotlib Figure (converted at ~100 dpi and closed)
            or an image array/tensor ((H, W), (C, H, W), an ``image_grid``, or a batch
            (B, C, H, W) tiled 8 per row; values in ``value_range``; upscaled nearest-neighbour).
        values: N distinct values shown as the slider's labels, e.g. the timesteps t.
        description: the slider's name, shown to its left.
        label_format: format string (``"{:.2f}"``) or function for the labels; default: ints as
            they are, floats with 3 significant digits.
        value_range: pixel range of array frames ((-1, 1) for the book's data, values outside
            are clipped); None: each frame's own min..max.
        initial: index of the frame shown first.
        max_frames: refuse more frames than this (pages embed every frame).
        max_bytes: refuse frames totalling more PNG bytes than this.
        width: CSS width of the slider.

    Returns:
        An ``ipywidgets.VBox`` holding the slider and the frames (display it, or make it the
        cell's last value). ipywidgets 8: ``Stack`` + ``jslink``, works without a kernel;
        ipywidgets 7 (Colab): a Python callback, needs the kernel.

    Raises:
        ValueError: no frames, lengths differ, too many frames or bytes, repeated values, a
            frame that is not a PNG / figure / image, a bad ``initial``.
    """
    frames = list(frames)
    values = list(values)
    labels = _check_frames(frames, values, label_format, initial, max_frames)
    pngs = [_as_png(f, i, value_range) for i, f in enumerate(frames)]
    total = sum(len(p) for p in pngs)
    if total > max_bytes:
        raise ValueError(
            f"frames total {total / 1e6:.1f} MB, more than max_bytes={max_bytes / 1e6:.1f} MB: use "
            "fewer or smaller frames (lower dpi, smaller figsize)"
        )
    return _slider_box(pngs, labels, description, initial, width)


def _check_frames(frames: list, values: list, label_format, initial: int, max_frames: int) -> list[str]:
    """Check the frames against their values and limits; return the slider's (distinct) labels."""
    if not frames:
        raise ValueError("frame_slider needs at least one frame")
    if len(frames) != len(values):
        raise ValueError(f"got {len(frames)} frames but {len(values)} values: give one value per frame")
    if len(frames) > max_frames:
        raise ValueError(
            f"{len(frames)} frames is more than max_frames={max_frames}: every frame is stored in the "
            "page, so pick fewer values (e.g. values[::2]) or raise max_frames deliberately"
        )
    if not 0 <= initial < len(frames):
        raise ValueError(f"initial must index a frame (0..{len(frames) - 1}), got {initial}")
    labels = [_label(v, label_format) for v in values]
    if len(set(labels)) != len(labels):
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise ValueError(f"slider labels must be distinct, repeated: {dupes}")
    return labels


def _slider_box(pngs: list[bytes], labels: list[str], description: str, initial: int, width: str):
    """The widget: ipywidgets 8's Stack joined by jslink, or ipywidgets 7's kernel-side swap."""
    import ipywidgets as widgets

    slider = widgets.SelectionSlider(
        options=[(lab, i) for i, lab in enumerate(labels)],  # label shown, value = frame index
        index=initial,
        description=description,
        continuous_update=True,
        readout=True,
        layout=widgets.Layout(width=width),
    )
    if has_stack():
        images = [widgets.Image(value=p, format="png") for p in pngs]
        stack = widgets.Stack(images, selected_index=initial)
        # SelectionSlider syncs `index` (not `value`) with the browser: link that one.
        link = widgets.jslink((slider, "index"), (stack, "selected_index"))
        box = widgets.VBox([slider, stack])
        box._ddpm_link = link  # keep the link with the widget it serves
        box.add_class("ddpm-frame-slider")
        return box

    # ipywidgets 7 (Colab): no Stack, so swap the image from Python while the kernel runs.
    image = widgets.Image(value=pngs[initial], format="png")

    def _show(change):
        image.value = pngs[change["new"]]

    slider.observe(_show, names="index")
    box = widgets.VBox([slider, image])
    box.add_class("ddpm-frame-slider")
    return box


def figure_slider(
    draw: Callable[[Any, Any], Any],
    values: Sequence[Any],
    description: str = "t",
    *,
    figsize: tuple[float, float] = (5.0, 3.2),
    dpi: float = FRAME_DPI,
    **kwargs: Any,
):
    """``frame_slider`` over figures drawn by ``draw(ax, value)``, one per value.

    For plots that change with t: SNR curves with the current t marked, histograms of
    predicted vs true noise at t. Fix the axis limits inside ``draw`` so frames line up.
    Other keyword arguments go to :func:`frame_slider`.
    """
    values = list(values)
    max_frames = kwargs.get("max_frames", MAX_FRAMES)
    if len(values) > max_frames:  # check before drawing dozens of figures
        raise ValueError(
            f"{len(values)} values is more than max_frames={max_frames}: pick fewer values"
        )
    frames = figure_frames(draw, values, figsize=figsize, dpi=dpi)
    return frame_slider(frames, values, description, **kwargs)


def slider_timesteps(num_steps: int, num: int = 21, include_zero: bool = True) -> list[int]:
    """``num`` evenly spaced paper timesteps from 0 (clean data) or 1 up to T, for a t-slider.

    >>> slider_timesteps(1000, num=5)
    [0, 250, 500, 750, 1000]
    """
    if num_steps < 1 or num < 2:
        raise ValueError(f"need num_steps >= 1 and num >= 2, got num_steps={num_steps}, num={num}")
    start = 0 if include_zero else 1
    num = min(num, num_steps - start + 1)
    return sorted({round(start + i * (num_steps - start) / (num - 1)) for i in range(num)})


def trajectory_slider(trajectory: Any, ts: Sequence[int] | None = None, *, num_frames: int = 21,
                      num_images: int = 16, nrow: int = 4, description: str = "t",
                      figsize: tuple[float, float] = (5.8, 3.0), **kwargs: Any):
    r"""A slider over a sampler's :class:`~ddpm_core.Trajectory`: $x_t$ and $\hat x_0$ side by side at each t.

    Args:
        trajectory: from ``ddpm_sample(..., trajectory=True)`` or ``ddim_sample(...)``.
        ts: the timesteps to show (each one the trajectory visited); default ``num_frames`` of them,
            evenly spaced over the trajectory from $x_T$ to $x_0$.
        num_images, nrow: the first ``num_images`` samples, ``nrow`` per row in each grid.
        description, figsize, kwargs: as :func:`frame_slider` / :func:`figure_slider`.
    """
    if ts is None:
        check_int("num_frames", num_frames, 2)
        k, n = len(trajectory.t), min(num_frames, len(trajectory.t))
        idx = sorted({round(i * (k - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
        ts = [trajectory.t[i] for i in idx]
    ts = list(ts)
    max_frames = kwargs.get("max_frames", MAX_FRAMES)
    if len(ts) > max_frames:
        raise ValueError(f"{len(ts)} timesteps is more than max_frames={max_frames}: pick fewer")
    frames = trajectory_frames(trajectory, ts, num_images=num_images, nrow=nrow, figsize=figsize)
    return frame_slider(frames, ts, description, **kwargs)


__all__ = ["frame_slider", "figure_slider", "trajectory_slider", "slider_timesteps", "has_stack", "ipywidgets_major"]
