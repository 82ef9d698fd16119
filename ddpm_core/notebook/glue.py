"""Computed numbers in the chapters' prose (glue, scientific notation) and where a chapter runs (every chapter)."""

from __future__ import annotations

import sys

import torch

from .._checks import check_int


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def glue(name: str, value, display: bool = False):
    """Store ``value`` under ``name`` so the book's prose can show it with ``{glue:text}`name```.

    Uses MyST-NB's ``glue`` when it is installed (the book build); elsewhere (Colab, a bare
    kernel) the value is only displayed when ``display`` is True. Returns ``value``.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:  # not building the book: nothing to store
        if display:
            from IPython.display import display as _display
            _display(value)
        return value
    _glue(name, value, display=display)
    return value


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci_notation(x: float, digits: int = 2, *, latex: bool = False) -> str:
    r"""``x`` in scientific notation with ``digits`` significant digits, for prose and labels.

    >>> sci_notation(4.04e-05)
    '4.0 × 10⁻⁵'
    >>> sci_notation(7.8e-05, latex=True)
    '7.8\\cdot 10^{-5}'

    A mantissa of exactly 1 is dropped in LaTeX (``10^{-4}``), kept in text (``1.0 × 10⁻⁴``).
    Wrap the LaTeX form in ``$...$`` (e.g. ``IPython.display.Markdown``) to glue it.
    """
    check_int("digits", digits, 1)
    mantissa, exponent = f"{float(x):.{digits - 1}e}".split("e")
    if latex:
        power = f"10^{{{int(exponent)}}}"
        return power if float(mantissa) == 1 else f"{mantissa}\\cdot {power}"
    return f"{mantissa} × 10{str(int(exponent)).translate(SUPERSCRIPT)}"


def device_note(device: torch.device) -> str:
    """One line saying which device the chapter runs on and, without a GPU, how to get one in Colab."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"Running on GPU: {torch.cuda.get_device_name(device)}."
    hint = (" In Colab, Runtime > Change runtime type > T4 GPU makes the slow cells faster."
            if in_colab() else " Every cell of this chapter runs on a CPU in a few minutes.")
    return f"Running on {device.type.upper()}.{hint}"
