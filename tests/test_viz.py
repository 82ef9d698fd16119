"""ddpm_core.notebook (style, figures) and ddpm_core.data.images: book style, image grids, PNG frames."""

from __future__ import annotations

import io
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

import ddpm_core as dc
from ddpm_core.data.images import image_to_png, is_png
from ddpm_core.notebook.figures import FRAME_DPI
from ddpm_core.notebook.style import OKABE_ITO


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_import_changes_no_global_state():
    code = (
        "import matplotlib as mpl; before = dict(mpl.rcParams); "
        "import ddpm_core, ddpm_core.notebook, ddpm_core.training; "
        "assert dict(mpl.rcParams) == before, 'importing ddpm_core changed rcParams'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_apply_book_style_sets_rcparams():
    with matplotlib.rc_context():
        dc.apply_book_style()
        assert matplotlib.rcParams["image.cmap"] == "gray"
        assert matplotlib.rcParams["savefig.dpi"] == FRAME_DPI
        assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0] == OKABE_ITO[0]


def test_image_grid_layout_and_units():
    x = torch.stack([torch.full((1, 8, 8), v) for v in (-1.0, 0.0, 0.5)])  # (3, 1, 8, 8)
    grid = dc.image_grid(x, nrow=2, padding=1)
    assert grid.shape == (17, 17)  # 2 rows, 2 columns of 8 + 1 pixel of padding
    assert grid[0, 0] == -1.0 and grid[0, 9] == 0.0 and grid[9, 0] == 0.5  # input units kept
    assert grid[8, 0] == 1.0 and grid[16, 16] == 1.0  # white padding, empty cell filled with it
    four = torch.zeros(4, 8, 8)
    assert dc.image_grid(four).shape == (8, 35)  # (B, H, W) batches, nrow larger than B
    assert dc.image_grid(x[:, 0]).shape == (8, 8, 3)  # (3, H, W) is one colour image, not a batch
    assert dc.image_grid(torch.rand(2, 3, 4, 4)).shape == (4, 9, 3)  # colour stays (H, W, 3)


def test_image_to_png_nearest_neighbour_upscaling():
    img = np.array([[-1.0, 1.0], [0.0, -1.0]])
    px = _decode(image_to_png(img, scale=3))
    assert px.shape == (6, 6) and px.dtype == np.uint8
    assert (px[:3, :3] == 0).all() and (px[:3, 3:] == 255).all()  # crisp 3x3 blocks, no blur
    assert (px[3:, :3] == 128).all()  # 0.0 in [-1, 1] is mid grey (127.5 rounds to 128)
    digit = torch.rand(1, 8, 8) * 2 - 1
    assert _decode(dc.image_to_png(digit)).shape == (128, 128)  # default: at least 128 px
    assert _decode(dc.image_to_png(np.zeros((28, 28)))).shape == (140, 140)  # MNIST: 5x
    clipped = _decode(dc.image_to_png(np.array([[-3.0, 3.0]]), scale=1))
    assert clipped.tolist() == [[0, 255]]  # outside value_range: clipped
    auto = _decode(dc.image_to_png(np.array([[2.0, 4.0]]), value_range=None, scale=1))
    assert auto.tolist() == [[0, 255]]  # None: min..max


def test_image_to_png_is_deterministic_and_without_metadata():
    x = np.linspace(-1, 1, 64).reshape(8, 8)
    assert dc.image_to_png(x) == dc.image_to_png(x)
    assert b"matplotlib" not in dc.image_to_png(x)


def test_fig_to_png_and_figure_frames():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    png = dc.fig_to_png(fig)
    assert is_png(png) and Image.open(io.BytesIO(png)).size == (300, 200)
    assert b"Software" not in png  # no version metadata: bytes depend on pixels only
    rgba = dc.fig_to_png(fig, colors=None)
    assert Image.open(io.BytesIO(rgba)).mode == "RGBA" and len(png) < len(rgba)

    frames = dc.figure_frames(lambda ax, t: ax.axvline(t), [1, 2, 3], figsize=(2, 2))
    assert len(frames) == 3 and len(set(frames)) == 3
    assert {Image.open(io.BytesIO(f)).size for f in frames} == {(200, 200)}  # same size: no jumps


def test_fig_to_png_closes_pyplot_figures():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    dc.fig_to_png(fig)
    assert fig.number not in plt.get_fignums()


def test_show_images_returns_none_and_images_figure_returns_figure():
    import matplotlib.pyplot as plt

    x = torch.rand(10, 1, 8, 8) * 2 - 1
    assert dc.show_images(x, nrow=5, title="digits") is None  # a cell ending with it shows it once
    fig = plt.gcf()
    assert fig.axes[0].get_title() == "digits"
    plt.close(fig)
    n_open = len(plt.get_fignums())
    f = dc.images_figure(x, nrow=5, title="digits")
    assert len(plt.get_fignums()) == n_open  # not managed by pyplot: never shown twice
    assert f.get_size_inches()[0] == pytest.approx(5 * 0.6)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 2, 8, 8, 1)), "expected images"),
        (np.zeros((5, 8, 8, 2)), r"C in \{1, 3\}"),
        (np.array([[np.inf]]), "NaN or infinite"),
        ("digits", "expected an image array"),
    ],
)
def test_bad_images_raise_value_error(images, match):
    with pytest.raises(ValueError, match=match):
        dc.image_grid(images)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="nrow"):
        dc.image_grid(np.zeros((4, 8, 8)), nrow=0)
    with pytest.raises(ValueError, match="scale"):
        dc.image_to_png(np.zeros((8, 8)), scale=1.5)
    with pytest.raises(ValueError, match="Figure"):
        dc.fig_to_png(np.zeros((8, 8)))
