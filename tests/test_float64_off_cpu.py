"""No float64 on an accelerator: what runs on `device` must also run on Apple's MPS.

MPS has no float64 (``x.double()`` on an MPS tensor raises), so the package's float64 work goes
through the CPU explicitly. This machine has no MPS, so the tests stand one in: the ``meta``
device (shapes and dtypes, no data) plays the accelerator, and a ``TorchFunctionMode`` fails
every torch call that makes or takes a float64 tensor there. Copies from it to the CPU give
zeros, and reading a value back gives 0 or True: these tests check where the float64 work
runs, not what it computes (the other tests do that on the CPU).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import ddpm_core as dc
from ddpm_core.model import UNetConfig

FAKE = torch.device("meta")  # the stand-in accelerator


class NoFloat64OffCPU(TorchFunctionMode):
    """Fail on float64 off the CPU; let meta -> CPU copies and value reads through as zeros."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves = tree_flatten((args, kwargs))[0]
        tensors = [a for a in leaves if isinstance(a, Tensor)]
        on_fake = [a for a in tensors if a.device.type == "meta"]
        name = getattr(func, "__name__", str(func))
        if on_fake:
            src = on_fake[0]
            if func is Tensor.cpu or (func is Tensor.to and any(_is_cpu(a) for a in leaves[1:])):
                dtype = next((a for a in leaves[1:] if isinstance(a, torch.dtype)), src.dtype)
                return torch.zeros(src.shape, dtype=dtype, requires_grad=src.requires_grad)
            if func is Tensor.double or torch.float64 in leaves or any(a.dtype == torch.float64 for a in on_fake):
                raise AssertionError(f"float64 on the accelerator: {name} on a meta tensor")
            if func in (Tensor.item, Tensor.__float__):
                return 0.0
            if func in (Tensor.__bool__,):
                return True
            if func is Tensor.tolist:
                return torch.zeros(src.shape, dtype=src.dtype).tolist()
        out = func(*args, **kwargs)
        for a in tree_flatten(out)[0]:
            if isinstance(a, Tensor) and a.device.type == "meta" and a.dtype == torch.float64:
                raise AssertionError(f"float64 on the accelerator: {name} returned a float64 meta tensor")
        return out


def _is_cpu(a) -> bool:
    return (isinstance(a, torch.device) and a.type == "cpu") or a == "cpu"


def test_the_mode_catches_float64_on_the_accelerator():
    x = torch.zeros(4, 2, device=FAKE)
    with NoFloat64OffCPU():
        with pytest.raises(AssertionError, match="float64 on the accelerator"):
            x.double()
        with pytest.raises(AssertionError, match="float64 on the accelerator"):
            torch.zeros(3, dtype=torch.float64, device=FAKE)
        with pytest.raises(AssertionError, match="float64 on the accelerator"):
            x.to(torch.float64)
        assert x.to("cpu", torch.float64).dtype == torch.float64  # the allowed route
        assert (x * 2).device == FAKE


def test_wide_float_is_float32_where_float64_is_missing():
    assert dc.wide_float("cpu") == torch.float64
    assert dc.wide_float("mps") == torch.float32 and dc.wide_float(FAKE) == torch.float32


@pytest.mark.parametrize("method", ["log_prob", "score", "score_t", "eps_star", "x0_star"])
def test_gaussian_mixture_runs_its_float64_math_on_the_cpu(method):
    gm = dc.GaussianMixture2D.ring()
    x = torch.zeros(5, 2, device=FAKE)
    args = (x,) if method in ("log_prob", "score") else (x, 0.5)
    with NoFloat64OffCPU():
        out = getattr(gm, method)(*args)
    assert out.device == FAKE and out.dtype == torch.float32  # back on the device, in x's dtype


def test_training_keeps_its_loss_sums_in_float32_on_an_accelerator(monkeypatch):
    autocast = torch.autocast  # which has no "meta" device type: stand in a disabled one
    monkeypatch.setattr(torch, "autocast", lambda device_type, **kw: autocast("cpu", enabled=False))
    x0 = torch.zeros(16, 1, 8, 8)
    config = dc.TrainConfig(num_train_steps=3, batch_size=8, warmup_steps=1, log_every=2,
                            num_t_buckets=2, checkpoint_every=0)
    tiny = UNetConfig(base_channels=8, channel_mults=(1,), norm_groups=4)
    with NoFloat64OffCPU():
        result = dc.train(config, tiny, data=(x0, torch.zeros(16, dtype=torch.long)), device=FAKE,
                          progress=False)
    assert len(result.history.loss) == 3
