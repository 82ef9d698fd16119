"""The book's matplotlib style: Okabe-Ito colours, grey images, sizes that keep pages small (every chapter).

Nothing happens on import: a chapter calls :func:`apply_book_style` in its first cell.
"""

from __future__ import annotations

__all__ = ["apply_book_style", "OKABE_ITO", "BOOK_RC"]

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


def apply_book_style() -> None:
    """Set the book's matplotlib style (fonts, grid, colour cycle, grey images). Call it once per chapter."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(BOOK_RC)
    mpl.rcParams["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))
