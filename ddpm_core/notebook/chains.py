r"""Diffusion's graphical models as figures: DDPM's Markov chain (chapters 1 and 3) and DDIM's
non-Markovian forward process (chapter 7).

:func:`markov_chain_diagram` redraws Figure 2 of Ho et al. (2020): the chain
$\mathbf{x}_T \to \cdots \to \mathbf{x}_t \to \mathbf{x}_{t-1} \to \cdots \to \mathbf{x}_0$, the reverse
process $p_\theta(\mathbf{x}_{t-1}\mid\mathbf{x}_t)$ solid above it, the forward process
$q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$ dashed below it. :func:`ddim_vs_ddpm_diagram` redraws Figure 1 of
Song et al. (2021): DDPM's Markovian forward process next to DDIM's, where every $\mathbf{x}_t$
($t \ge 2$) also depends on $\mathbf{x}_0$, with the marginals both share. (Bib keys: ``ho2020ddpm``,
``song2021ddim``.)

Both draw plain matplotlib patches on an unmanaged ``Figure`` (or on ``fig``). The artists carry a
``gid`` so chapters and tests can find them: ``"node"`` for the node labels (and the ``⋯``),
``"reverse"`` for $p_\theta$ arrows, ``"forward"`` for $q$ arrows between neighbours and
``"from_x0"`` for DDIM's arrows $\mathbf{x}_0 \to \mathbf{x}_t$.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .._checks import check_int
from ..data.images import DATA_RANGE, _to_numpy
from .style import OKABE_ITO

__all__ = ["markov_chain_diagram", "ddim_vs_ddpm_diagram"]

REVERSE_COLOR = OKABE_ITO[0]  # blue: the learned reverse process p_θ
FORWARD_COLOR = OKABE_ITO[3]  # vermillion: the fixed forward process q
X0_COLOR = OKABE_ITO[2]  # bluish green: DDIM's extra dependence on x_0
NODE_EDGE = "0.15"
NODE_FONT, LABEL_FONT, NOTE_FONT = 13, 11, 10  # points; the smallest text is 10 pt
DOTS_FONT = 18
NODE_RADIUS = 0.42  # data units (both axes, equal aspect)
IMAGE_SIDE = 1.1  # data units: an image node is this wide and tall
CHAIN_NODES = ("x_T", "x_t", "x_{t-1}", "x_0")
"""The nodes of Ho et al.'s Figure 2, left to right: the keys (or order) of ``images``."""
MAX_ABS_PIXEL = 8.0  # a noisy x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε stays well inside; 0..255 pixels do not
MARKOV_LAYOUT = (("x_T", 0.0), (None, 2.0), ("x_t", 4.0), ("x_{t-1}", 6.6), (None, 8.6), ("x_0", 10.6))
"""(node key or None for ``⋯``, x position); the wider gap x_t → x_{t-1} carries the labels."""
MARKOV_BEND = 0.32  # arc3 bend of the chain's arcs: their height is this times the gap
DDIM_SPACING = 1.7  # data units between neighbouring nodes of the DDIM figure


def _math(key: str) -> str:
    """``"x_{t-1}"`` -> ``"$\\mathbf{x}_{t-1}$"``: a node's mathtext label."""
    name, sub = key.split("_", 1)
    return rf"$\mathbf{{{name}}}_{{{sub.strip('{}')}}}$"


def _figure(fig: Any, size: tuple[float, float]):
    """``fig`` after checking it is a Figure, or a new unmanaged one of ``size`` inches."""
    if fig is None:
        from matplotlib.figure import Figure

        return Figure(figsize=size, layout="constrained")
    if not hasattr(fig, "add_subplot"):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    return fig


