"""The graphical-model figures of ddpm_core.notebook.chains: DDPM's chain (chapters 1, 3), DDIM's (chapter 7)."""

import io
from itertools import combinations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import FancyArrowPatch

from ddpm_core.notebook.chains import CHAIN_NODES, ddim_vs_ddpm_diagram, markov_chain_diagram

MARKOV_LABELS = [r"$\mathbf{x}_{T}$", r"$\cdots$", r"$\mathbf{x}_{t}$", r"$\mathbf{x}_{t-1}$", r"$\cdots$",
                 r"$\mathbf{x}_{0}$"]


def _images(n=4, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(shape, generator=g) * 2 - 1 for _ in range(n)]


def _arrows(ax, gid):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_gid() == gid]


def _texts(ax, gid):
    return sorted((t for t in ax.texts if t.get_gid() == gid), key=lambda t: t.get_position()[0])


def _curve(arrow):
    """(tail, control point, tip) of an arc3 arrow's quadratic Bezier, in data coordinates."""
    path = arrow.get_path()  # the curve (MOVETO, CURVE3, CURVE3), then the head
    assert path.codes[:3].tolist() == [path.MOVETO, path.CURVE3, path.CURVE3]
    return path.vertices[:3]


def _all_figures():
    yield "markov", markov_chain_diagram()
    yield "markov+images", markov_chain_diagram(dict(zip(CHAIN_NODES, _images())))
    for n in range(2, 7):
        yield f"ddim{n}", ddim_vs_ddpm_diagram(n)


# -- DDPM's Markov chain ------------------------------------------------------------------------
@pytest.mark.parametrize("with_images", [False, True])
def test_markov_chain_nodes_run_from_x_T_on_the_left_to_x_0_on_the_right(with_images):
    fig = markov_chain_diagram(_images() if with_images else None)
    (ax,) = fig.axes
    assert [t.get_text() for t in _texts(ax, "node")] == MARKOV_LABELS


def test_markov_chain_has_both_arrows_per_step_each_kind_labelled_once():
    (ax,) = markov_chain_diagram().axes
    reverse, forward = _arrows(ax, "reverse"), _arrows(ax, "forward")
    assert len(reverse) == len(forward) == len(MARKOV_LABELS) - 1  # one of each between neighbours
    for arrow in reverse:  # p_θ(x_{t-1} | x_t): x_t -> x_{t-1}, left to right, solid, above the chain
        tail, control, tip = _curve(arrow)
        assert tail[0] < tip[0] and control[1] > max(tail[1], tip[1]) and arrow.get_linestyle() == "-"
    for arrow in forward:  # q(x_t | x_{t-1}): right to left, dashed, below the chain
        tail, control, tip = _curve(arrow)
        assert tail[0] > tip[0] and control[1] < min(tail[1], tip[1]) and arrow.get_linestyle() != "-"
    gaps = sorted((min(_curve(a)[[0, 2], 0]), max(_curve(a)[[0, 2], 0])) for a in reverse)
    assert all(right <= left for (_, right), (left, _) in zip(gaps, gaps[1:]))  # one arc per gap, in a row
    labels = [t.get_text() for t in _texts(ax, "label")]
    assert sorted(labels) == sorted([r"$p_\theta(\mathbf{x}_{t-1}\mid\mathbf{x}_t)$",
                                     r"$q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$"])
    p_label, q_label = sorted(_texts(ax, "label"), key=lambda t: -t.get_position()[1])
    assert "p_" in p_label.get_text() and p_label.get_position()[1] > 0 > q_label.get_position()[1]


@pytest.mark.parametrize("make", [lambda imgs: dict(zip(CHAIN_NODES, imgs)), list, lambda imgs: torch.stack(imgs),
                                  lambda imgs: [i.numpy()[0] for i in imgs]],
                         ids=["dict", "list", "batch", "numpy-HW"])
def test_markov_chain_draws_each_image_in_its_node(make):
    imgs = _images()
    (ax,) = markov_chain_diagram(make(imgs)).axes
    drawn = sorted((a for a in ax.get_children() if isinstance(a, AxesImage)), key=lambda a: a.get_extent()[0])
    assert len(drawn) == 4 and len(ax.images) == 4
    node_x = [t.get_position()[0] for t in _texts(ax, "node") if "cdots" not in t.get_text()]
    for im, img, x in zip(drawn, imgs, node_x):  # x_T, x_t, x_{t-1}, x_0 left to right, each centred on its node
        np.testing.assert_allclose(im.get_array(), img[0].numpy().astype(np.float64), rtol=1e-6)
        left, right, _, _ = im.get_extent()
        assert (left + right) / 2 == pytest.approx(x)
        assert im.get_clim() == (-1.0, 1.0) and im.get_interpolation() == "nearest" and im.get_cmap().name == "gray"
    assert not markov_chain_diagram().axes[0].images


def test_markov_chain_accepts_noisy_images_beyond_the_data_range():
    noisy = [img * 3.0 for img in _images()]  # x_T ~ N(0, I) exceeds [-1, 1]: drawn clipped, not refused
    assert len(markov_chain_diagram(noisy).axes[0].images) == 4


