"""UNet: shapes for every supported size and channel count, conditioning, embedding, summary."""

import math

import pytest
import torch

from ddpm_core.model import SelfAttention, UNet, UNetConfig, count_flops, layer_summary, sinusoidal_embedding


@pytest.mark.parametrize("size", [8, 16, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_matches_input(size, channels):
    model = UNet(UNetConfig(in_channels=channels))
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([1, 1000]))
    assert out.shape == x.shape


@pytest.mark.parametrize("size", [8, 28, 32])
def test_three_levels_and_conditional(size):
    """28 → 14 → 7 exercises odd sizes on the way back up."""
    model = UNet(UNetConfig(in_channels=3, channel_mults=(1, 2, 2), num_classes=10))
    x = torch.randn(3, 3, size, size)
    t = torch.tensor([1, 500, 1000])
    assert model(x, t, torch.tensor([0, 9, 10])).shape == x.shape
    assert model(x, t).shape == x.shape  # y=None means the null label


def test_default_size_is_the_probe_model():
    n = sum(p.numel() for p in UNet().parameters())
    assert 0.6e6 < n < 0.7e6


def test_time_and_class_change_the_output():
    torch.manual_seed(0)
    model = UNet(UNetConfig(num_classes=10)).eval()
    for m in model.modules():  # zero-initialized convs make every block the identity: re-init them
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()
    x = torch.randn(1, 1, 8, 8)
    out = lambda t, y: model(x, torch.tensor([t]), torch.tensor([y]))  # noqa: E731
    assert not torch.allclose(out(1, 3), out(900, 3))
    assert not torch.allclose(out(500, 3), out(500, 10))


def test_bad_inputs_raise():
    model = UNet()
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(2, 3, 8, 8), t)
    with pytest.raises(ValueError, match="unconditional"):
        model(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="labels"):
        UNet(UNetConfig(num_classes=10))(x, t, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(base_channels=12)
    with pytest.raises(ValueError, match="dropout"):
        UNetConfig(dropout=1.5)


def test_sinusoidal_embedding():
    t = torch.tensor([0, 1, 1000])
    emb = sinusoidal_embedding(t, 32)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    assert emb[1, 0] == pytest.approx(math.sin(1.0))  # the fastest frequency is 1
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(t, 7)


def test_layer_summary(capsys):
    model = UNet()
    rows = layer_summary(model, (2, 1, 8, 8))
    assert "total" in capsys.readouterr().out
    assert rows[-1].output_shape == (2, 1, 8, 8)
    assert sum(r.num_params for r in rows) == sum(p.numel() for p in model.parameters())
    assert min(r.output_shape[-1] for r in rows if len(r.output_shape) == 4) == 4  # one downsampling


@pytest.mark.parametrize("size,heads", [(8, 1), (28, 2)])
def test_count_flops_equals_a_hand_count(size, heads):
    # Independent count: 2·(multiply-adds) of every Conv2d and Linear from forward hooks, plus
    # scaled-dot-product attention's two (HW × HW) products, 2 · 2·B·h·(HW)²·d.
    model = UNet(UNetConfig(attention_heads=heads))
    B, by_hand = 3, []

    def hook(m, inputs, out):
        if isinstance(m, torch.nn.Conv2d):
            by_hand.append(2 * out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            by_hand.append(2 * out.numel() * m.in_features)
        else:  # SelfAttention
            b, c, h, w = inputs[0].shape
            by_hand.append(2 * 2 * b * m.heads * (h * w) ** 2 * (c // m.heads))

    kinds = (torch.nn.Conv2d, torch.nn.Linear, SelfAttention)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    flops = count_flops(model, (B, 1, size, size))
    for h in handles:
        h.remove()
    assert flops == sum(by_hand)
    assert count_flops(model, (2 * B, 1, size, size)) == 2 * flops  # linear in the batch
    # a training step: backward costs about twice the forward (no input gradient for the first conv)
    assert 2.5 * flops < count_flops(model, (B, 1, size, size), backward=True) <= 3 * flops
    assert all(p.grad is None for p in model.parameters())  # the count leaves no gradients behind
    model.conv_in.weight.grad = torch.ones_like(model.conv_in.weight)  # ... and keeps the caller's
    count_flops(model, (B, 1, size, size), backward=True)
    assert torch.equal(model.conv_in.weight.grad, torch.ones_like(model.conv_in.weight))
