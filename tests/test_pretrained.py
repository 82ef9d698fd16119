"""Shipped models: they load (sha256-verified) and their samples look like digits."""

import json
import shutil

import pytest
import torch

import ddpm_core.weights.pretrained as pretrained
from ddpm_core.weights.checkpoint import CheckpointError
from ddpm_core.diffusion.guidance import guided
from ddpm_core.evaluation import load_digits_classifier
from ddpm_core.diffusion.sampling import ddim_sample

N = 200  # samples per check; DDIM-20 keeps this to a few seconds


@pytest.fixture(scope="module")
def classifier():
    return load_digits_classifier()


def _confident(classifier, x, threshold=0.9):
    with torch.no_grad():
        p = torch.softmax(classifier(x), 1)
    return p.max(1).values >= threshold, p.argmax(1)


@pytest.mark.parametrize("name", ["digits", "digits-cond", "digits-vlb"])
def test_loads_with_its_record(name):
    p = pretrained.load_pretrained(name, device="cpu")
    assert not p.model.training
    assert p.image_shape == (1, 8, 8)
    assert p.schedule.num_steps == 1000 and p.schedule.name == "linear"
    for key in ("command", "wall_time_s", "steps_per_s", "sha256", "step"):
        assert key in p.info
    assert p.info["command"].startswith("python -m ddpm_core.train")
    assert len(p.history["loss"]) == p.info["step"]
    assert (p.num_classes == 10) == (name == "digits-cond")


def test_samples_are_digits_more_often_than_noise(classifier):
    p = pretrained.load_pretrained("digits", device="cpu")
    g = torch.Generator().manual_seed(0)
    x0 = ddim_sample(p.model, p.schedule, (N, *p.image_shape), num_sample_steps=20, generator=g, progress=False)
    noise = torch.randn(N, *p.image_shape, generator=g).clamp(-1, 1)
    conf_samples, labels = _confident(classifier, x0)
    conf_noise, _ = _confident(classifier, noise)
    assert conf_samples.float().mean() > conf_noise.float().mean() + 0.3
    assert len(labels[conf_samples].unique()) >= 8  # not collapsed onto a few digits


def test_guided_samples_follow_the_label(classifier):
    p = pretrained.load_pretrained("digits-cond", device="cpu")
    y = torch.arange(50) % 10
    x0 = ddim_sample(guided(p.model, y, 2.0), p.schedule, (50, *p.image_shape), num_sample_steps=20,
                     generator=torch.Generator().manual_seed(0), progress=False)
    _, labels = _confident(classifier, x0)
    assert (labels == y).float().mean() > 0.7


def test_sha256_mismatch_and_unknown_name_raise(tmp_path, monkeypatch):
    for suffix in (".pt", ".json"):
        shutil.copy(pretrained.PRETRAINED_DIR / f"digits{suffix}", tmp_path / f"digits{suffix}")
    meta = json.loads((tmp_path / "digits.json").read_text())
    meta["sha256"] = "0" * 64
    (tmp_path / "digits.json").write_text(json.dumps(meta))
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        pretrained.load_pretrained("digits")
    with pytest.raises(ValueError, match="name"):
        pretrained.load_pretrained("cifar10")
