"""Benchmark results that the chapters show, shipped with the package (chapter 6).

A study that takes longer than a chapter's few minutes runs as a script in ``benchmarks/``,
which writes its JSON into ``ddpm_core/results/``. The package ships those files, so a chapter
loads the same numbers in a clone, in a plain ``pip install`` and in Colab:

    sweep = dc.load_benchmark("lr_batch")   # benchmarks/bench_lr_batch.py
    sweep["command"]                        # the command that produced it
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def available_benchmarks() -> list[str]:
    """Names of the shipped benchmark results."""
    return sorted(p.stem for p in RESULTS_DIR.glob("*.json"))


def load_benchmark(name: str) -> dict:
    """The shipped result ``name`` (a dict, as the benchmark script wrote it)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped benchmark result {name!r}; available: {available_benchmarks()}")
    return json.loads(path.read_text())
