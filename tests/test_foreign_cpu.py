"""The "foreign CPU" of `make test` really changes the kernels torch runs.

`make test` runs strict nbval a second time with the variables of the Makefile's FOREIGN_CPU,
so that the stored outputs are checked against another CPU's float rounding. That is only a
check if each variable takes effect: ATen's own kernels drop to no SIMD, oneDNN (convolutions)
and MKL (matrix products) to SSE4.x. Each is read back from torch and from the libraries'
verbose logs in a fresh process (they are read when torch loads).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
PROBE = """
import torch
print("capability", torch.backends.cpu.get_cpu_capability())
torch.nn.Conv2d(3, 8, 3)(torch.randn(2, 3, 16, 16))
a = torch.randn(64, 64)
a @ a
"""


def foreign_cpu() -> dict[str, str]:
    """The FOREIGN_CPU variables, as the Makefile sets them."""
    line = re.search(r"^FOREIGN_CPU := (.*)$", MAKEFILE.read_text(), re.MULTILINE)
    assert line, "the Makefile defines no FOREIGN_CPU"
    return dict(item.split("=", 1) for item in shlex.split(line[1]))


def probe(extra: dict[str, str]) -> str:
    return _probe(tuple(sorted(extra.items())))


@functools.lru_cache(maxsize=None)
def _probe(extra: tuple) -> str:
    extra = dict(extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1", **extra}
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"):
        if name not in extra:
            env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="the instruction sets named in FOREIGN_CPU are x86's")


def test_the_makefile_names_the_three_variables():
    assert set(foreign_cpu()) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"}


def test_aten_capability_drops_to_default():
    native = probe({})
    held = probe({"ATEN_CPU_CAPABILITY": foreign_cpu()["ATEN_CPU_CAPABILITY"]})
    assert "capability DEFAULT" in held
    assert "capability DEFAULT" not in native  # this CPU has AVX2 or AVX-512, so it was a change


def test_onednn_convolutions_run_at_sse41():
    held = probe({"ONEDNN_MAX_CPU_ISA": foreign_cpu()["ONEDNN_MAX_CPU_ISA"]})
    assert re.search(r"onednn_verbose.*isa:Intel SSE4\.1", held), held[:2000]
    assert re.search(r"onednn_verbose.*,convolution,jit:sse41", held), held[:2000]
    native = probe({})
    assert not re.search(r",convolution,jit:sse41", native)


def _mkl_banner(output: str) -> str:
    match = re.search(r"MKL_VERBOSE oneMKL[^\n]*", output)
    assert match, output[:2000]
    return match.group(0)


def test_mkl_matmuls_run_at_sse42():
    held = _mkl_banner(probe({"MKL_ENABLE_INSTRUCTIONS": foreign_cpu()["MKL_ENABLE_INSTRUCTIONS"]}))
    native = _mkl_banner(probe({}))
    if "Intel(R) Architecture processors" in native:  # not Intel (e.g. AMD EPYC): MKL's generic path, whatever the variable says
        assert "Intel(R) Architecture processors" in held, (native, held)
    else:  # an Intel CPU: MKL names the instruction set it dispatches to (AVX2, AVX-512, AMX, ...)
        assert "(Intel(R) SSE4.2) enabled processors" in held, held
        assert "(Intel(R) SSE4.2)" not in native, native
