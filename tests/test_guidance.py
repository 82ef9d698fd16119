"""Classifier-free guidance: the formula [CFG eq. 6] and its use inside the samplers."""

import pytest
import torch

from ddpm_core.diffusion.guidance import guided
from ddpm_core.diffusion.sampling import ddim_sample
from ddpm_core.diffusion.schedule import NoiseSchedule
from ddpm_core.model import UNet, UNetConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = UNet(UNetConfig(base_channels=8, num_classes=10)).eval()
    for p in m.parameters():  # zero-initialized layers would make every output 0
        torch.nn.init.normal_(p, std=0.2)
    return m


def test_guided_formula(model):
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([10, 500, 999])
    y = torch.tensor([1, 2, 3])
    with torch.no_grad():
        eps_c, eps_u = model(x, t, y), model(x, t, torch.full_like(y, 10))
        torch.testing.assert_close(guided(model, y, 0.0)(x, t), eps_c)
        torch.testing.assert_close(guided(model, y, 2.5)(x, t), 3.5 * eps_c - 2.5 * eps_u, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(guided(model, 7, 1.0)(x, t),
                                   2 * model(x, t, torch.full_like(y, 7)) - eps_u, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(eps_c, eps_u)


def test_guided_model_runs_in_a_sampler(model):
    s = NoiseSchedule.linear()
    x0 = ddim_sample(guided(model, torch.arange(4), 3.0), s, (4, 1, 8, 8), num_sample_steps=3,
                     generator=torch.Generator().manual_seed(0), progress=False)
    assert x0.shape == (4, 1, 8, 8) and torch.isfinite(x0).all()


def test_guided_errors(model):
    with pytest.raises(ValueError, match="class-conditional"):
        guided(UNet(UNetConfig(base_channels=8)), 1, 1.0)
    with pytest.raises(ValueError, match="guidance_scale"):
        guided(model, 1, -1.0)
    with pytest.raises(ValueError, match="labels in 0..9"):
        guided(model, torch.tensor([10]), 1.0)
    with pytest.raises(ValueError, match="batch"):
        guided(model, torch.tensor([1, 2]), 1.0)(torch.randn(3, 1, 8, 8), torch.tensor([1, 1, 1]))
