"""Checkpoints: atomic save, round trip, sha256 and corruption errors."""

import os

import pytest
import torch

from ddpm_core.weights.checkpoint import (CheckpointError, file_sha256, load_checkpoint, rng_state, save_checkpoint,
                                  set_rng_state)
from ddpm_core.model.ema import EMA
from ddpm_core.model import UNet, UNetConfig


@pytest.fixture()
def parts():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).pow(2).sum().backward()
    opt.step()
    return model, EMA(model, 0.9), opt


def test_round_trip(tmp_path, parts):
    model, ema, opt = parts
    g = torch.Generator().manual_seed(3)
    sha = save_checkpoint(tmp_path / "c.pt", model=model, ema=ema, optimizer=opt, step=7,
                          configs={"unet": model.config.to_dict()}, rng=rng_state(g), history={"loss": [1.0]})
    assert sha == file_sha256(tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt", sha256=sha)
    assert state["step"] == 7 and state["history"] == {"loss": [1.0]}
    assert UNetConfig.from_dict(state["configs"]["unet"]) == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(state["model"][k], v)
    g2 = torch.Generator()
    set_rng_state(state["rng"], g2)
    assert torch.equal(torch.rand(3, generator=g2), torch.rand(3, generator=g))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_save_is_atomic(tmp_path, parts, monkeypatch):
    model, _, _ = parts
    path = tmp_path / "c.pt"
    sha = save_checkpoint(path, model=model, step=1)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, step=2)
    assert file_sha256(path) == sha  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_corrupt_and_truncated_files_raise(tmp_path, parts):
    model, _, _ = parts
    path = tmp_path / "c.pt"
    save_checkpoint(path, model=model)
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    for name in ("truncated.pt", "garbage.pt"):
        with pytest.raises(CheckpointError, match="corrupt"):
            load_checkpoint(tmp_path / name)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a ddpm_core checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_sha256_mismatch_raises(tmp_path, parts):
    model, _, _ = parts
    path = tmp_path / "c.pt"
    sha = save_checkpoint(path, model=model)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(path, sha256=sha)
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(path, sha256="abc")