def _blank(ax: Any, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    """An Axes for a diagram: equal aspect, no axis, fixed limits in data units."""
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.set_axis_off()


def _chain_images(images: Any) -> dict[str, np.ndarray]:
    """Check ``images`` (see :func:`markov_chain_diagram`) and return {node key: (H, W) array}."""
    if images is None:
        return {}
    if isinstance(images, Mapping):
        if set(images) != set(CHAIN_NODES):
            raise ValueError(f"images needs exactly the keys {list(CHAIN_NODES)}, got {sorted(map(str, images))}")
        items = [images[key] for key in CHAIN_NODES]
    elif isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"images must be a dict keyed by {list(CHAIN_NODES)} or a sequence of 4, "
                        f"got {type(images).__name__}")
    elif len(images) != len(CHAIN_NODES):
        raise ValueError(f"images needs {len(CHAIN_NODES)} images, for {list(CHAIN_NODES)}; got {len(images)}")
    else:
        items = list(images)
    out = {}
    for key, img in zip(CHAIN_NODES, items):
        arr = _to_numpy(img)  # raises on NaN or a non-array
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]  # (1, H, W) -> (H, W)
        if arr.ndim != 2 or 0 in arr.shape:
            raise ValueError(f"images[{key!r}] must be (H, W) or (1, H, W), got shape {tuple(np.shape(img))}")
        if np.abs(arr).max() > MAX_ABS_PIXEL:
            raise ValueError(f"images[{key!r}] has values up to {np.abs(arr).max():g}: expected data in "
                             f"[-1, 1] (or a noisy x_t), not 0..255 pixels")
        out[key] = arr
    if len({a.shape for a in out.values()}) > 1:
        raise ValueError(f"images must share one shape, got {[a.shape for a in out.values()]}")
    return out


def _node(ax: Any, x: float, label: str, image: np.ndarray | None = None):
    """Draw one node at (x, 0): a circle holding ``label``, or ``image`` framed with ``label`` under it."""
    from matplotlib.patches import Circle, FancyBboxPatch

    if image is None:
        patch = Circle((x, 0.0), NODE_RADIUS, facecolor="white", edgecolor=NODE_EDGE, lw=1.5, zorder=2)
        ax.add_patch(patch)
        ax.text(x, 0.0, label, ha="center", va="center", fontsize=NODE_FONT, zorder=3, gid="node")
        return patch
    h = IMAGE_SIDE / 2
    patch = FancyBboxPatch((x - h, -h), 2 * h, 2 * h, boxstyle="round,pad=0.05,rounding_size=0.08",
                           facecolor="white", edgecolor=NODE_EDGE, lw=1.5, zorder=2)
    ax.add_patch(patch)
    low, high = DATA_RANGE
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest",
              extent=(x - h, x + h, -h, h), zorder=3)
    ax.text(x, -h - 0.12, label, ha="center", va="top", fontsize=NODE_FONT, zorder=3, gid="node")
    return patch


def _arrow(ax: Any, a: tuple[float, float], b: tuple[float, float], *, bend: float, color: str,
           gid: str, dashed: bool = False, patch_a: Any = None, patch_b: Any = None,
           gaps: tuple[float, float] = (13.0, 13.0)):
    """Draw an arrow a -> b, bent as an arc whose height is ``bend`` times |b - a| / 2 (> 0: above).

    The arrow stops at the node patches (``patch_a``/``patch_b``); without one (the ``⋯``) it stops
    ``gaps`` points short of the point.
    """
    from matplotlib.patches import FancyArrowPatch

    rad = -bend if b[0] > a[0] else bend  # arc3 bends to the right of the travel direction for rad > 0
    arrow = FancyArrowPatch(a, b, patchA=patch_a, patchB=patch_b, connectionstyle=f"arc3,rad={rad:g}",
                            arrowstyle="-|>", mutation_scale=14, lw=1.6, color=color,
                            linestyle=(0, (4, 2.5)) if dashed else "-", zorder=1, gid=gid,
                            shrinkA=3 if patch_a is not None else gaps[0],
                            shrinkB=3 if patch_b is not None else gaps[1])
    ax.add_patch(arrow)
    return arrow


def _label(ax: Any, x: float, y: float, text: str, color: str, va: str) -> None:
    """Write an arrow's distribution, centred at (x, y), in the arrow's colour."""
    ax.text(x, y, text, ha="center", va=va, fontsize=LABEL_FONT, color=color, zorder=3, gid="label")


