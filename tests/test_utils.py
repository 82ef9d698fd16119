"""Device, seeding, extract, and importing without side effects."""

import subprocess
import sys

import pytest
import torch

import ddpm_core as dc


def test_extract_broadcasts_over_any_rank():
    values = torch.arange(11, dtype=torch.float32)
    t = torch.tensor([0, 3, 10])
    for shape in [(3,), (3, 5), (3, 1, 8, 8)]:
        out = dc.extract(values, t, shape)
        assert out.shape == (3, *([1] * (len(shape) - 1)))
        assert out.flatten().tolist() == [0.0, 3.0, 10.0]


def test_default_device_and_randn():
    d = dc.default_device()
    assert d.type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        assert d.type in {"cpu", "mps"}
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    torch.testing.assert_close(dc.randn((2, 3), g1, "cpu"), dc.randn((2, 3), g2, "cpu"), rtol=0, atol=0)


def test_seed_everything_reproduces():
    dc.seed_everything(123)
    a = torch.rand(3)
    g = dc.seed_everything(123)
    torch.testing.assert_close(torch.rand(3), a, rtol=0, atol=0)
    assert isinstance(g, torch.Generator)
    with pytest.raises(TypeError, match="seed"):
        dc.seed_everything(1.5)


def test_import_changes_no_global_state():
    # Same RNG draws, plot style and warnings filters with and without importing the package.
    probe = (
        "import random, warnings, numpy as np, torch, matplotlib as mpl\n"
        "torch.manual_seed(5); random.seed(5); np.random.seed(5)\n"
        "IMPORT\n"
        "print(torch.rand(1).item(), random.random(), np.random.rand(), len(warnings.filters),\n"
        "      sorted((k, str(v)) for k, v in mpl.rcParams.items()) == sorted((k, str(v)) for k, v in mpl.rcParamsDefault.items()))\n"
    )
    run = lambda code: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)  # noqa: E731
    with_pkg = run(probe.replace("IMPORT", "import ddpm_core"))
    without = run(probe.replace("IMPORT", "pass"))
    assert with_pkg.returncode == 0, with_pkg.stderr
    assert with_pkg.stdout == without.stdout and with_pkg.stdout
