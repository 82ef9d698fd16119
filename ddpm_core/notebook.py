"""Small conveniences for the chapters: computed numbers in the prose, and where we are running."""

from __future__ import annotations

import sys

import torch


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


def device_note(device: torch.device) -> str:
    """One line saying which device the chapter runs on and, without a GPU, how to get one in Colab."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"Running on GPU: {torch.cuda.get_device_name(device)}."
    hint = (" In Colab, Runtime > Change runtime type > T4 GPU makes the slow cells faster."
            if in_colab() else " Every cell of this chapter runs on a CPU in a few minutes.")
    return f"Running on {device.type.upper()}.{hint}"