@pytest.mark.parametrize("images, error, match", [
    ({"x_T": 0, "x_t": 0, "x_0": 0}, ValueError, "exactly the keys"),
    (_images(3), ValueError, "needs 4 images"),
    (_images(shape=(3, 8, 8)), ValueError, r"\(H, W\) or \(1, H, W\)"),
    (_images(shape=(8,)), ValueError, r"\(H, W\) or \(1, H, W\)"),
    ([img * 127.5 + 127.5 for img in _images()], ValueError, "0..255"),
    ([torch.full((8, 8), float("nan"))] * 4, ValueError, "NaN"),
    (_images(3) + [torch.zeros(6, 6)], ValueError, "one shape"),
    ("x_T", TypeError, "dict keyed by"),
    (5, TypeError, "dict keyed by"),
], ids=["keys", "count", "rgb", "1d", "pixels", "nan", "shapes", "str", "int"])
def test_markov_chain_rejects_bad_images(images, error, match):
    with pytest.raises(error, match=match):
        markov_chain_diagram(images)


# -- DDIM's non-Markovian forward process -------------------------------------------------------
@pytest.mark.parametrize("num_steps", [2, 3, 4, 6])
def test_ddim_panels_have_the_chain_and_ddim_adds_one_x0_arrow_per_t_from_2(num_steps):
    fig = ddim_vs_ddpm_diagram(num_steps)
    left, right = fig.axes
    nodes = [rf"$\mathbf{{x}}_{{{t}}}$" for t in range(num_steps + 1)]
    for ax in (left, right):
        assert [t.get_text() for t in _texts(ax, "node")] == nodes
        assert len(_arrows(ax, "forward")) == num_steps  # x_{t-1} -> x_t between neighbours
        assert not _arrows(ax, "reverse")
    assert not _arrows(left, "from_x0")  # DDPM: Markovian
    from_x0 = sorted(_arrows(right, "from_x0"), key=lambda a: _curve(a)[2, 0])
    assert len(from_x0) == num_steps - 1
    centres = [t.get_position()[0] for t in _texts(right, "node")]
    spacing = centres[1] - centres[0]
    for t, arrow in zip(range(2, num_steps + 1), from_x0):
        tail, control, tip = _curve(arrow)
        assert abs(tail[0] - centres[0]) < spacing / 2  # leaves x_0 ...
        assert abs(tip[0] - centres[t]) < spacing / 2 and min(tail[1], tip[1]) > 0  # ... for x_t, over the chain
        assert control[1] > max(tail[1], tip[1])
    heights = [_curve(a)[1, 1] for a in from_x0]
    assert heights == sorted(heights) and len(set(heights)) == len(heights)  # nested arcs, larger t higher


def test_ddim_titles_name_the_processes_and_the_shared_marginals_are_written_under_each():
    fig = ddim_vs_ddpm_diagram()
    left, right = fig.axes
    assert left.get_title() == "DDPM: Markovian forward process"
    assert right.get_title() == "DDIM: non-Markovian forward process"
    for ax, q in ((left, "q("), (right, r"q_\sigma(")):
        (shared,) = _texts(ax, "shared")
        text = shared.get_text()
        assert q in text and r"\sqrt{\bar\alpha_t}" in text and r"(1-\bar\alpha_t)\mathbf{I}" in text
        assert shared.get_position()[1] < 0  # under the chain
    ddim_label = r"$q_\sigma(\mathbf{x}_t\mid\mathbf{x}_{t-1},\mathbf{x}_0)$"
    assert [t.get_text() for t in _texts(right, "label")] == [ddim_label]
    assert [t.get_text() for t in _texts(left, "label")] == [r"$q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$"]
    assert "same training objective" in fig.get_supxlabel()


@pytest.mark.parametrize("num_steps, error", [(1, ValueError), (7, ValueError), (3.0, TypeError), (True, TypeError)])
def test_ddim_rejects_bad_num_steps(num_steps, error):
    with pytest.raises(error, match="num_steps"):
        ddim_vs_ddpm_diagram(num_steps)


# -- both: readable, unmanaged, nothing overlaps ------------------------------------------------
@pytest.mark.parametrize("name, fig", list(_all_figures()), ids=lambda v: v if isinstance(v, str) else "")
def test_text_is_readable_inside_the_figure_and_no_two_texts_overlap(name, fig):
    fig.draw_without_rendering()
    texts = [t for ax in fig.axes for t in ax.texts] + [t for ax in fig.axes for t in (ax.title,) if t.get_text()]
    texts += [fig._supxlabel] if fig._supxlabel is not None else []
    assert all(t.get_fontsize() >= 9 for t in texts)
    boxes = [t.get_window_extent() for t in texts]
    page = fig.bbox
    for t, b in zip(texts, boxes):
        assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1, t.get_text()
    for (t1, b1), (t2, b2) in combinations(zip(texts, boxes), 2):
        assert not b1.overlaps(b2), f"{name}: {t1.get_text()!r} overlaps {t2.get_text()!r}"
    nodes = [p for ax in fig.axes for p in ax.patches if not isinstance(p, FancyArrowPatch)]
    for t in texts:  # arrow labels and notes stay off the nodes
        if t.get_gid() in ("label", "shared"):
            assert not any(t.get_window_extent().overlaps(p.get_window_extent()) for p in nodes), t.get_text()


def test_figures_are_new_unmanaged_or_the_given_one():
    for fig in (markov_chain_diagram(), ddim_vs_ddpm_diagram()):
        assert isinstance(fig, Figure) and fig.canvas.manager is None
        width, height = fig.get_size_inches()
        assert width == pytest.approx(8.0) and 1.2 <= height <= 3.5
        fig.savefig(io.BytesIO(), format="png", dpi=50)
    given = Figure()
    assert markov_chain_diagram(fig=given) is given and len(given.axes) == 1
    given = Figure()
    assert ddim_vs_ddpm_diagram(fig=given) is given and len(given.axes) == 2
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        markov_chain_diagram(fig="figure")
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        ddim_vs_ddpm_diagram(fig=object())
