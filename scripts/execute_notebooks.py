#!/usr/bin/env python
"""Execute the chapter notebooks in place, storing outputs and widget state, for the book build.

    python scripts/execute_notebooks.py            # every chapters/*.ipynb, in order
    python scripts/execute_notebooks.py 01 06      # chapters whose name starts with 01 or 06
    python scripts/execute_notebooks.py path/to/notebook.ipynb

Each notebook runs top to bottom with nbclient in a kernel of *this* Python environment (run the
script with the venv's python, as `make execute` does), with the notebook's folder as the working
directory. nbclient stores the widget state in the notebook's metadata, which is what lets the
static book show working sliders; the book build (execute_notebooks: "off") renders the stored
outputs. A failing cell stops the run: the notebook on disk is left as it was, the error is
printed, and the script exits with status 1. The wall time of each chapter is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
CELL_TIMEOUT_S = 3600  # per cell; the slowest planned cell (training) takes ~10 minutes on CPU


def find_notebooks(selectors: list[str]) -> list[Path]:
    """Notebooks to run: all chapters, or those named by path or by a prefix of their name."""
    chapters = sorted(p for p in CHAPTERS.glob("*.ipynb") if not p.name.startswith("."))
    if not selectors:
        return chapters
    chosen: list[Path] = []
    for sel in selectors:
        path = Path(sel)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path.resolve())
            continue
        matches = [p for p in chapters if p.stem.startswith(sel) or p.stem == Path(sel).stem]
        if not matches:
            names = ", ".join(p.stem for p in chapters) or "none yet"
            raise SystemExit(f"execute_notebooks: no chapter matches {sel!r} (chapters: {names})")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def current_env_kernel_manager():
    """A kernel manager whose python3 kernel is this interpreter, whatever kernelspecs are installed."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvKernelSpecManager())


def execute(path: Path, timeout: int) -> float:
    """Run one notebook in place; return its wall time in seconds. Raises on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        km=current_env_kernel_manager(),
        timeout=timeout,
        allow_errors=False,  # a failing cell fails the run (cells tagged raises-exception may fail)
        store_widget_state=True,  # what makes sliders work in the static HTML
        record_timing=False,  # no timestamps in the notebook: smaller, quieter diffs
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no kernel start/stop chatter on stderr
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:  # nbclient leaves a kernel it did not start (we pass km) running: stop it here
        if client.km is not None and client.km.has_kernel:
            client.km.shutdown_kernel(now=True)
    elapsed = time.perf_counter() - start
    nb.metadata.pop("execution", None)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter name prefixes (01, 06_training) or notebook paths")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds per cell (default %(default)s)")
    args = parser.parse_args(argv)

    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebooks = find_notebooks(args.chapters)
    if not notebooks:
        print("execute_notebooks: no notebooks in chapters/ yet, nothing to execute")
        return 0
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silence a debugger warning
    total = 0.0
    for path in notebooks:
        name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"executing {name} ...", flush=True)
        try:
            elapsed = execute(path, args.timeout)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            print(f"FAILED {name}: {type(err).__name__}; the notebook on disk was not changed.\n{err}",
                  file=sys.stderr)
            return 1
        total += elapsed
        print(f"  {name}: {elapsed:7.1f} s", flush=True)
    print(f"executed {len(notebooks)} notebook(s) in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