def markov_chain_diagram(images: Any = None, *, fig: Any = None):
    r"""DDPM's graphical model, Figure 2 of Ho et al. (2020), on ``fig`` or a new Figure; return it.

    Nodes $\mathbf{x}_T, \cdots, \mathbf{x}_t, \mathbf{x}_{t-1}, \cdots, \mathbf{x}_0$ run left to right.
    Solid arcs above are the reverse process $p_\theta(\mathbf{x}_{t-1}\mid\mathbf{x}_t)$, dashed arcs
    below the forward process $q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$; each is labelled once, at the
    middle step.

    Args:
        images: None (circles), or four images drawn as the nodes: a dict with the keys
            ``"x_T"``, ``"x_t"``, ``"x_{t-1}"``, ``"x_0"``, or a sequence (or a (4, 1, H, W) batch)
            in that order, left to right. Each is (H, W) or (1, H, W), a tensor or array in the data
            range [-1, 1]; a noisy $\mathbf{x}_t$ may exceed it and is clipped to black/white.
        fig: draw on this Figure; default a new, unmanaged one (8 inches wide).
    """
    pictures = _chain_images(images)
    peak = MARKOV_BEND * (MARKOV_LAYOUT[3][1] - MARKOV_LAYOUT[2][1]) / 2  # the labelled arcs' height
    above = max(peak, IMAGE_SIDE / 2 + 0.05 if pictures else 0.0) + 0.08  # p_θ's label: over arc and frames
    below = IMAGE_SIDE / 2 + 0.5 if pictures else peak + 0.08  # q's label: under arc, or the node labels
    xlim, ylim = (-0.85, MARKOV_LAYOUT[-1][1] + 0.85), (-below - 0.4, above + 0.38)
    fig = _figure(fig, (8.0, 8.0 * (ylim[1] - ylim[0]) / (xlim[1] - xlim[0]) + 0.15))
    ax = fig.add_subplot()
    points = []  # ((x, y), patch or None), left to right
    for key, x in MARKOV_LAYOUT:
        if key is None:
            ax.text(x, 0.0, r"$\cdots$", ha="center", va="center", fontsize=DOTS_FONT, gid="node")
            points.append(((x, 0.0), None))
        else:
            points.append(((x, 0.0), _node(ax, x, _math(key), pictures.get(key))))
    for (a, pa), (b, pb) in zip(points, points[1:]):
        _arrow(ax, a, b, bend=MARKOV_BEND, color=REVERSE_COLOR, gid="reverse", patch_a=pa, patch_b=pb)
        _arrow(ax, b, a, bend=-MARKOV_BEND, color=FORWARD_COLOR, gid="forward", dashed=True, patch_a=pb, patch_b=pa)
    x_mid = (MARKOV_LAYOUT[2][1] + MARKOV_LAYOUT[3][1]) / 2  # the gap x_t <-> x_{t-1}
    _label(ax, x_mid, above, r"$p_\theta(\mathbf{x}_{t-1}\mid\mathbf{x}_t)$", REVERSE_COLOR, "bottom")
    _label(ax, x_mid, -below, r"$q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$", FORWARD_COLOR, "top")
    _blank(ax, xlim, ylim)
    return fig


def _x0_arc_height(t: int) -> float:
    """Peak height of DDIM's arc x_0 -> x_t: over the nodes between, higher for larger t so the arcs nest."""
    return 0.8 + 0.4 * (t - 2)


def _x0_arrow(ax: Any, xs: list[float], t: int) -> None:
    """DDIM's arrow x_0 -> x_t, leaving x_0's circle higher up the larger t is, so no two arcs touch."""
    n = len(xs) - 1
    phi = np.deg2rad(35.0 + (55.0 * (t - 2) / (n - 2) if n > 2 else 10.0))  # exit angle on x_0's circle
    dx, dy = NODE_RADIUS * np.cos(phi), NODE_RADIUS * np.sin(phi)
    a, b = (xs[0] + dx, dy), (xs[t] - dx, dy)  # symmetric: the arc enters x_t at 180° - phi
    bend = 2 * (_x0_arc_height(t) - dy) / (b[0] - a[0])  # arc3: peak = chord height + bend * chord / 2
    _arrow(ax, a, b, bend=bend, color=X0_COLOR, gid="from_x0", dashed=True, gaps=(1.0, 3.0))


