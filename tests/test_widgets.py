"""ddpm_core.notebook.sliders: the frame slider's structure (ipywidgets 8 and the Colab fallback) and its errors."""

from __future__ import annotations

import io

import ipywidgets
import numpy as np
import pytest
import torch
from PIL import Image

import ddpm_core as dc
from ddpm_core.data.images import is_png
from ddpm_core.notebook import sliders as widgets


def _digits(n=4, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (B, 1, 8, 8)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _links(box):
    """Live jslinks (registered widgets, so stored with the notebook) between the box's children."""
    from ipywidgets.widgets.widget import _instances
    from ipywidgets.widgets.widget_link import Link

    ids = {c.model_id for c in box.children}
    return [
        w for w in list(_instances.values()) if isinstance(w, Link)
        and {w.source[0].model_id, w.target[0].model_id} <= ids
    ]


def test_stack_and_jslink_structure():
    ts = [1, 10, 100, 1000]
    box = dc.frame_slider([_png(v) for v in (0, 80, 160, 240)], ts)
    assert isinstance(box, ipywidgets.VBox)
    assert "ddpm-frame-slider" in box._dom_classes
    slider, stack = box.children
    assert isinstance(slider, ipywidgets.SelectionSlider)
    assert isinstance(stack, ipywidgets.Stack)
    assert all(isinstance(im, ipywidgets.Image) and im.format == "png" for im in stack.children)
    assert [im.value for im in stack.children] == [_png(v) for v in (0, 80, 160, 240)]
    # The browser-side link: the slider's synced `index` drives the stack's `selected_index`.
    (link,) = _links(box)
    assert link.source == (slider, "index") and link.target == (stack, "selected_index")
    assert slider.index == stack.selected_index == 0


def test_labels_are_the_values():
    ts = [1, 50, 250, 1000]
    box = dc.frame_slider([_png(v) for v in range(4)], ts, description="t")
    slider = box.children[0]
    assert slider.description == "t"
    assert list(slider._options_labels) == ["1", "50", "250", "1000"]
    assert slider.label == "1"
    slider.index = 2
    assert slider.label == "250"


@pytest.mark.parametrize(
    ("values", "kwargs", "labels"),
    [
        (np.array([1, 2, 3]), {}, ["1", "2", "3"]),  # numpy ints
        (torch.tensor([5, 6, 7]), {}, ["5", "6", "7"]),  # torch scalars
        ([0.001234, 0.5, 12.0], {}, ["0.00123", "0.5", "12"]),  # floats: 3 significant digits
        ([0.1, 0.2, 0.3], {"label_format": "{:.2f}"}, ["0.10", "0.20", "0.30"]),
        ([1, 2, 3], {"label_format": lambda t: f"t={t}"}, ["t=1", "t=2", "t=3"]),
        (["linear", "cosine", "sigmoid"], {}, ["linear", "cosine", "sigmoid"]),
    ],
)
def test_label_formats(values, kwargs, labels):
    box = dc.frame_slider([_png(v) for v in range(3)], values, **kwargs)
    assert list(box.children[0]._options_labels) == labels


def test_frame_types_images_batches_and_figures():
    from matplotlib.figure import Figure

    x0 = _digits(16)
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    frames = [x0, x0[0], x0[0, 0].numpy(), dc.image_grid(x0), fig, _png(7)]
    box = dc.frame_slider(frames, range(6))
    pngs = [bytes(im.value) for im in box.children[1].children]
    assert all(is_png(p) for p in pngs)
    sizes = [Image.open(io.BytesIO(p)).size for p in pngs]
    assert sizes[1] == sizes[2] == (128, 128)  # one 8x8 digit, upscaled 16x
    assert sizes[0] == sizes[3]  # a batch is tiled like image_grid
    assert sizes[4] == (200, 200)  # 2x2 inches at 100 dpi


def test_frame_count_is_bounded():
    frames = [_png(v) for v in range(41)]
    with pytest.raises(ValueError, match="max_frames=40"):
        dc.frame_slider(frames, range(41))
    box = dc.frame_slider(frames, range(41), max_frames=41)  # deliberately raised
    assert len(box.children[1].children) == 41
    assert len(dc.frame_slider(frames[:40], range(40)).children[1].children) == 40


@pytest.mark.parametrize(
    ("frames", "values", "kwargs", "match"),
    [
        ([], [], {}, "at least one frame"),
        ([_png(0), _png(1)], [1], {}, "2 frames but 1 values"),
        ([_png(0), _png(1)], [1, 1], {}, "distinct"),
        ([b"not a png"], [1], {}, "not a PNG"),
        (["noise.png"], [1], {}, "frame 0 is a str"),
        ([None], [1], {}, "frame 0 is a NoneType"),
        ([np.zeros((2, 3, 4, 5, 6))], [1], {}, "frame 0"),
        ([np.full((8, 8), np.nan)], [1], {}, "NaN"),
        ([_png(0), _png(1)], [1, 2], {"initial": 2}, "initial"),
        ([_png(0)], [1], {"max_bytes": 10}, "max_bytes"),
        ([np.zeros((8, 8))], [1], {"value_range": (1, -1)}, "value_range"),
    ],
)
def test_bad_input_raises_clear_value_error(frames, values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dc.frame_slider(frames, values, **kwargs)


def test_colab_fallback_on_ipywidgets_7(monkeypatch):
    """Colab ships ipywidgets 7 (no Stack): one Image, swapped by a Python callback."""
    monkeypatch.setattr(ipywidgets, "__version__", "7.7.1")
    assert widgets.ipywidgets_major() == 7 and not widgets.has_stack()
    frames = [_png(v) for v in (0, 100, 200)]
    box = dc.frame_slider(frames, [1, 500, 1000])
    slider, image = box.children
    assert isinstance(slider, ipywidgets.SelectionSlider) and isinstance(image, ipywidgets.Image)
    assert not any(isinstance(c, getattr(ipywidgets, "Stack", ())) for c in box.children)
    assert not _links(box)
    assert image.value == frames[0] and slider.label == "1"
    slider.index = 2
    assert image.value == frames[2] and slider.label == "1000"
    slider.index = 1
    assert image.value == frames[1]


def test_fallback_when_stack_is_missing(monkeypatch):
    monkeypatch.delattr(ipywidgets, "Stack")
    assert not widgets.has_stack()
    box = dc.frame_slider([_png(0), _png(1)], [1, 2])
    assert isinstance(box.children[1], ipywidgets.Image)


def test_three_chapter_sliders_are_expressible():
    """Noisy images vs t, SNR curves with t marked, predicted-vs-true noise histograms vs t."""
    s = dc.NoiseSchedule.linear(num_steps=100)
    x0, eps = _digits(8), torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ts = dc.slider_timesteps(s.num_steps, num=6, include_zero=False)
    noisy = dc.frame_slider([dc.q_sample(s, x0, torch.full((8,), t), eps) for t in ts], ts)

    def draw_snr(ax, t):
        ax.semilogy(np.arange(1, s.num_steps + 1), s.snr[1:])
        ax.axvline(t, color="k", ls="--")
        ax.set(xlabel="t", ylabel="SNR(t)", ylim=(1e-3, 1e4))

    snr = dc.figure_slider(draw_snr, ts, figsize=(3, 2))

    def draw_hist(ax, t):
        eps_theta = eps + 0.01 * t * torch.randn_like(eps)
        ax.hist([eps.flatten().numpy(), eps_theta.flatten().numpy()], bins=np.linspace(-4, 4, 17))
        ax.set(xlabel="value", ylabel="count", ylim=(0, 200))

    hist = dc.figure_slider(draw_hist, ts, figsize=(3, 2))
    for box in (noisy, snr, hist):
        assert list(box.children[0]._options_labels) == [str(t) for t in ts]
        pngs = [bytes(im.value) for im in box.children[1].children]
        assert len(pngs) == len(ts) and len(set(pngs)) == len(ts)  # every frame differs


def test_figure_slider_checks_count_before_drawing():
    calls = []
    with pytest.raises(ValueError, match="max_frames"):
        dc.figure_slider(lambda ax, t: calls.append(t), range(50))
    assert calls == []


def test_slider_timesteps():
    assert dc.slider_timesteps(1000, num=5) == [0, 250, 500, 750, 1000]
    assert dc.slider_timesteps(1000, num=4, include_zero=False) == [1, 334, 667, 1000]
    assert dc.slider_timesteps(5, num=21) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        dc.slider_timesteps(0)
    with pytest.raises(ValueError):
        dc.slider_timesteps(10, num=1)
