"""EMA: the update rule, its warmup, copy_to and state_dict."""

import pytest
import torch
from torch import nn

from ddpm_core.model.ema import EMA


def _linear(value: float) -> nn.Linear:
    m = nn.Linear(2, 1)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)
    return m


def test_update_is_the_moving_average():
    model = _linear(0.0)
    ema = EMA(model, decay=0.9)
    expected = 0.0
    for value in (1.0, 2.0, -1.0):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * value
    for p in ema.model.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected))
    assert ema.num_updates == 3


def test_warmup_decay():
    ema = EMA(_linear(0.0), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(2 / 11)  # (1 + n) / (10 + n) at n = 1
    model = _linear(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, torch.full((1, 2), 9 / 11))
    ema.num_updates = 10_000
    assert ema.current_decay() == 0.999


def test_ema_copy_is_frozen_and_independent():
    model = _linear(1.0)
    ema = EMA(model, decay=0.5)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert torch.all(ema.model.weight == 1.0)


def test_copy_to_and_state_dict_round_trip():
    model = _linear(0.0)
    ema = EMA(model, decay=0.5)
    ema.update(_linear(2.0))
    target = _linear(7.0)
    ema.copy_to(target)
    torch.testing.assert_close(target.weight, torch.ones(1, 2))
    other = EMA(_linear(5.0), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5 and other.num_updates == 1
    torch.testing.assert_close(other.model.weight, ema.model.weight)


def test_bad_decay_raises():
    with pytest.raises(ValueError, match="decay"):
        EMA(_linear(0.0), decay=1.0)
    with pytest.raises(TypeError, match="model"):
        EMA("not a model")