def _forward_chain(ax: Any, xs: list[float], title: str) -> list[Any]:
    """Nodes x_0..x_n at ``xs`` with a dashed forward arrow x_{t-1} -> x_t between neighbours."""
    patches = [_node(ax, x, _math(f"x_{t}")) for t, x in enumerate(xs)]
    for t in range(1, len(xs)):
        _arrow(ax, (xs[t - 1], 0.0), (xs[t], 0.0), bend=0.0, color=FORWARD_COLOR, gid="forward", dashed=True,
               patch_a=patches[t - 1], patch_b=patches[t])
    ax.set_title(title, fontsize=LABEL_FONT + 1)
    return patches


def _marginal_note(ax: Any, x: float, y: float, q: str) -> None:
    """Write the marginal both processes share [DDIM Lemma 1], with ``q`` as the panel names it."""
    normal = r"\mathcal{N}(\sqrt{\bar\alpha_t}\,\mathbf{x}_0,\,(1-\bar\alpha_t)\mathbf{I})"
    note = rf"same marginals: ${q}(\mathbf{{x}}_t\mid\mathbf{{x}}_0)={normal}$"
    ax.text(x, y, note, ha="center", va="top", fontsize=NOTE_FONT, gid="shared")


def ddim_vs_ddpm_diagram(num_steps: int = 3, *, fig: Any = None):
    r"""DDPM's and DDIM's forward processes side by side, Figure 1 of Song et al. (2021); return the Figure.

    Left, DDPM: $q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$ joins neighbours only (Markovian). Right, DDIM's
    $q_\sigma(\mathbf{x}_t\mid\mathbf{x}_{t-1},\mathbf{x}_0)$: every $\mathbf{x}_t$ with $t \ge 2$ has an
    arrow from $\mathbf{x}_{t-1}$ and one from $\mathbf{x}_0$ (non-Markovian; it follows by Bayes from
    $q_\sigma(\mathbf{x}_{t-1}\mid\mathbf{x}_t,\mathbf{x}_0)$ [DDIM §4.1, eqs. 6-8]). Under both, the marginals
    they share [DDIM Lemma 1], hence the same training objective.

    Args:
        num_steps: the last node, x_{num_steps}: an int in 2..6.
        fig: draw on this Figure; default a new, unmanaged one (8 inches wide and up).
    """
    num_steps = check_int("num_steps", num_steps, 2, 6)
    xs = [t * DDIM_SPACING for t in range(num_steps + 1)]
    top = _x0_arc_height(num_steps) + 0.45  # the highest arc, then its label
    xlim, ylim = (-0.6, xs[-1] + 0.6), (-0.95, max(top, 1.3))
    width = 8.0 + 0.9 * max(0, num_steps - 3)
    panel = (width - 0.6) / 2
    fig = _figure(fig, (width, panel * (ylim[1] - ylim[0]) / (xlim[1] - xlim[0]) + 0.9))
    left, right = fig.subplots(1, 2)
    _forward_chain(left, xs, "DDPM: Markovian forward process")
    mid = (num_steps - 1) // 2  # the label sits over the middle step
    _label(left, (xs[mid] + xs[mid + 1]) / 2, NODE_RADIUS + 0.1, r"$q(\mathbf{x}_t\mid\mathbf{x}_{t-1})$",
           FORWARD_COLOR, "bottom")
    _forward_chain(right, xs, "DDIM: non-Markovian forward process")
    for t in range(2, num_steps + 1):
        _x0_arrow(right, xs, t)
    _label(right, xs[-1] / 2, top - 0.38, r"$q_\sigma(\mathbf{x}_t\mid\mathbf{x}_{t-1},\mathbf{x}_0)$",
           X0_COLOR, "bottom")
    for ax, q in ((left, "q"), (right, r"q_\sigma")):
        _marginal_note(ax, xs[-1] / 2, -NODE_RADIUS - 0.15, q)
        _blank(ax, xlim, ylim)
    fig.supxlabel("Same marginals, hence the same training objective: one trained network serves both samplers.",
                  fontsize=NOTE_FONT)
    return fig
