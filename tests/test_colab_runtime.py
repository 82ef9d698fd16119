"""Every Colab edition runs top to bottom on Colab's widget stack, and every slider moves its picture.

Google Colab ships ipywidgets 7.7.1 and IPython 7.34 (kernel: ipykernel 6.17, traitlets 5.7) with
its own torch; ipywidgets 7 has no ``Stack``, so ``dc.frame_slider`` falls back to a kernel-side
``observe`` that swaps one ``Image``. Here each edition notebook (``_build/html/colab/*.ipynb``,
written by ``make build``) is executed once, in a kernel whose PYTHONPATH starts with that stack
(``scripts/colab_runtime.sh`` installs it into ``.build/colab-runtime/site``; this test runs the
script when the folder is missing or stale). A cell appended to the copy it runs then checks, in
the same kernel, that the versions are Colab's and moves every slider the notebook made to each
of its other positions, recording whether the picture shown (the ``Image`` beside it) changed.

The test fails, never skips, when the stack cannot be installed or a notebook is missing. One
execution per chapter, torch on one thread, as `make execute` runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("DDPM_BOOK_ROOT", REPO))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
EDITION_DIR = ROOT / "_build" / "html" / CONFIG["launch_buttons"].get("colab_edition_dir", "colab")
RUNTIME = REPO / ".build" / "colab-runtime" / "site"
COLAB_STACK = {"ipywidgets": "7.7.1", "IPython": "7.34.0"}
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = [Path(f).name for f in re.findall(r"\bchapters/[\w.-]+", yaml.safe_dump(TOC))]
CELL_TIMEOUT_S = 1800
MARKER = "COLAB-RUNTIME-REPORT "

# Appended to the executed copy: runs in the notebook's own kernel after its last cell.
PROBE = r'''
import json as _json, sys as _sys
import IPython as _IPython, ipywidgets as _w
import ddpm_core as _dc

_report = {"ipywidgets": _w.__version__, "IPython": _IPython.__version__,
           "has_stack": _dc.notebook.sliders.has_stack(), "google.colab": "google.colab" in _sys.modules,
           "sliders": []}
_live = list(_w.Widget.widgets.values())  # every widget the notebook created and did not close
for _s in [w for w in _live if isinstance(w, (_w.SelectionSlider, _w.IntSlider, _w.FloatSlider))]:
    _boxes = [b for b in _live if isinstance(b, _w.Box) and _s in b.children]
    _images = [c for b in _boxes for c in b.children if isinstance(c, _w.Image)]
    _entry = {"description": _s.description, "options": len(getattr(_s, "options", ())),
              "images": len(_images), "moves": []}
    if len(_images) == 1 and _entry["options"] > 1:
        _img, _start = _images[0], _s.index
        for _k in [k for k in range(len(_s.options)) if k != _start] + [_start]:
            _before = bytes(_img.value)
            _s.index = _k                   # what dragging the slider in Colab does, from the kernel
            _entry["moves"].append([_k, bytes(_img.value) != _before])
        _entry["back_to_start"] = _s.index == _start
    _report["sliders"].append(_entry)
print("COLAB-RUNTIME-REPORT " + _json.dumps(_report))
'''


@pytest.fixture(scope="session")
def colab_runtime() -> Path:
    """The folder holding Colab's ipywidgets/IPython stack (installed here if need be)."""
    result = subprocess.run(["bash", str(REPO / "scripts" / "colab_runtime.sh"), str(RUNTIME)],
                            cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, PY=sys.executable))
    if result.returncode != 0:
        pytest.fail(
            "could not set up Colab's runtime (ipywidgets 7.7.1, IPython 7.34) with "
            f"scripts/colab_runtime.sh:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    return RUNTIME


def colab_kernel_manager(site: Path):
    """A KernelManager for this interpreter with `site` first on the kernel's PYTHONPATH only."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    env = {
        "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": "1",  # as `make execute`: the chapters' numbers were produced this way
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }

    class ColabSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(
                argv=[sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f",
                      "{connection_file}"],
                display_name="Python 3 (Colab's widget stack)", language="python", env=env)

    return KernelManager(kernel_name="python3", kernel_spec_manager=ColabSpecManager())


@pytest.mark.parametrize("name", CHAPTERS)
def test_edition_runs_on_colabs_stack_and_every_slider_moves(name, colab_runtime, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = EDITION_DIR / f"{name}.ipynb"
    assert path.exists(), f"no Colab edition {path}: build the book first (`make build`)"
    nb = nbformat.read(path, as_version=4)
    made_sliders = sum(bool(re.search(r"\b(frame_slider|figure_slider)\(", c.source))
                       for c in nb.cells if c.cell_type == "code"
                       and "remove-output" not in c.metadata.get("tags", []))
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        nb, km=colab_kernel_manager(colab_runtime), timeout=CELL_TIMEOUT_S, allow_errors=False,
        record_timing=False, resources={"metadata": {"path": str(tmp_path)}},  # like Colab's /content
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
    )
    try:
        client.execute(cleanup_kc=True)  # with a km of ours, nbclient would leave the kernel running
    except CellExecutionError as err:
        pytest.fail(f"{name} fails on Colab's stack (ipywidgets 7.7.1, IPython 7.34):\n{err}"[:6000],
                    pytrace=False)
    finally:
        if client.km is not None and client.km.has_kernel:
            client.km.shutdown_kernel(now=True)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next((ln for ln in text.splitlines() if ln.startswith(MARKER)), None)
    assert line, f"{name}: the slider probe printed no report: {nb.cells[-1].outputs}"
    report = json.loads(line.removeprefix(MARKER))

    assert {k: report[k] for k in COLAB_STACK} == COLAB_STACK, f"{name}: not Colab's stack: {report}"
    assert not report["has_stack"], f"{name}: ipywidgets 7 has no Stack, yet the slider helper found one"
    assert not report["google.colab"], "the test must not pretend to be Colab (it would pip install)"
    sliders = report["sliders"]
    assert len(sliders) >= made_sliders, (
        f"{name}: {made_sliders} cells make sliders, but only {len(sliders)} sliders are alive"
    )
    for s in sliders:
        where = f"{name}: slider {s['description']!r} ({s['options']} positions)"
        assert s["images"] == 1, f"{where}: expected one Image beside it (the ipywidgets 7 fallback), got {s['images']}"
        assert s["moves"] and all(changed for _, changed in s["moves"]), (
            f"{where}: moving it from the kernel left the picture unchanged at positions "
            f"{[k for k, changed in s['moves'] if not changed]}"
        )
        assert s["back_to_start"], f"{where}: did not return to its first position"
